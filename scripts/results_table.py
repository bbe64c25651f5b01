"""Markdown tables of accuracy (95% CI), median latency and paired differences from `c2c eval` runs.

    python scripts/results_table.py runs/eval/t1/arc_easy_test runs/eval/t1/arc_challenge_test ...

Each folder's `summary.json` gives one row per mode: task and split, mode, items, accuracy with its
Wilson 95% interval, and the median latency of the timed items (`--latency_items`). The rows come in
the order of the folders, and in each folder in the order receiver, sharer, t2t, self, c2c.

The second table compares modes item by item (`items.jsonl`; the modes answered the same items):
C2C against the receiver, against self and against the sharer, and self against the receiver. The
difference in accuracy has a 95% interval from the paired per-item differences (normal
approximation: mean +- 1.96 sd / sqrt(n)), which is much narrower than two independent intervals.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

MODE_ORDER = ("receiver", "sharer", "t2t", "self", "c2c")


def rows(run_dir: Path) -> list[str]:
    """The table rows of one run folder.

    Raises:
        FileNotFoundError: the folder has no summary.json (the run has not finished).
    """
    path = run_dir / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; give the output_dir of a finished `c2c eval` run")
    summary = json.loads(path.read_text())
    where = f"{summary['task']} {summary['split']}"
    modes = sorted(summary["modes"], key=lambda m: MODE_ORDER.index(m["mode"]) if m["mode"] in MODE_ORDER else 99)
    out = []
    for m in modes:
        latency = f"{m['latency_median_ms']:,.0f} ms" if m.get("latency_median_ms") is not None else "–"
        out.append(
            f"| {where} | {m['mode']} | {m['n']:,} | {100 * m['accuracy']:.1f}% "
            f"| [{100 * m['ci_low']:.1f}, {100 * m['ci_high']:.1f}] | {latency} |"
        )
    return out


COMPARISONS = (("c2c", "receiver"), ("c2c", "self"), ("c2c", "sharer"), ("self", "receiver"))


def paired_rows(run_dir: Path) -> list[str]:
    """`| task | a - b | n | difference | 95% CI |` rows for every comparison whose modes the run has."""
    summary = json.loads((run_dir / "summary.json").read_text())
    correct: dict[str, dict[str, bool]] = {}
    for line in (run_dir / "items.jsonl").read_text().splitlines():
        if line.strip():
            item = json.loads(line)
            correct.setdefault(item["mode"], {})[item["id"]] = bool(item["correct"])
    out = []
    for a, b in COMPARISONS:
        if a not in correct or b not in correct:
            continue
        ids = sorted(set(correct[a]) & set(correct[b]))
        diffs = [int(correct[a][i]) - int(correct[b][i]) for i in ids]
        n = len(diffs)
        mean = sum(diffs) / n
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / max(n - 1, 1))
        half = 1.96 * sd / math.sqrt(n)
        out.append(
            f"| {summary['task']} {summary['split']} | {a} - {b} | {n:,} | {100 * mean:+.1f} points "
            f"| [{100 * (mean - half):+.1f}, {100 * (mean + half):+.1f}] |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="c2c eval output folders")
    args = parser.parse_args(argv)
    print("| task | mode | n | accuracy | 95% CI (Wilson) | median latency |")
    print("|---|---|---:|---:|---|---:|")
    for run in args.runs:
        print("\n".join(rows(run)))
    paired = [row for run in args.runs for row in paired_rows(run)]
    if paired:
        print("\n| task | comparison | n | difference | 95% CI (paired) |")
        print("|---|---|---:|---:|---|")
        print("\n".join(paired))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
