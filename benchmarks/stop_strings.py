"""What `generate(stop_strings=...)` costs per call against one prebuilt `StopStringCriteria`.

A template-less (base) sharer, like the offline Gemma-3-270M, answers through the plain-text chat and
stops where the next turn starts, so every sharer and T2T stage-1 call of `c2c eval` carries stop
strings. Hugging Face builds the criterion anew on every call, walking the whole vocabulary;
`cache2cache.evaluation.modes.stop_criteria` builds it once per tokenizer. This script times, side by
side and interleaved run by run, the same greedy call both ways and writes the table into docs/perf.md.

    c2c fetch gemma-3-270m smollm2-135m-instruct
    python benchmarks/stop_strings.py --models gemma-3-270m,smollm2-135m-instruct --write docs/perf.md
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

import torch
from transformers import StoppingCriteriaList, StopStringCriteria

from cache2cache.evaluation.modes import PLAIN_STOPS, stop_criteria
from cache2cache.loading import load_model, load_tokenizer
from docblock import publish
from interleaved import median_ms

PROMPT = "User: Which gas do plants take in for photosynthesis?\nAssistant:"


def measure(name: str, runs: int, new_tokens: int) -> dict[str, float]:
    """Median ms of one greedy call with `stop_strings=` and with the cached criterion; build times."""
    model, tok = load_model(name, dtype="float32"), load_tokenizer(name)
    ids = tok(PROMPT, return_tensors="pt")
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    greedy = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False, "pad_token_id": pad}
    start = time.perf_counter()
    StopStringCriteria(tok, list(PLAIN_STOPS))
    build_ms = (time.perf_counter() - start) * 1000
    cached = StoppingCriteriaList([stop_criteria(tok, PLAIN_STOPS)])
    ms = median_ms({"stop_strings": partial(model.generate, **ids, **greedy, stop_strings=list(PLAIN_STOPS), tokenizer=tok),
                    "cached": partial(model.generate, **ids, **greedy, stopping_criteria=cached)}, runs)  # fmt: skip
    return {
        "vocab": float(len(tok)),
        "build_ms": build_ms,
        "stop_strings_ms": ms["stop_strings"],
        "cached_ms": ms["cached"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="gemma-3-270m,smollm2-135m-instruct",
                        help="comma-separated models (fetched aliases, folders or hub ids)")  # fmt: skip
    parser.add_argument("--runs", type=int, default=5, help="interleaved runs per way (the median is reported)")
    parser.add_argument("--new_tokens", type=int, default=4, help="tokens each call generates")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("--write", type=Path, default=None, help="markdown file to write the table into")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = ["| model | vocabulary | first build of the criterion | call with `stop_strings=` | call with the cached criterion | ratio |",
            "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name in args.models.split(","):
        r = measure(name, args.runs, args.new_tokens)
        rows.append(f"| {name} | {r['vocab']:,.0f} | {r['build_ms']:.0f} ms | {r['stop_strings_ms']:.0f} ms | "
                    f"{r['cached_ms']:.0f} ms | {r['stop_strings_ms'] / r['cached_ms']:.2f}x |")  # fmt: skip
    block = "\n".join(
        [*rows, "",
         f"Greedy calls of {args.new_tokens} new tokens on a {len(PROMPT)}-character prompt, float32, {args.threads} "
         f"thread(s), median of {args.runs} interleaved runs (`python benchmarks/stop_strings.py`)."]
    )  # fmt: skip
    publish(block, "stop-strings", args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
