"""Run the offline demo over seeds and recipe variants; print one table of held-out accuracy and time.

Each run is a fresh `run_demo` (the code path and thread settings of `c2c demo`), one after another,
so the phase times are comparable. A variant overrides `DemoSize` fields of the chosen size; "recipe" is the
size unchanged.

    python benchmarks/demo_sweep.py --seeds 0 1 2
    python benchmarks/demo_sweep.py --seeds 0 --variant sharer_lr=3e-3 --variant fuser_steps=1000,fuser_batch_size=32

Writes `sweep.json` and `sweep.md` in --output_dir (each run's own folder and report stay there too).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from cache2cache.demo.run import MODES, SIZES, DemoSize, run_demo


def parse_variant(text: str, base: DemoSize) -> DemoSize:
    """`"sharer_lr=3e-3,fuser_steps=1000"` -> `base` with those fields replaced (types from `base`)."""
    if text == "recipe":
        return base
    fields = {f.name: f for f in dataclasses.fields(base)}
    changes: dict[str, float | int] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"bad variant item {item!r}: use FIELD=VALUE with FIELD one of {', '.join(fields)}")
        changes[key] = type(getattr(base, key))(float(value))  # "1000" -> 1000 for int fields, "3e-3" -> 0.003
    return dataclasses.replace(base, **changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--variant", action="append", default=None, help="FIELD=VALUE[,FIELD=VALUE...] (repeatable; default: recipe)"
    )
    parser.add_argument("--output_dir", default="runs/demo-sweep")
    args = parser.parse_args()

    out = Path(args.output_dir)
    rows = []
    for variant in args.variant or ["recipe"]:
        spec = parse_variant(variant, SIZES[args.size])
        for seed in args.seeds:
            start = time.perf_counter()
            result = run_demo(
                out / f"{variant.replace(',', '_').replace('=', '-')}-seed{seed}",
                seed=seed,
                size=spec,
                fresh=True,
                progress=False,
            )
            wall = time.perf_counter() - start
            rows.append({"variant": variant, "seed": seed, "wall_s": round(wall, 1),
                         **{m: {"correct": r.correct, "n": len(r.answers)} for m, r in result.modes.items()},
                         "phase_seconds": {k: round(v, 1) for k, v in result.phase_seconds.items()}})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)

    lines = [
        "| variant | seed | " + " | ".join(MODES) + " | language models (s) | fuser (s) | total (s) |",
        "|---|---:|" + "---:|" * (len(MODES) + 3),
    ]
    for row in rows:
        accs = " | ".join(f"{100 * row[m]['correct'] / row[m]['n']:.1f} %" for m in MODES)
        phases = row["phase_seconds"]
        lines.append(
            f"| {row['variant']} | {row['seed']} | {accs} | {phases['language models']:.0f} | {phases['fuser']:.0f} | {row['wall_s']:.0f} |"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(rows, indent=1) + "\n")
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":  # the demo trains the receiver in a spawned process
    main()
