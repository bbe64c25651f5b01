"""How often each mode picks the first and the last option, beside how often gold is there.

    python scripts/choice_positions.py runs/eval/t5/arc_easy_test800_receiver runs/eval/t5/arc_easy_test800_c2c

A position bias shows as a mode picking one end of the option list far more often than gold sits
there (docs/results.md, trial t5: with the options listed in the prompt, text scoring favours the
first option, and trained fusers the last). Reads each folder's `items.jsonl` (`c2c eval` records
with `pred`, `gold` and one score per option); an item with no pick counts as neither end.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def position_counts(run_dir: Path) -> dict[str, dict[str, int]]:
    """mode -> {"n", "pick_first", "pick_last", "gold_first", "gold_last"} over `run_dir`'s records.

    Raises:
        FileNotFoundError: the folder has no items.jsonl.
    """
    path = run_dir / "items.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; give the output_dir of a `c2c eval` run")
    counts: dict[str, dict[str, int]] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        last = len(item["scores"]) - 1
        c = counts.setdefault(
            item["mode"], dict.fromkeys(("n", "pick_first", "pick_last", "gold_first", "gold_last"), 0)
        )
        c["n"] += 1
        c["pick_first"] += item["pred"] == 0
        c["pick_last"] += item["pred"] == last
        c["gold_first"] += item["gold"] == 0
        c["gold_last"] += item["gold"] == last
    return counts


def rows(run_dirs: list[Path]) -> list[str]:
    """`| run | mode | n | picks first | gold first | picks last | gold last |` rows, one per folder
    (named with its parent: `t5/arc_easy_test800_c2c`) and mode."""
    out = []
    for run in run_dirs:
        for mode, c in position_counts(run).items():
            cells = [f"{run.parent.name}/{run.name}", mode, f"{c['n']:,}"] + [
                f"{c[k]:,}" for k in ("pick_first", "gold_first", "pick_last", "gold_last")
            ]
            out.append("| " + " | ".join(cells) + " |")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="c2c eval output folders")
    args = parser.parse_args(argv)
    print("| run | mode | n | picks first | gold first | picks last | gold last |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows(args.runs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
