"""What a strided input costs a frozen output layer (the LM head) on a CPU, and what `freeze` saves.

Hugging Face keeps the logits of the last columns only (`logits_to_keep`: 1 in every `generate`
prefill, the continuation's in log-likelihood scoring) by slicing the hidden states before the head,
which leaves them strided. `torch.matmul` folds a strided 3-D input into one matrix product only when
the weight needs its gradient; with a frozen head it takes a batched path that is far slower on a CPU
(cache2cache/frozen.py gives the details). `cache2cache.frozen.freeze`, which every receiver and
sharer goes through, copies such inputs into the standard layout first.

This script times, side by side and interleaved run by run:
1. the head alone, `linear(hidden, W)` with a frozen W of a real model's head shape (random values),
   on a strided slice and on the same values in the standard layout, in bfloat16 and float32;
2. with `--model`, the real model frozen as before (`eval().requires_grad_(False)`) against frozen
   by `freeze`: a scoring forward keeping the last columns' logits, and greedy `generate` calls.

    python benchmarks/strided_head.py --write docs/perf.md                    # random weights only
    c2c fetch gemma-3-270m && python benchmarks/strided_head.py --model gemma-3-270m --write docs/perf.md
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from cache2cache.loading import load_model, resolve
from docblock import publish
from interleaved import median_ms
from latency import machine

HEADS = {"gemma-3-270m": (262_144, 640), "smollm2-135m-instruct": (49_152, 576)}
"""(vocabulary, hidden) of the output layers timed with random weights."""


def head_rows(rows: int, length: int, kept: int, runs: int) -> list[str]:
    """Table rows: a frozen head on a strided (rows, kept, hidden) slice and on its standard-layout copy."""
    out = []
    for name, (vocab, hidden) in HEADS.items():
        for dtype in (torch.bfloat16, torch.float32):
            weight = torch.randn(vocab, hidden, dtype=dtype)
            hidden_states = torch.randn(rows, length, hidden, dtype=dtype)
            strided = hidden_states[:, length - kept :, :]
            contiguous = strided.clone(memory_format=torch.contiguous_format)
            linear = torch.nn.functional.linear
            ms = median_ms({"strided": partial(linear, strided, weight), "contiguous": partial(linear, contiguous, weight)},
                           runs)  # fmt: skip
            out.append(f"| head of {name} ({vocab:,} x {hidden}), random, frozen | {str(dtype).removeprefix('torch.')} | "
                       f"{ms['strided']:.0f} ms | {ms['contiguous']:.0f} ms | {ms['strided'] / ms['contiguous']:.0f}x |")  # fmt: skip
    return out


def model_rows(name: str, rows: int, length: int, kept: int, new_tokens: int, runs: int) -> list[str]:
    """Table rows: a real model frozen plainly against frozen by `freeze`."""
    hooked = load_model(name)
    location, gguf_file = resolve(name)
    plain = AutoModelForCausalLM.from_pretrained(location, gguf_file=gguf_file, dtype=hooked.dtype)
    plain.eval().requires_grad_(False)
    dtype = str(hooked.dtype).removeprefix("torch.")
    ids = torch.randint(0, hooked.config.vocab_size, (rows, length))
    greedy = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False, "pad_token_id": 0}
    out = []
    with torch.inference_mode():
        calls = {
            f"forward of {rows} rows x {length} tokens, logits of the last {kept}":
                lambda model: model(input_ids=ids, logits_to_keep=kept),
            f"greedy generate, batch 1, {new_tokens} new tokens": lambda model: model.generate(input_ids=ids[:1], **greedy),
            f"greedy generate, batch {rows}, {new_tokens} new tokens": lambda model: model.generate(input_ids=ids, **greedy),
        }  # fmt: skip
        for label, call in calls.items():
            ms = median_ms({"plain": partial(call, plain), "freeze": partial(call, hooked)}, runs)
            out.append(f"| {name}: {label} | {dtype} | {ms['plain']:.0f} ms | {ms['freeze']:.0f} ms | "
                       f"{ms['plain'] / ms['freeze']:.0f}x |")  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", default=None, help="also time this model's scoring forward (alias, folder or hub id)"
    )
    parser.add_argument("--rows", type=int, default=4, help="rows per forward (one per choice of an item)")
    parser.add_argument("--length", type=int, default=40, help="tokens per row: prompt and choice")
    parser.add_argument("--kept", type=int, default=12, help="columns whose logits are kept (the choice's)")
    parser.add_argument("--new_tokens", type=int, default=8, help="tokens each generate call makes")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs per way (the median is reported)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("--write", type=Path, default=None, help="markdown file to write the table into")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = ["| what | dtype | strided input / frozen plainly | standard layout / `freeze` | ratio |",
            "|---|---|---:|---:|---:|"]  # fmt: skip
    rows += head_rows(args.rows, args.length, args.kept, args.runs)
    if args.model:
        rows += model_rows(args.model, args.rows, args.length, args.kept, args.new_tokens, args.runs)
    note = (f"Head rows: {args.rows} x {args.kept} columns sliced from {args.length}; {args.threads} thread(s), median "
            f"of {args.runs} interleaved runs (`python benchmarks/strided_head.py`). Machine: {machine()}.")  # fmt: skip
    block = "\n".join([*rows, "", note])
    publish(block, "strided-head", args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
