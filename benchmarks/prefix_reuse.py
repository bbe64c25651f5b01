"""Prefix reuse: a request whose long prefix (system prompt, document) was computed by an earlier
request, against the same request computed afresh, in one run.

For each pair and dtype, with a prompt of `--prefix_tokens` shared tokens then `--question_tokens`
tokens of its own, it times three ways of answering (`--new_tokens` greedy tokens, forced length):

    receiver alone   C2CModel.generate_from_inputs(fuse=False), the whole prompt
    C2C, fresh       C2CModel.generate_from_inputs, the whole prompt prefilled and fused
    C2C, reused      prefix.generate_from_inputs over the caches of the prefix, which an earlier
                     request computed once (prefix.extend, not timed): only the question's columns
                     are prefilled, fused and appended

interleaved run by run, after a warm-up, and reports medians as ratios (reused / fresh, and each
against the receiver alone). It checks that the reused answer's tokens equal the fresh one's.

Pairs (random weights: timing only): `tiny` and `qwen`, as in benchmarks/latency.py (the qwen pair
has the Table 3 shapes: Qwen3-0.6B receiver <- Qwen2.5-0.5B sharer, published fuser sizes).

Run from the repository root:

    python benchmarks/prefix_reuse.py --pairs tiny,qwen --dtypes bfloat16 --write docs/perf.md

`--write` replaces the block between the prefix-reuse markers in that file (the prose around it stays).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from cache2cache import C2CModel, prefix
from cache2cache.inputs import C2CInputs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docblock import write_block
from latency import DTYPES, _cores, _decode_kwargs, _sync, build_pair, log, provenance  # a sibling script

MODES = ("receiver alone", "C2C, fresh", "C2C, reused")


@torch.no_grad()
def runners(model: C2CModel, inputs: C2CInputs, cached: prefix.PrefixCache, new_tokens: int) -> dict[str, Callable[[], torch.Tensor]]:  # fmt: skip
    """The three ways of answering `inputs`, each returning the generated sequences (1, N + new_tokens)."""
    kwargs = _decode_kwargs(new_tokens)
    return {
        "receiver alone": lambda: model.generate_from_inputs(inputs, fuse=False, **kwargs),
        "C2C, fresh": lambda: model.generate_from_inputs(inputs, **kwargs),
        "C2C, reused": lambda: prefix.generate_from_inputs(model, inputs, cached, **kwargs)[0],
    }


def timed(run: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, torch.Tensor]:
    """Seconds of one call, and what it returned."""
    _sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        out = run()
    _sync(device)
    return time.perf_counter() - start, out


def measure(name: str, dtype_name: str, args: argparse.Namespace) -> str:
    """One table row: medians of each mode, interleaved run by run, as ratios."""
    receiver, sharer, fuser = build_pair(name)
    dtype = DTYPES[dtype_name]
    model = C2CModel.from_models(receiver.to(args.device), sharer.to(args.device), fuser=fuser, seed=0).eval()
    model.receiver.to(dtype), model.sharer.to(dtype)
    model.fusers = copy.deepcopy(model.fusers).to(dtype)
    g = torch.Generator().manual_seed(0)
    vocab = min(receiver.config.vocab_size, sharer.config.vocab_size)
    n = args.prefix_tokens + args.question_tokens
    inputs = model.inputs_from_ids(torch.randint(3, vocab, (1, n), generator=g))
    cached = prefix.extend(model, inputs.truncate(args.prefix_tokens))  # the earlier request's work
    warm = runners(model, inputs, cached, 2)
    for run in warm.values():
        run()
    calls = runners(model, inputs, cached, args.new_tokens)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    outputs: dict[str, torch.Tensor] = {}
    for _ in range(args.repeats):
        for mode in MODES:
            seconds, outputs[mode] = timed(calls[mode], model.device)
            times[mode].append(seconds)
    if not torch.equal(outputs["C2C, reused"], outputs["C2C, fresh"]):
        raise AssertionError(f"{name} {dtype_name}: the reused prefix gave other tokens than the fresh prompt")
    med = {mode: statistics.median(ts) for mode, ts in times.items()}
    log(f"  {name:5} {dtype_name:9} " + ", ".join(f"{m} {1e3 * t:.0f} ms" for m, t in med.items()))
    alone, fresh, reused = (med[m] for m in MODES)
    return (
        f"| {name} | {dtype_name} | {args.prefix_tokens} + {args.question_tokens} | **{reused / fresh:.2f}x** | "
        f"{fresh / alone:.2f}x | {reused / alone:.2f}x | identical |"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the measurement, print the table and optionally write it into a markdown file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="example:\n  python benchmarks/prefix_reuse.py --pairs tiny --repeats 3")  # fmt: skip
    parser.add_argument("--pairs", default="tiny,qwen", help="comma-separated: tiny, qwen (default: both)")
    parser.add_argument("--dtypes", default="bfloat16", help="comma-separated: float32, bfloat16 (default: bfloat16)")
    parser.add_argument("--prefix_tokens", type=int, default=448, help="tokens of the reused prefix (default: 448)")
    parser.add_argument("--question_tokens", type=int, default=32, help="tokens after the prefix (default: 32)")
    parser.add_argument("--new_tokens", type=int, default=12, help="tokens generated (default: 12)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per mode (default: 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every visible core)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--write", type=Path, help="markdown file whose prefix-reuse block gets the results")
    args = parser.parse_args(argv)
    bad = [d for d in args.dtypes.split(",") if d not in DTYPES]
    if bad:
        parser.error(f"unknown dtypes {bad}; choose from {', '.join(DTYPES)}")
    if args.prefix_tokens < 1 or args.question_tokens < 1:
        parser.error("--prefix_tokens and --question_tokens must be at least 1")
    torch.set_num_threads(args.threads or _cores())
    log(f"torch threads: {torch.get_num_threads()} ({'--threads' if args.threads else 'every visible core'})")
    args.device = torch.device(args.device)
    load_before = os.getloadavg()
    started = time.perf_counter()
    rows = [measure(pair, dtype, args) for pair in args.pairs.split(",") for dtype in args.dtypes.split(",")]
    block = "\n".join([
        *provenance("prefix_reuse.py", argv, started, load_before[0], args.device),
        "",
        (f"{args.new_tokens} new tokens (greedy, forced length), batch 1; a warm-up, then {args.repeats} timed runs per mode, "
         "the three modes interleaved run by run; ratios of medians. \"Reused\" starts from the caches of the prefix "
         "(receiver alone, sharer, fused), computed once before the timed runs, and prefills and fuses only the rest."),
        "",
        "| pair | dtype | prompt tokens (prefix + rest) | C2C reused / C2C fresh | C2C fresh / receiver alone | C2C reused / receiver alone | greedy tokens, reused vs fresh |",
        "|---|---|---:|---:|---:|---:|---|",
        *rows,
    ])  # fmt: skip
    print(block)
    if args.write:
        write_block(args.write, "prefix-reuse", block)
        log(f"wrote the prefix-reuse block of {args.write}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
