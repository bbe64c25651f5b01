"""Plot the training curves of fuser runs from their `metrics.jsonl` files into one PNG.

    python scripts/training_curve.py runs/trials/t1_c2c runs/trials/t1_self \
        --labels "C2C (Gemma-3 sharer)" "self (the receiver's own cache)" --out docs/img/training_curve.png

Each run folder is what `c2c train` wrote: `metrics.jsonl` holds one row per `log_steps` steps (the
training loss averaged over those steps) and one per `eval_steps` steps (the held-out eval loss).
The plot shows both against the optimizer step, one colour per run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_curve(run_dir: Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(step, training loss) and (step, eval loss) points of one run, in step order.

    Raises:
        FileNotFoundError: `run_dir` has no metrics.jsonl.
    """
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; give the output_dir of a `c2c train` run")
    train, evaluation = [], []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if "loss" in row:
            train.append((int(row["step"]), float(row["loss"])))
        if "eval_loss" in row:
            evaluation.append((int(row["step"]), float(row["eval_loss"])))
    return sorted(train), sorted(evaluation)


def plot(runs: list[Path], labels: list[str], out: Path) -> None:
    """Write the curves of `runs` (named `labels`) to the PNG `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4), dpi=120)
    for index, (run, label) in enumerate(zip(runs, labels, strict=True)):
        train, evaluation = read_curve(run)
        colour = f"C{index}"
        if train:
            axis.plot(*zip(*train, strict=True), color=colour, alpha=0.6, label=f"{label}: train loss")
        if evaluation:
            axis.plot(*zip(*evaluation, strict=True), "o-", color=colour, label=f"{label}: eval loss")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("cross-entropy per response token")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="c2c train output folders")
    parser.add_argument("--labels", nargs="+", default=None, help="one legend name per run (default: folder names)")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    labels = args.labels or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        parser.error(f"{len(args.runs)} runs but {len(labels)} labels; give one label per run")
    plot(args.runs, labels, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
