"""How to spend a machine's cores on fuser training: one process with more threads, or `torchrun` ranks.

Runs the real `c2c train` on a recipe for a few optimizer steps, once per layout, and reports each
layout's tokens/s (the median over the logged steps after the first, which pays first-call costs)
and the global batch it kept:

    1x1    one process, one thread
    1xN    one process, N threads (N = --cores)
    Nx1    `torchrun --nproc_per_node N`, one thread per rank (DDP over gloo on a CPU); each rank
           accumulates `gradient_accumulation_steps / N` micro-batches, so the global batch is the
           recipe's

Every layout trains the same recipe from the same seed without an eval split or checkpoints in
between. Run from the repository root, on an otherwise idle machine (the layouts compete for the
same cores with anything else that runs):

    python benchmarks/train_processes.py
    python benchmarks/train_processes.py --recipe recipes/smollm2-135m_qwen2.5-coder-0.5b.yaml --steps 6

It prints a Markdown table for docs/perf.md ("Training throughput").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from docblock import publish  # benchmarks/, the script's own folder

ROOT = Path(__file__).resolve().parents[1]


def layout_command(layout: str, cores: int, recipe: Path, accumulation: int) -> list[str]:
    """The `c2c train` command line (without overrides) of `layout`: "1x1", "1xN" or "Nx1"."""
    train = ["-m", "cache2cache.cli.main", "train", "--config", str(recipe)]
    if layout == "Nx1":
        if accumulation % cores:
            raise SystemExit(
                f"the recipe's gradient_accumulation_steps ({accumulation}) is not a multiple of {cores} ranks"
            )
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={cores}", *train,
                "--training.gradient_accumulation_steps", str(accumulation // cores)]  # fmt: skip
    return [sys.executable, *train, "--training.num_threads", "1" if layout == "1x1" else str(cores)]


def run_layout(command: list[str], steps: int, out: Path) -> dict[str, float]:
    """Train `steps` steps into `out`; the median tokens/s of steps 2.. and the wall time."""
    overrides = ["--training.max_steps", str(steps), "--data.eval_ratio", "0", "--output.output_dir", str(out),
                 "--output.overwrite", "true", "--output.log_steps", "1", "--output.save_steps", str(10**6),
                 "--output.eval_steps", "0"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    done = subprocess.run(command + overrides, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rates = [r["tokens_per_s"] for r in rows if "tokens_per_s" in r and r["step"] > 1]
    return {"tokens_per_s": statistics.median(rates), "steps": len(rates), "wall_s": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "smollm2-135m_gemma3-270m.yaml")
    parser.add_argument("--layouts", default="1x1,1xN,Nx1", help="comma-separated, from 1x1, 1xN, Nx1")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="N (default: every core)")
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps per layout (the first is not counted)")
    parser.add_argument("--write", type=Path, default=None, help="replace the train-processes block of this file")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2: the first step is not counted")
    from cache2cache.loading import has_fast_bf16
    from cache2cache.training import load_train_config

    config = load_train_config(args.recipe, {"output_dir": tempfile.gettempdir(), "overwrite": True})
    t = config.training
    rows = []
    started = time.perf_counter()
    for layout in args.layouts.split(","):
        command = layout_command(layout, args.cores, args.recipe.resolve(), t.gradient_accumulation_steps)
        out = Path(tempfile.mkdtemp(prefix=f"c2c-train-{layout}-"))
        print(f"{layout}: {args.steps} steps ...", file=sys.stderr)
        try:
            rows.append((layout.replace("N", str(args.cores)), run_layout(command, args.steps, out)))
        finally:
            shutil.rmtree(out, ignore_errors=True)
    cpu = torch.backends.cpu.get_cpu_capability()
    global_batch = t.per_device_batch_size * t.gradient_accumulation_steps
    lines = [
        f"Command: `python benchmarks/train_processes.py {' '.join(argv if argv is not None else sys.argv[1:])}`"
        f" (run {time.strftime('%Y-%m-%d')}, {(time.perf_counter() - started) / 60:.1f} min).",
        "",
        f"Machine: {os.cpu_count()} cores, torch {torch.__version__} ({cpu}), native bf16: "
        f"{'yes' if has_fast_bf16(torch.device('cpu')) else 'no'}; recipe {args.recipe.name} (precision "
        f"{t.precision}, global batch {global_batch}); 1-minute load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "| layout (processes x threads) | tokens/s | vs 1x1 | timed steps | wall |",
        "|---|---:|---:|---:|---:|",
    ]
    base = rows[0][1]["tokens_per_s"] if rows and rows[0][0] == "1x1" else None
    for layout, r in rows:
        ratio = f"{r['tokens_per_s'] / base:.2f}x" if base else "-"
        lines.append(f"| {layout} | {r['tokens_per_s']:.0f} | {ratio} | {r['steps']} | {r['wall_s']:.0f} s |")
    publish("\n".join(lines), "train-processes", args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
