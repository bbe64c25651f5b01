"""`c2c demo`: the offline demo (train a tiny sharer/receiver pair and a fuser, compare the modes)."""

from __future__ import annotations

import argparse
import time

EXAMPLE = """example:
  c2c demo                              # trains 3 small models on the CPU; outputs in ./c2c_demo
  c2c demo --output_dir /tmp/d --seed 1 --fresh
  c2c demo --size ci                    # the reduced run the tests use
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `c2c demo`."""
    parser.add_argument(
        "--output_dir", default="c2c_demo", help="where the trained pair, fuser and report go (default: c2c_demo)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds the world and all training (default: 0)")
    parser.add_argument("--size", choices=("full", "ci"), default="full", help="full (default) or the reduced ci run")
    parser.add_argument("--fresh", action="store_true", help="retrain everything even if trained artifacts exist")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads per process (default: 1; the models are too small to gain from more)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo and print the report."""
    from ..demo.run import run_demo
    from .common import USER_ERRORS, report_error

    start = time.perf_counter()
    print(
        f"c2c demo: a sharer that knows facts, a receiver that does not, and a fuser between them (size {args.size}, seed {args.seed})"
    )
    try:
        result = run_demo(args.output_dir, seed=args.seed, size=args.size, fresh=args.fresh, num_threads=args.threads)
    except USER_ERRORS as error:
        return report_error("demo", error)
    print()
    print((result.output_dir / "report.md").read_text())
    if result.reused:
        print(f"(reused trained {', '.join(result.reused)} from {result.output_dir}; pass --fresh to retrain)")
    chart = result.output_dir / "report.png"
    print(
        f"Done in {time.perf_counter() - start:.0f} s. Report: {result.output_dir / 'report.md'}"
        + (f" and {chart}" if chart.is_file() else "")
    )
    print(f"Try the trained pair yourself: c2c generate --receiver {result.output_dir}/receiver --sharer {result.output_dir}/sharer "
          f"--fuser {result.output_dir}/fuser/final \"{result.questions[0]}\"")  # fmt: skip
    return 0
