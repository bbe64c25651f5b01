"""Markdown tables of accuracy (95% CI), median latency and paired differences from `c2c eval` runs.

    python scripts/results_table.py runs/eval/t1/arc_easy_test runs/eval/t1/arc_challenge_test ...

Each folder's `summary.json` gives one row per mode: task and split, mode, items, accuracy with its
Wilson 95% interval, and the median latency of the timed items (`--latency_items`). Folders of the
same task and split are one group (modes may be run into separate folders, on the same items); groups
come in the order of the folders, and in each group the modes in the order receiver, sharer, t2t,
self, c2c.

The second table compares modes item by item (`items.jsonl`), over the items both answered:
C2C against the receiver, self, the sharer and T2T, self and the sharer against the receiver. The
difference in accuracy has a 95% interval from the paired per-item differences (normal
approximation: mean +- 1.96 sd / sqrt(n)), which is much narrower than two independent intervals.

A folder run with `--ablate_sharer` labels its fused modes `c2c (sharer ablated)` and `self
(sharer ablated)`, which sort after the plain mode and compare against it item by item: how much of
C2C's accuracy needs what the sharer read at each token.

The third table, for groups with the receiver and the sharer, splits the items by who answered them
alone and gives C2C's and self's accuracy on each part ("–" where a group lacks the mode; and the
ablated C2C's, where a folder has it). If something crosses the cache, C2C beats self where only the
sharer was right; and only those items can gain from reading the sharer at all.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

MODE_ORDER = ("receiver", "sharer", "t2t", "self", "c2c")
ABLATED = " (sharer ablated)"


def _summary(run_dir: Path) -> dict:
    path = run_dir / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; give the output_dir of a finished `c2c eval` run")
    return json.loads(path.read_text())


def group_runs(runs: list[Path]) -> dict[str, list[Path]]:
    """`"task split"` (the task alone for a task without splits) -> its run folders, in first-appearance order.

    Raises:
        FileNotFoundError: a folder has no summary.json (the run has not finished).
    """
    groups: dict[str, list[Path]] = {}
    for run in runs:
        summary = _summary(run)
        name = " ".join(part for part in (summary["task"], summary["split"]) if part)
        groups.setdefault(name, []).append(run)
    return groups


def label(run_dir: Path, mode: str) -> str:
    """`mode` as the tables name it: with `ABLATED` after a fused mode of an `--ablate_sharer` run."""
    ablated = _summary(run_dir).get("config", {}).get("ablate_sharer", False)
    return mode + ABLATED if ablated and mode in ("c2c", "self") else mode


def _order(name: str) -> tuple[int, str]:
    base = name.removesuffix(ABLATED)
    return (MODE_ORDER.index(base) if base in MODE_ORDER else len(MODE_ORDER), name)


def rows(where: str, run_dirs: list[Path]) -> list[str]:
    """The accuracy rows of one task's run folders."""
    modes = [{**m, "mode": label(run, m["mode"])} for run in run_dirs for m in _summary(run)["modes"]]
    modes.sort(key=lambda m: _order(m["mode"]))
    out = []
    for m in modes:
        latency = f"{m['latency_median_ms']:,.0f} ms" if m.get("latency_median_ms") is not None else "–"
        out.append(
            f"| {where} | {m['mode']} | {m['n']:,} | {100 * m['accuracy']:.1f}% "
            f"| [{100 * m['ci_low']:.1f}, {100 * m['ci_high']:.1f}] | {latency} |"
        )
    return out


COMPARISONS = (("c2c", "receiver"), ("c2c", "self"), ("c2c", "sharer"), ("c2c", "t2t"), ("self", "receiver"),
               ("sharer", "receiver"), ("c2c", "c2c" + ABLATED), ("self", "self" + ABLATED))  # fmt: skip


def item_correctness(run_dirs: list[Path]) -> dict[str, dict[str, bool]]:
    """mode (`label`) -> item id -> correct, from the folders' items.jsonl (records of an unfinished
    mode left out)."""
    correct: dict[str, dict[str, bool]] = {}
    for run in run_dirs:
        names = {m["mode"]: label(run, m["mode"]) for m in _summary(run)["modes"]}  # the finished modes
        for line in (run / "items.jsonl").read_text().splitlines():
            if line.strip():
                item = json.loads(line)
                if item["mode"] in names:
                    correct.setdefault(names[item["mode"]], {})[item["id"]] = bool(item["correct"])
    return correct


def paired_rows(where: str, correct: dict[str, dict[str, bool]]) -> list[str]:
    """`| task | a - b | n | difference | 95% CI |` rows for every comparison whose modes `correct`
    (`item_correctness` of a group) holds, over the items both modes answered (n; a mode run on a
    sample of the items compares there)."""
    out = []
    for a, b in COMPARISONS:
        if a not in correct or b not in correct:
            continue
        common = sorted(set(correct[a]) & set(correct[b]))
        if not common:
            continue
        diffs = [int(correct[a][i]) - int(correct[b][i]) for i in common]
        n = len(diffs)
        mean = sum(diffs) / n
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / max(n - 1, 1))
        half = 1.96 * sd / math.sqrt(n)
        out.append(
            f"| {where} | {a} - {b} | {n:,} | {100 * mean:+.1f} points "
            f"| [{100 * (mean - half):+.1f}, {100 * (mean + half):+.1f}] |"
        )
    return out


CASES = (("the sharer alone right, the receiver wrong", True, False),
         ("the receiver alone right, the sharer wrong", False, True),
         ("both wrong", False, False))  # fmt: skip
"""Who was right alone, as (label, sharer correct, receiver correct)."""


WHO_KNEW_COLUMNS = ("c2c", "self", "c2c" + ABLATED)
"""The modes the who-was-right table reports, each only where some group has it."""


def who_knew_columns(groups: list[dict[str, dict[str, bool]]]) -> list[str]:
    """The who-was-right table's mode columns for these groups (`item_correctness` of each): none
    where only the single models ran, and the table gives the counts alone."""
    return [m for m in WHO_KNEW_COLUMNS if any(m in g for g in groups)]


def who_knew_rows(where: str, correct: dict[str, dict[str, bool]], columns: list[str] | None = None) -> list[str]:
    """`| task | case | n | c2c | self | ... |` rows: each of `columns`' accuracy (default c2c and
    self) on the items split by whether the sharer and the receiver alone answered them, "–" for a
    mode this group lacks. Communication shows as C2C above self where only the sharer knew;
    enrichment alone lifts both alike. Over the items every present one of receiver, sharer, self and
    C2C answered; empty unless the receiver and the sharer are both present."""
    if "receiver" not in correct or "sharer" not in correct:
        return []
    present = [m for m in ("receiver", "sharer", "self", "c2c") if m in correct]
    common = sorted(set.intersection(*(set(correct[m]) for m in present)))
    out = []
    for label_, sharer_right, receiver_right in CASES:
        ids = [i for i in common if (correct["sharer"][i], correct["receiver"][i]) == (sharer_right, receiver_right)]
        if ids:
            cells = [_accuracy(correct.get(m, {}), ids) for m in (WHO_KNEW_COLUMNS[:2] if columns is None else columns)]
            out.append("| " + " | ".join([where, label_, f"{len(ids):,}", *cells]) + " |")
    return out


def _accuracy(correct: dict[str, bool], ids: list[str]) -> str:
    """Accuracy over those of `ids` that `correct` answered, or "–" if none."""
    answered = [correct[i] for i in ids if i in correct]
    return f"{100 * sum(answered) / len(answered):.1f}%" if answered else "–"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="c2c eval output folders")
    args = parser.parse_args(argv)
    groups = group_runs(args.runs)
    print("| task | mode | n | accuracy | 95% CI (Wilson) | median latency |")
    print("|---|---|---:|---:|---|---:|")
    for where, runs in groups.items():
        print("\n".join(rows(where, runs)))
    correct = {where: item_correctness(runs) for where, runs in groups.items()}
    paired = [row for where in groups for row in paired_rows(where, correct[where])]
    if paired:
        print("\n| task | comparison | n | difference | 95% CI (paired) |")
        print("|---|---|---:|---:|---|")
        print("\n".join(paired))
    columns = who_knew_columns(list(correct.values()))
    knew = [row for where in groups for row in who_knew_rows(where, correct[where], columns)]
    if knew:
        print("\n| " + " | ".join(["task", "items where", "n", *columns]) + " |")
        print("|---|---|---:|" + "---:|" * len(columns))
        print("\n".join(knew))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
