"""Inference latency: the receiver alone against C2C, with a per-stage breakdown, in one run.

For each pair and dtype it times, around the very calls `C2CModel.generate` makes:

    receiver prefill   kv.prefill(receiver, prompt[:-1])                    (both modes)
    sharer prefill     kv.prefill(sharer, prompt[:-1], keep_all_tokens)     (C2C only)
    fuse               fusers(sharer cache, receiver cache) + kv.replace_layer   (C2C only)
    decode             receiver.generate over the cache: the last prompt token, then the new tokens

and, as a check that the breakdown covers everything, the library's own end-to-end
`C2CModel.generate_from_inputs(fuse=...)`. After a short warm-up, the two modes run interleaved,
run by run (so that load from other processes hits both alike); the table reports medians and the
C2C/receiver ratio of the median totals.

Pairs (random weights: timing only):
    tiny   the test pair of tests/tiny.py (Qwen3 3 layers <- Llama 2 layers), fusers h=i=32
    qwen   Qwen3-0.6B receiver <- Qwen2.5-0.5B sharer SHAPES (28 <- 24 layers, 8x128 <- 2x64 KV),
           published fusers h=i=1024, L=3 (478M parameters)

The fusers run in the models' dtype (as `from_pretrained` casts them). Below float32, fp32 copies
of the fusers (what `from_models` builds) are also timed on the same caches: "fuse with fp32 fusers".

Run from the repository root (`--pairs tiny` takes seconds; the qwen pair dominates, see docs/perf.md):

    python benchmarks/latency.py --write docs/perf.md

`--write` replaces the block between the latency markers in that file (the prose around it stays).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, PreTrainedModel, Qwen2Config, Qwen3Config

from cache2cache import C2CModel, FuserConfig, FuserStack, count_parameters, kv
from cache2cache.inputs import C2CInputs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from docblock import write_block  # noqa: E402  (benchmarks/, the script's own folder)
from tiny import tiny_receiver, tiny_sharer  # noqa: E402  (the tiny pair the tests use, from tests/)

STAGES = ("receiver_prefill", "sharer_prefill", "fuse", "decode")
EXTRA = ("fuse_per_layer", "fuse_fp32")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class Row:
    """One measured configuration: per-stage and total medians in seconds."""

    pair: str
    dtype: str
    mode: str
    stages: dict[str, float | None]
    total: float
    library: float | None
    ratio: float | None = None
    fuse_peak: str = "-"


def build_pair(name: str) -> tuple[PreTrainedModel, PreTrainedModel, FuserConfig]:
    """Receiver, sharer (fp32, random weights) and fuser sizes of a named pair."""
    if name == "tiny":
        return (
            tiny_receiver(),
            tiny_sharer(),
            FuserConfig(hidden_dim=32, intermediate_dim=32, dropout=0.0, gate_init=3.0),
        )
    if name == "qwen":
        torch.manual_seed(0)
        receiver = AutoModelForCausalLM.from_config(Qwen3Config(
            vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
            num_key_value_heads=8, head_dim=128, tie_word_embeddings=True, max_position_embeddings=40960,
            rope_theta=1_000_000, rms_norm_eps=1e-6,
        ), dtype=torch.float32)  # fmt: skip
        sharer = AutoModelForCausalLM.from_config(Qwen2Config(
            vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
            num_key_value_heads=2, tie_word_embeddings=True, max_position_embeddings=32768,
            rope_theta=1_000_000, rms_norm_eps=1e-6,
        ), dtype=torch.float32)  # fmt: skip
        # Published sizes; the gate is opened (+3) so the fused cache really differs from the receiver's.
        return (
            receiver,
            sharer,
            FuserConfig(hidden_dim=1024, intermediate_dim=1024, num_layers=3, dropout=0.0, gate_init=3.0),
        )
    raise ValueError(f"unknown pair {name!r}; choose tiny or qwen")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def time_stages(
    model: C2CModel, inputs: C2CInputs, new_tokens: int, fuse: bool, fp32_fusers: FuserStack | None = None
) -> dict[str, float]:
    """One generation, stage by stage, mirroring `C2CModel.fuse` + `generate_from_inputs`.

    Args:
        model: The pair.
        inputs: The whole prompt, (1, N).
        new_tokens: Tokens to generate.
        fuse: False times the receiver alone (no sharer, no fusion).
        fp32_fusers: Also time these fusers on the same caches (result discarded), as `fuse_fp32`.
            The model's own fusers are also timed fuser by fuser (`batched=False`), as `fuse_per_layer`.

    Returns:
        Seconds per stage.
    """
    device = model.device
    prefix = inputs.truncate(inputs.input_ids.shape[1] - 1)
    times: dict[str, float] = {}
    _sync(device)
    start = time.perf_counter()
    cache = kv.prefill(model.receiver, prefix.input_ids, prefix.attention_mask)
    _sync(device)
    times["receiver_prefill"] = time.perf_counter() - start
    if fuse:
        start = time.perf_counter()
        sharer_cache = kv.prefill(
            model.sharer, prefix.sharer_input_ids, prefix.sharer_attention_mask, keep_all_tokens=True
        )
        _sync(device)
        times["sharer_prefill"] = time.perf_counter() - start
        if fp32_fusers is not None:
            start = time.perf_counter()
            fp32_fusers(kv.layers(sharer_cache), kv.layers(cache), prefix.fusion_mask)
            _sync(device)
            times["fuse_fp32"] = time.perf_counter() - start
        start = time.perf_counter()
        model.fusers(kv.layers(sharer_cache), kv.layers(cache), prefix.fusion_mask, batched=False)
        _sync(device)
        times["fuse_per_layer"] = time.perf_counter() - start
        start = time.perf_counter()
        fused = model.fusers(kv.layers(sharer_cache), kv.layers(cache), prefix.fusion_mask)
        for layer_idx, (keys, values) in fused.items():
            kv.replace_layer(cache, layer_idx, keys, values)
        _sync(device)
        times["fuse"] = time.perf_counter() - start
    start = time.perf_counter()
    out = model.receiver.generate(
        input_ids=inputs.input_ids,
        attention_mask=inputs.attention_mask,
        **_decode_kwargs(new_tokens),
        **{kv.cache_kwarg(model.receiver): cache},
    )
    _sync(device)
    times["decode"] = time.perf_counter() - start
    assert out.shape[1] == inputs.input_ids.shape[1] + new_tokens, out.shape
    return times


def _decode_kwargs(new_tokens: int) -> dict[str, object]:
    """Greedy, exactly `new_tokens` tokens (random weights may emit eos at any step)."""
    return {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False, "pad_token_id": 0}


@torch.no_grad()
def time_library(model: C2CModel, inputs: C2CInputs, new_tokens: int, fuse: bool) -> float:
    """Seconds for the library's end-to-end `generate_from_inputs`."""
    _sync(model.device)
    start = time.perf_counter()
    model.generate_from_inputs(inputs, fuse=fuse, **_decode_kwargs(new_tokens))
    _sync(model.device)
    return time.perf_counter() - start


def measure(model: C2CModel, inputs: C2CInputs, *, pair: str, dtype: str, fp32_fusers: FuserStack | None,
            new_tokens: int, repeats: int, library_repeats: int) -> list[Row]:  # fmt: skip
    """Receiver alone and C2C, interleaved run by run so that load from other processes hits both alike.

    A short warm-up (16 prompt tokens, 2 new) first runs every code path once.

    Args:
        model: The pair, models and fusers in the measured dtype.
        inputs: The prompt, (1, N).
        pair: Pair name, for the table.
        dtype: dtype name, for the table.
        fp32_fusers: fp32 copies of the fusers, timed on the same caches (None in fp32).
        new_tokens: Tokens to generate.
        repeats: Timed staged runs per mode.
        library_repeats: Timed end-to-end runs through the library per mode, after the staged ones.

    Returns:
        Two rows (receiver alone, C2C), medians over the timed runs.
    """
    short = inputs.truncate(min(16, inputs.input_ids.shape[1]))
    for fuse in (False, True):
        time_stages(model, short, 2, fuse, fp32_fusers)
        time_library(model, short, 2, fuse)
    modes = (("receiver alone", False), ("C2C", True))
    staged: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    library: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for _, fuse in modes:
            staged[fuse].append(time_stages(model, inputs, new_tokens, fuse, fp32_fusers))
    for _ in range(library_repeats):
        for _, fuse in modes:
            library[fuse].append(time_library(model, inputs, new_tokens, fuse))
    rows: list[Row] = []
    for name, fuse in modes:
        runs = staged[fuse]
        stages = {s: statistics.median(r[s] for r in runs) if s in runs[0] else None for s in (*STAGES, *EXTRA)}
        total = statistics.median(sum(v for s, v in r.items() if s in STAGES) for r in runs)
        row = Row(pair, dtype, name, stages, total, statistics.median(library[fuse]) if library_repeats else None)
        row.ratio = total / rows[0].total if fuse else None
        rows.append(row)
        log(f"  {pair:5} {dtype:9} {name:15} total {1e3 * row.total:9.1f} ms")
    return rows


def run_pair(name: str, dtypes: list[str], args: argparse.Namespace) -> list[Row]:
    """Receiver alone and C2C for every dtype of one pair."""
    start = time.perf_counter()
    receiver, sharer, fuser = build_pair(name)
    model = C2CModel.from_models(receiver.to(args.device), sharer.to(args.device), fuser=fuser, seed=0).eval()
    fp32_fusers = model.fusers  # from_models builds fp32 fusers, whatever the models' dtype
    log(f"{name}: built in {time.perf_counter() - start:.1f} s; fusers {count_parameters(fp32_fusers):,} parameters")
    g = torch.Generator().manual_seed(0)
    vocab = min(receiver.config.vocab_size, sharer.config.vocab_size)
    inputs = model.inputs_from_ids(torch.randint(3, vocab, (1, args.prompt_tokens), generator=g))
    rows: list[Row] = []
    for dtype_name in dtypes:
        dtype = DTYPES[dtype_name]
        model.receiver.to(dtype)
        model.sharer.to(dtype)
        # The fusers run in the models' dtype, as from_pretrained casts them; fp32 copies are timed beside.
        model.fusers = fp32_fusers if dtype == torch.float32 else copy.deepcopy(fp32_fusers).to(dtype)
        rows += measure(model, inputs, pair=name, dtype=dtype_name, fp32_fusers=None if dtype == torch.float32 else fp32_fusers,
                        new_tokens=args.new_tokens, repeats=args.repeats, library_repeats=args.library_repeats)  # fmt: skip
        c2c = rows[-1]
        rate = fuse_flops(model.fusers, args.prompt_tokens - 1) / c2c.stages["fuse"] / 1e9
        c2c.fuse_peak = f"{rate:.0f} GFLOP/s: {100 * rate / args.peaks['bfloat16']:.0f} % / {100 * rate / args.peaks['float32']:.0f} %"
    return rows


@torch.no_grad()
def batch_sweep(name: str, args: argparse.Namespace) -> list[str]:
    """C2C at every batch size of `args.batches` (bf16 when measured, else fp32), interleaved run by run.

    Each batch holds distinct random prompts of the same length (no padding). Returns table lines:
    total and decode medians, generated tokens/s end to end and in decode, and both against batch 1.
    """
    receiver, sharer, fuser = build_pair(name)
    dtype = DTYPES["bfloat16" if "bfloat16" in args.dtypes.split(",") else "float32"]
    model = C2CModel.from_models(receiver.to(args.device), sharer.to(args.device), fuser=fuser, seed=0).eval()
    model.receiver.to(dtype), model.sharer.to(dtype), model.fusers.to(dtype)
    g = torch.Generator().manual_seed(1)
    vocab = min(receiver.config.vocab_size, sharer.config.vocab_size)
    ids = torch.randint(3, vocab, (max(args.batches), args.prompt_tokens), generator=g)
    inputs = {b: model.inputs_from_ids(ids[:b]) for b in args.batches}
    for b in args.batches:
        time_stages(model, inputs[b].truncate(16), 2, True)
    runs: dict[int, list[dict[str, float]]] = {b: [] for b in args.batches}
    for _ in range(args.repeats):
        for b in args.batches:
            runs[b].append(time_stages(model, inputs[b], args.new_tokens, True))
    medians = {
        b: (statistics.median(sum(r[s] for s in STAGES) for r in rs), statistics.median(r["decode"] for r in rs))
        for b, rs in runs.items()
    }
    first = args.batches[0]
    lines = [
        f"| batch | total ms | decode ms | generated tokens/s | x batch {first} | decode tokens/s | x batch {first} |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for b, (total, decode) in medians.items():
        rate, decode_rate = b * args.new_tokens / total, b * args.new_tokens / decode
        base, base_decode = (first * args.new_tokens / m for m in medians[first])
        lines.append(f"| {b} | {1e3 * total:.0f} | {1e3 * decode:.0f} | {rate:.2f} | **{rate / base:.2f}x** | "
                     f"{decode_rate:.2f} | **{decode_rate / base_decode:.2f}x** |")  # fmt: skip
        log(f"  batch {b:3}: total {1e3 * total:.0f} ms, decode {1e3 * decode:.0f} ms")
    return lines


def log(message: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(message, file=sys.stderr, flush=True)


def table(rows: list[Row]) -> str:
    """The results as a markdown table (milliseconds)."""

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{1e3 * value:.1f}"

    lines = [
        "| pair | dtype | mode | receiver prefill | sharer prefill | fuse | decode | total | C2C / receiver | fuse: rate, % of bf16 / fp32 peak | fuse, fuser by fuser | fuse with fp32 fusers | library end-to-end |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cells = " | ".join(ms(r.stages[s]) for s in STAGES)
        ratio = "-" if r.ratio is None else f"**{r.ratio:.2f}x**"
        lines.append(
            f"| {r.pair} | {r.dtype} | {r.mode} | {cells} | {ms(r.total)} | {ratio} | {r.fuse_peak} | {ms(r.stages['fuse_per_layer'])} | {ms(r.stages['fuse_fp32'])} | {ms(r.library)} |"
        )
    return "\n".join(lines)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def matmul_peak(dtype: torch.dtype, device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """The machine's matmul throughput in `dtype`, GFLOP/s: the median of `repeats` (size x size) @ (size x size)."""
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
    runs = []
    for _ in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        runs.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(runs[1:]) / 1e9


def fuse_flops(fusers: FuserStack, tokens: int) -> float:
    """Multiply-adds x 2 of the fuser stack over `tokens` fused tokens (every weight matrix touches every token)."""
    return 2.0 * tokens * sum(p.numel() for p in fusers.parameters() if p.dim() == 2)


def machine() -> str:
    """One line describing the machine (CPU, its vector extensions) and the software."""
    try:
        with open("/proc/cpuinfo") as handle:
            info = handle.read().splitlines()
    except OSError:
        info = []
    cpu = next(
        (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
        platform.processor() or platform.machine(),
    )
    extensions = sorted(
        {f for line in info if line.startswith("flags") for f in line.split() if f.startswith(("avx512", "amx"))}
    )
    return (f"{cpu} ({torch.backends.cpu.get_cpu_capability()}; {', '.join(extensions) or 'no AVX-512, no AMX'}), "
            f"{_cores()} cores visible, torch {torch.__version__} (torch threads: {torch.get_num_threads()}), "
            f"transformers {transformers.__version__}, Python {platform.python_version()}")  # fmt: skip


def provenance(
    script: str, argv: list[str] | None, started: float, load_before: float, device: torch.device | None = None
) -> list[str]:
    """The first lines of a benchmark's block: the command that ran (`python benchmarks/{script} ...`),
    when and for how long (since `started`, a `perf_counter` reading), and the machine with its 1-minute
    load average before (`load_before`) and now."""
    command = f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])
    on = "" if device is None else f", on {device}"
    return [
        f"Command: `{command.strip()}` (run {time.strftime('%Y-%m-%d')}, {(time.perf_counter() - started) / 60:.1f} min).",
        "",
        f"Machine: {machine()}{on}; 1-minute load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after.",
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table and optionally write it into a markdown file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="example:\n  python benchmarks/latency.py --pairs tiny --repeats 3")  # fmt: skip
    parser.add_argument("--pairs", default="tiny,qwen", help="comma-separated: tiny, qwen (default: both)")
    parser.add_argument(
        "--dtypes", default="float32,bfloat16", help="comma-separated: float32, bfloat16 (default: both)"
    )
    parser.add_argument(
        "--prompt_tokens", type=int, default=170, help="prompt length (default: 170, as the paper's Table 3)"
    )
    parser.add_argument("--new_tokens", type=int, default=10, help="tokens generated (default: 10)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (default: 3)")
    parser.add_argument(
        "--library_repeats",
        type=int,
        default=1,
        help="timed end-to-end runs through the library per configuration (default: 1)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every visible core)")
    parser.add_argument(
        "--batches", default="1,4,8,16", help="batch sizes of the C2C sweep (default: 1,4,8,16; '' skips it)"
    )
    parser.add_argument("--sweep_pair", default="qwen", help="pair of the batch sweep (default: qwen)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument(
        "--write", type=Path, help="markdown file whose latency block gets the results, e.g. docs/perf.md"
    )
    args = parser.parse_args(argv)
    bad = [d for d in args.dtypes.split(",") if d not in DTYPES]
    if bad:
        parser.error(f"unknown dtypes {bad}; choose from {', '.join(DTYPES)}")
    torch.set_num_threads(args.threads or _cores())
    log(f"torch threads: {torch.get_num_threads()} ({'--threads' if args.threads else 'every visible core'})")
    args.device = torch.device(args.device)
    args.batches = [int(b) for b in args.batches.split(",") if b]
    args.peaks = {name: matmul_peak(DTYPES[name], args.device) for name in DTYPES}
    log("matmul peak (2048^3): " + ", ".join(f"{n} {g:.0f} GFLOP/s" for n, g in args.peaks.items()))

    load_before = os.getloadavg()
    started = time.perf_counter()
    rows: list[Row] = []
    for pair in args.pairs.split(","):
        rows += run_pair(pair, args.dtypes.split(","), args)
    sweep = batch_sweep(args.sweep_pair, args) if args.batches else []
    block = "\n".join([
        *provenance("latency.py", argv, started, load_before[0], args.device),
        "",
        (f"Prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens (greedy, forced length), batch 1; "
        f"a short warm-up, then {args.repeats} timed staged runs per row, the two modes interleaved run by run; medians in milliseconds. "
        f"The last column is the library's own `generate_from_inputs` (median of {args.library_repeats}), a check on the staged total."),
        "",
        (f"Matmul peak measured by this run (2048 x 2048 x 2048, median of 5): bf16 {args.peaks['bfloat16']:.0f} GFLOP/s, "
        f"fp32 {args.peaks['float32']:.0f} GFLOP/s. The fuse rate counts 2 x (weight-matrix parameters) x (fused tokens)."),
        "",
        table(rows),
        *(["", (f"Batch sweep, {args.sweep_pair} pair, C2C, {'bfloat16' if 'bfloat16' in args.dtypes else 'float32'}, "
           f"{args.prompt_tokens}-token prompts, {args.new_tokens} new tokens, medians of {args.repeats}:"), "", *sweep] if sweep else []),
    ])  # fmt: skip
    print(block)
    if args.write:
        write_block(args.write, "latency", block)
        log(f"wrote the latency block of {args.write}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
