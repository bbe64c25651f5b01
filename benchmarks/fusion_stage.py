"""The fusion stage alone: how close the fuser stack runs to the machine's matmul peak.

At the paper's Table 3 shapes (Qwen3-0.6B receiver, 28 layers of 8 x 128 KV heads <- Qwen2.5-0.5B
sharer, 24 layers of 2 x 64; the published fusers h = i = 1024, L = 3, 478M parameters, every gate
open; random weights and caches: timing only), it times, side by side and interleaved run by run:

    stacked          FuserStack in eval mode: every K and V path of the step as batched matmuls
                     (fuser.StackedPaths), what C2C generation runs
    matmuls alone    the same batched matmul shapes with nothing around them: the floor that the
                     elementwise work (norms, GELU, casts, the residual add) sits on
    fuser by fuser   FuserStack(batched=False), one C2CFuser after the other
    peak             a 2048^3 matmul in the same dtype: the machine's matmul peak, timed in the same rounds

and reports each as a rate (2 x weight-matrix parameters x fused tokens, per second) and as a
fraction of that peak.

    python benchmarks/fusion_stage.py --write docs/perf.md
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from cache2cache import FuserStack
from cache2cache.fuser import C2CFuser
from cache2cache.layer_map import terminal_map
from docblock import publish
from interleaved import median_ms
from latency import DTYPES, _cores, fuse_flops, provenance

RECEIVER = (28, 8, 128)
"""Qwen3-0.6B: layers, KV heads, head_dim."""
SHARER = (24, 2, 64)
"""Qwen2.5-0.5B: layers, KV heads, head_dim."""
PEAK_SIZE = 2048


def build_stack(dtype: torch.dtype) -> FuserStack:
    """The published fuser sizes for the Table 3 pair, gates open, in eval mode and `dtype`."""
    torch.manual_seed(0)
    (receiver_layers, ht, dt), (sharer_layers, hs, ds) = RECEIVER, SHARER
    layer_map = terminal_map(receiver_layers, sharer_layers)
    fusers = {t: C2CFuser(ds, dt, hs, ht, 1024, 1024, 3, dropout=0.0, gate_init=3.0) for t in layer_map}
    return FuserStack(layer_map, fusers).eval().to(dtype)


def caches(batch: int, tokens: int, dtype: torch.dtype) -> tuple[list, list]:
    """Random sharer and receiver caches: per layer (K, V), each (batch, heads, tokens, head_dim)."""
    (receiver_layers, ht, dt), (sharer_layers, hs, ds) = RECEIVER, SHARER

    def layer(heads: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(batch, heads, tokens, dim, dtype=dtype), torch.randn(batch, heads, tokens, dim, dtype=dtype)

    return [layer(hs, ds) for _ in range(sharer_layers)], [layer(ht, dt) for _ in range(receiver_layers)]


def matmuls_alone(stack: FuserStack, rows: int, dtype: torch.dtype) -> Callable[[], None]:
    """A call running every weight matrix of the stack's paths (K and V of every layer) as one plain
    batched matmul over `rows` rows each: the stacked fuse's FLOPs, no elementwise work."""
    fuser, paths = stack.fuser(next(iter(stack.layer_map))), 2 * len(stack.layer_map)
    operands = [
        (torch.randn(paths, rows, p.shape[1], dtype=dtype), torch.randn(paths, p.shape[1], p.shape[0], dtype=dtype))
        for name, p in fuser.named_parameters()
        if p.dim() == 2 and name.startswith("key_")
    ]

    def run() -> None:
        for x, weight in operands:
            torch.bmm(x, weight)

    return run


def rows_for(stack: FuserStack, batch: int, tokens: int, dtype_name: str, runs: int) -> list[str]:
    """Table rows of one batch size for `stack` (in `dtype_name`); the peak is timed in the same interleaved rounds."""
    dtype = DTYPES[dtype_name]
    sharer, receiver = caches(batch, tokens, dtype)
    mask = torch.ones(batch, tokens, dtype=torch.bool)
    calls = {
        "stacked (what C2C runs)": partial(stack, sharer, receiver, mask),
        "matmuls alone (the floor)": matmuls_alone(stack, batch * tokens, dtype),
        "fuser by fuser": partial(stack, sharer, receiver, mask, batched=False),
        "peak": partial(torch.mm, *(torch.randn(PEAK_SIZE, PEAK_SIZE, dtype=dtype) for _ in range(2))),
    }
    with torch.no_grad():
        times = median_ms(calls, runs)
    flops = fuse_flops(stack, batch * tokens)
    floor = times["matmuls alone (the floor)"]
    peak = 2 * PEAK_SIZE**3 / (times.pop("peak") / 1e3) / 1e9
    out = [f"| {dtype_name} | {batch} | matmul peak ({PEAK_SIZE}^3) | - | {peak:,.0f} | 100 % | - |"]
    for label, ms in times.items():
        rate = flops / (ms / 1e3) / 1e9
        out.append(
            f"| {dtype_name} | {batch} | {label} | {ms:,.1f} | {rate:,.0f} | {100 * rate / peak:.0f} % | {ms / floor:.2f}x |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """Time the fusion stage, print the table, optionally write it into a markdown file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=169, help="fused tokens per prompt (default: 169, Table 3)")
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default: 1,8)")
    parser.add_argument("--dtypes", default="bfloat16,float32", help="comma-separated (default: bfloat16,float32)")
    parser.add_argument("--runs", type=int, default=5, help="timed rounds (default: 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every visible core)")
    parser.add_argument("--write", type=Path, help="markdown file whose fusion-stage block gets the table")
    args = parser.parse_args(argv)
    bad = [d for d in args.dtypes.split(",") if d not in DTYPES]
    if bad:
        parser.error(f"unknown dtypes {bad}; choose from {', '.join(DTYPES)}")
    torch.set_num_threads(args.threads or _cores())
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    lines = [
        "| dtype | batch | what | ms | GFLOP/s | % of peak | x the floor |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for dtype_name in args.dtypes.split(","):
        stack = build_stack(DTYPES[dtype_name])
        for batch in (int(b) for b in args.batches.split(",")):
            lines += rows_for(stack, batch, args.tokens, dtype_name, args.runs)
    block = "\n".join([
        *provenance("fusion_stage.py", argv, started, load_before),
        "",
        f"{args.tokens} fused tokens per prompt, every gate open; medians of {args.runs} rounds, the four calls "
        "interleaved within a round, so the matmul peak is measured under the same load as the fuse.",
        "",
        *lines,
    ])  # fmt: skip
    publish(block, "fusion-stage", args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
