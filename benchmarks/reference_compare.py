"""cache2cache against the reference implementation (thu-nics/C2C), side by side on one machine.

Both run the shapes of benchmarks/latency.py (random weights: timing only): the receiver alone and
C2C, batch 1 and larger batches, in each dtype. The reference runs from a local checkout in its own
virtual environment (transformers 4.52.4, which cache2cache does not support), in a child process
(benchmarks/reference_driver.py) that stays up for the whole run; the two sides are interleaved run
by run (one reference run, then the same run of ours, and so on), so that load from other processes
hits both alike, and never run at the same time. The table reports medians and the ratios the
issue asks for: C2C / receiver alone on each side, our C2C / the reference's, the fusion stage (the
reference: time inside its projectors' forward; ours: the `fuse` stage), and batch-B over batch-1
generated tokens per second.

The reference is never vendored or committed: give its checkout and its venv's Python.

    git clone https://github.com/thu-nics/C2C /path/to/C2C
    python -m venv /path/to/c2c-venv
    /path/to/c2c-venv/bin/pip install torch transformers==4.52.4 accelerate
    python benchmarks/reference_compare.py --reference /path/to/C2C \\
        --reference_python /path/to/c2c-venv/bin/python --write docs/perf.md

Without `--reference` it prints these steps and exits with status 2. `--write` replaces the block
between the reference-compare markers of that file (the prose around it stays).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from docblock import write_block

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "reference_driver.py"
HOW_TO = """benchmarks/reference_compare.py needs a local checkout of the reference implementation and a
virtual environment for it (transformers 4.52.4); neither is part of this repository:

    git clone https://github.com/thu-nics/C2C /path/to/C2C
    python -m venv /path/to/c2c-venv
    /path/to/c2c-venv/bin/pip install torch transformers==4.52.4 accelerate

then run:

    python benchmarks/reference_compare.py --reference /path/to/C2C --reference_python /path/to/c2c-venv/bin/python
"""
SPEC_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "tie_word_embeddings", "max_position_embeddings", "rms_norm_eps",
)  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; `--reference` is optional here so that its absence can print `HOW_TO`."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=HOW_TO
    )
    parser.add_argument("--reference", type=Path, help="root of a thu-nics/C2C checkout (holds rosetta/)")
    parser.add_argument(
        "--reference_python", type=Path, help="the Python of the reference's venv (transformers 4.52.4)"
    )
    parser.add_argument("--pair", default="qwen", choices=("tiny", "qwen"), help="shapes, as benchmarks/latency.py (default: qwen)")  # fmt: skip
    parser.add_argument("--dtypes", default="bfloat16,float32", help="comma-separated: bfloat16, float32 (default: both)")  # fmt: skip
    parser.add_argument("--prompt_tokens", type=int, default=170, help="prompt length (default: 170, Table 3)")
    parser.add_argument("--new_tokens", type=int, default=12, help="tokens generated (default: 12)")
    parser.add_argument("--batches", default="1,8", help="batch sizes, the first is the base (default: 1,8)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration and side (default: 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on both sides (default: every core)")
    parser.add_argument("--device", default="cpu", help="torch device on both sides (default: cpu)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one reference run may take (default: 1800)")  # fmt: skip
    parser.add_argument("--write", type=Path, help="markdown file whose reference-compare block gets the table")
    args = parser.parse_args(argv)
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    bad = [d for d in args.dtypes if d not in ("bfloat16", "float32")]
    if bad:
        parser.error(f"unknown dtypes {bad}; choose from bfloat16, float32")
    try:
        args.batches = [int(b) for b in args.batches.split(",") if b]
    except ValueError:
        parser.error(f"--batches must be comma-separated integers, got {args.batches!r}")
    if not args.batches or min(args.batches) < 1:
        parser.error("--batches needs at least one batch size >= 1")
    if args.prompt_tokens < 2 or args.new_tokens < 1 or args.repeats < 1:
        parser.error("--prompt_tokens must be >= 2, --new_tokens and --repeats >= 1")
    return args


def check_reference(args: argparse.Namespace) -> str | None:
    """Why the reference cannot be run as given (with the fix), or None."""
    if not (args.reference / "rosetta" / "model" / "wrapper.py").is_file():
        return (
            f"--reference {args.reference}: no rosetta/model/wrapper.py there; give the root of a "
            "`git clone https://github.com/thu-nics/C2C` checkout"
        )
    if args.reference_python is None:
        return "--reference_python is missing: give the Python of a venv with transformers==4.52.4 (see --help)"
    if not os.access(args.reference_python, os.X_OK):
        return f"--reference_python {args.reference_python}: not an executable Python; see --help for the venv"
    return None


def shapes(pair: str) -> tuple[Any, dict[str, Any]]:
    """Our model for `pair` (fp32, as benchmarks/latency.py builds it) and the JSON spec the driver rebuilds it from."""
    from cache2cache import C2CModel
    from latency import build_pair

    receiver, sharer, fuser = build_pair(pair)
    model = C2CModel.from_models(receiver, sharer, fuser=fuser, seed=0).eval()

    def side(m: Any) -> dict[str, Any]:
        cfg = m.config
        spec = {k: getattr(cfg, k) for k in SPEC_FIELDS if getattr(cfg, k, None) is not None}
        rope = getattr(cfg, "rope_theta", None) or (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta")
        if rope is not None:
            spec["rope_theta"] = rope
        spec["config_class"] = type(cfg).__name__
        return spec

    spec = {
        "receiver": side(receiver),
        "sharer": side(sharer),
        "fuser": {"hidden_dim": fuser.hidden_dim, "intermediate_dim": fuser.intermediate_dim, "num_layers": fuser.num_layers},
        "layer_map": {str(t): s for t, s in model.config.layer_map.items()},
        "gate_logit": fuser.gate_init,
    }  # fmt: skip
    return model, spec


class Reference:
    """The reference's driver process for one dtype: send a request, read its JSON answer."""

    def __init__(self, args: argparse.Namespace, spec: dict[str, Any], dtype: str, threads: int) -> None:
        command = [
            str(args.reference_python), str(DRIVER), "--reference", str(args.reference.resolve()),
            "--spec", json.dumps(spec), "--dtype", dtype, "--prompt_tokens", str(args.prompt_tokens),
            "--max_batch", str(max(args.batches)), "--threads", str(threads), "--device", args.device,
        ]  # fmt: skip
        self.timeout = args.timeout
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the reference driver exited (status {self.process.wait()}) without an answer")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the reference failed: {answer['error']}\n{answer.get('traceback', '')}")
        return answer

    def run(self, mode: str, batch: int, new_tokens: int) -> dict[str, Any]:
        """One timed run on the reference side."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"mode": mode, "batch": batch, "new_tokens": new_tokens}) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        """End the driver (it exits when its stdin closes)."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


def ours(model: Any, inputs: Any, mode: str, new_tokens: int) -> dict[str, Any]:
    """One timed run on our side: `generate_from_inputs`, the `fuse` stage timed by `StageClock`."""
    from cache2cache.evaluation.timing import StageClock
    from latency import _decode_kwargs, _sync

    clock = StageClock(model.device)
    _sync(model.device)
    start = time.perf_counter()
    out = model.generate_from_inputs(inputs, fuse=mode == "c2c", stage=clock.stage, **_decode_kwargs(new_tokens))
    _sync(model.device)
    seconds = time.perf_counter() - start
    fuse = clock.ms.get("fuse")
    return {"seconds": seconds, "fuse_seconds": None if fuse is None else fuse / 1e3, "generated": int(out.shape[1] - inputs.input_ids.shape[1])}  # fmt: skip


def compare(args: argparse.Namespace, threads: int) -> tuple[list[str], dict[str, str]]:
    """Every configuration, both sides interleaved run by run; the table lines and what each side ran."""
    import copy

    import torch

    model, spec = shapes(args.pair)
    model.receiver.to(args.device), model.sharer.to(args.device), model.fusers.to(args.device)
    fp32_fusers = model.fusers
    g = torch.Generator().manual_seed(0)
    vocab = min(spec["receiver"]["vocab_size"], spec["sharer"]["vocab_size"])
    ids = torch.randint(3, vocab, (max(args.batches), args.prompt_tokens), generator=g)
    inputs = {b: model.inputs_from_ids(ids[:b]) for b in args.batches}
    lines = [
        "| dtype | measure | reference | cache2cache | cache2cache / reference |",
        "|---|---|---:|---:|---:|",
    ]
    versions: dict[str, str] = {}
    for dtype in args.dtypes:
        model.receiver.to(getattr(torch, dtype)), model.sharer.to(getattr(torch, dtype))
        model.fusers = copy.deepcopy(fp32_fusers).to(getattr(torch, dtype))
        reference = Reference(args, spec, dtype, threads)
        versions["reference transformers"] = reference.ready["transformers"]
        try:
            medians = measure(args, model, inputs, reference, dtype)
        finally:
            reference.close()
        lines += rows(args, dtype, medians)
    return lines, versions


def measure(args: argparse.Namespace, model: Any, inputs: dict[int, Any], reference: Reference, dtype: str) -> dict[tuple[str, str, int], tuple[float, float | None]]:  # fmt: skip
    """Medians of (seconds, fuse seconds) per (side, mode, batch), after one warm-up run of each."""
    configs = [(mode, b) for b in args.batches for mode in ("receiver", "c2c")]
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for mode, b in configs:  # warm-up: every configuration once, 2 new tokens, on both sides
        reference.run(mode, b, 2)
        ours(model, inputs[b], mode, 2)
    for _ in range(args.repeats):
        for mode, b in configs:
            for side, result in (
                ("reference", reference.run(mode, b, args.new_tokens)),
                ("cache2cache", ours(model, inputs[b], mode, args.new_tokens)),
            ):
                if result["generated"] != args.new_tokens:
                    raise RuntimeError(f"{side} {mode} batch {b}: generated {result['generated']} tokens, not {args.new_tokens}")  # fmt: skip
                runs.setdefault((side, mode, b), []).append(result)
                print(f"  {dtype} {side:11} {mode:8} batch {b}: {1e3 * result['seconds']:.0f} ms", file=sys.stderr, flush=True)  # fmt: skip
    return {
        key: (
            statistics.median(r["seconds"] for r in rs),
            statistics.median(r["fuse_seconds"] for r in rs) if rs[0]["fuse_seconds"] is not None else None,
        )
        for key, rs in runs.items()
    }


def rows(args: argparse.Namespace, dtype: str, medians: dict[tuple[str, str, int], tuple[float, float | None]]) -> list[str]:  # fmt: skip
    """The table lines of one dtype."""
    base = args.batches[0]

    def line(measure: str, ref: float, us: float, unit: str = "ms") -> str:
        shown = (lambda v: f"{1e3 * v:.0f} ms") if unit == "ms" else (lambda v: f"{v:.2f}")
        return f"| {dtype} | {measure} | {shown(ref)} | {shown(us)} | **{us / ref:.2f}x** |"

    out = []
    for side_key in ("receiver", "c2c"):
        name = "receiver alone" if side_key == "receiver" else "C2C"
        out.append(line(f"{name}, batch {base}", medians[("reference", side_key, base)][0], medians[("cache2cache", side_key, base)][0]))  # fmt: skip
    ratio = {s: medians[(s, "c2c", base)][0] / medians[(s, "receiver", base)][0] for s in ("reference", "cache2cache")}
    out.append(line(f"C2C / receiver alone, batch {base}", ratio["reference"], ratio["cache2cache"], unit="x"))
    ref_fuse, our_fuse = medians[("reference", "c2c", base)][1], medians[("cache2cache", "c2c", base)][1]
    if ref_fuse is not None and our_fuse is not None:
        out.append(line(f"fusion stage, batch {base}", ref_fuse, our_fuse))
    for b in args.batches[1:]:
        rate = {
            s: (b / medians[(s, "c2c", b)][0]) / (base / medians[(s, "c2c", base)][0])
            for s in ("reference", "cache2cache")
        }
        out.append(line(f"C2C generated tokens/s, batch {b} / batch {base}", rate["reference"], rate["cache2cache"], unit="x"))  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    """Check the arguments, run both sides interleaved, print the table (and write it with `--write`)."""
    args = parse_args(argv)
    if args.reference is None:
        print(HOW_TO, file=sys.stderr)
        return 2
    problem = check_reference(args)
    if problem:
        print(f"reference_compare: {problem}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(HERE))
    import torch

    from latency import _cores, machine

    threads = args.threads or _cores()
    torch.set_num_threads(threads)
    started = time.perf_counter()
    lines, versions = compare(args, threads)
    commit = subprocess.run(["git", "-C", str(args.reference), "rev-parse", "HEAD"], capture_output=True, text=True)
    command = "python benchmarks/reference_compare.py " + " ".join(argv if argv is not None else sys.argv[1:])
    block = "\n".join([
        f"Command: `{command.strip()}` (run {time.strftime('%Y-%m-%d')}, {(time.perf_counter() - started) / 60:.1f} min).",
        "",
        f"Machine: {machine()}, on {args.device}. Reference: thu-nics/C2C at {commit.stdout.strip() or 'an unknown commit'}, "
        f"transformers {versions.get('reference transformers', '?')}, {threads} threads.",
        "",
        (f"{args.pair} pair, random weights, prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens (greedy, forced "
         f"length); a warm-up, then {args.repeats} runs per configuration and side, the sides interleaved run by run; medians."),
        "",
        *lines,
    ])  # fmt: skip
    print(block)
    if args.write:
        write_block(args.write, "reference-compare", block)
        print(f"wrote the reference-compare block of {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
