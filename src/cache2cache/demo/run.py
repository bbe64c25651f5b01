"""`run_demo`: build the world, train the two LLMs and a fuser, then compare the four modes.

Phases (each shows a progress bar; trained artifacts are reused on the next run unless `fresh`):

1. **world**: people and their facts from the seed (`world.py`);
2. **language models**, trained at the same time in two processes: a Llama-style **sharer** learns
   every fact of A, B and C and to answer questions about A and C; a Qwen3-style **receiver**, with
   its own word vocabulary in which A, B and R names are `<unk>`, learns C's facts and to read
   background text (for T2T);
3. **fuser**: the library's training loop (`train_fusers`) trains C2C fusers on questions about A;
4. **evaluation** on the held-out set B, which only the sharer knows: receiver alone, sharer
   alone, T2T (the sharer writes background text, the receiver reads it) and C2C;
5. **report**: `report.md`, `report.png`, `results.json` and `heldout.jsonl` in the output folder.

Artifacts: `sharer/` and `receiver/` (Hugging Face folders with their tokenizers), `fuser/final/`
(a C2C checkpoint), `demo_config.json` (what they were trained with).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerFast

from ..config import FuserConfig
from ..evaluation.config import DEFAULT_MODES as MODES
from ..evaluation.modes import T2TStyle, reply_texts
from ..frozen import freeze
from ..model import C2CModel
from ..output_dir import output_dir_problem
from ..training.config import OutputOptions, TrainConfig, TrainingOptions
from ..training.loop import train_fusers
from . import corpora
from .report import DemoResult, ModeResult, write_demo_report
from .toy_models import pretrain, receiver_model, sharer_model, word_tokenizer
from .world import ATTRIBUTES, BACKGROUND_REQUEST, World, make_world

logger = logging.getLogger(__name__)

DEMO_FORMAT = 1

DEMO_T2T = T2TStyle(BACKGROUND_REQUEST, "system", 16)
"""The T2T of the demo's pair: the sharer's background format, which its receiver was trained to read."""


@dataclass(frozen=True)
class DemoSize:
    """How big the demo is: entity counts, training steps and batch sizes (docs/demo.md explains the choices)."""

    n_fuser_train: int
    n_held_out: int
    n_receiver_known: int
    n_reading: int
    sharer_steps: int
    receiver_steps: int
    fuser_steps: int
    latency_items: int
    lm_batch_size: int = 64
    fuser_batch_size: int = 64
    sharer_lr: float = 2e-3
    receiver_lr: float = 1.5e-3
    fuser_lr: float = 3e-3


SIZES: dict[str, DemoSize] = {
    # Held-out C2C ~90 % against ~9 % for the receiver alone, in about 4 minutes on 2 CPU cores.
    "full": DemoSize(
        400, 100, 100, 150, sharer_steps=800, receiver_steps=800, fuser_steps=600, latency_items=30, fuser_batch_size=48
    ),
    # A reduced run for CI (same code path): fewer people and steps, a smaller but clear gap.
    "ci": DemoSize(
        120,
        40,
        40,
        60,
        sharer_steps=1200,
        receiver_steps=400,
        fuser_steps=300,
        latency_items=5,
        lm_batch_size=32,
        fuser_batch_size=32,
    ),
}


def run_demo(
    output_dir: str | Path = "c2c_demo",
    *,
    seed: int = 0,
    size: str | DemoSize = "full",
    fresh: bool = False,
    progress: bool = True,
    num_threads: int | None = 1,
    parallel: bool = True,
) -> DemoResult:
    """Run (or resume) the offline demo and write its report.

    Args:
        output_dir: Folder for the trained pair, the fuser and the report.
        seed: Seeds the world and every training run.
        size: "full" (the README's demo), "ci" (reduced, about 2 minutes) or a custom `DemoSize`.
        fresh: Retrain everything even if matching artifacts exist.
        progress: Show progress bars.
        num_threads: torch CPU threads in this process (default 1: the models are too small to gain
            from more, and the receiver trains in a second process at the same time); None keeps
            torch's choice.
        parallel: Train the sharer and the receiver at the same time, in two processes.

    Returns:
        The answers, accuracies, latencies and timings of every mode.
    """
    if isinstance(size, str) and size not in SIZES:
        raise ValueError(f"unknown demo size {size!r}; choose one of {', '.join(SIZES)}")
    if num_threads is not None and num_threads < 1:
        raise ValueError(f"num_threads must be at least 1 (or None for torch's choice), got {num_threads}")
    out = Path(output_dir).resolve()
    unusable = output_dir_problem(out)
    if unusable:
        raise ValueError(f"the demo's output folder {unusable}; pass another output_dir")
    if num_threads:
        torch.set_num_threads(num_threads)
    spec = SIZES[size] if isinstance(size, str) else size
    settings = {"format": DEMO_FORMAT, "seed": seed, **asdict(spec)}
    reuse = not fresh and _saved_settings(out) == settings
    if fresh or not reuse:
        for name in ("sharer", "receiver", "fuser"):
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo_config.json").write_text(json.dumps(settings, indent=2) + "\n")

    seconds: dict[str, float] = {}
    reused: list[str] = []
    world = make_world(seed, n_fuser_train=spec.n_fuser_train, n_held_out=spec.n_held_out,
                       n_receiver_known=spec.n_receiver_known, n_reading=spec.n_reading)  # fmt: skip

    def timed(name: str, fn: Callable[[], object]) -> object:
        start = time.perf_counter()
        value = fn()
        seconds[name] = time.perf_counter() - start
        return value

    sharer, sharer_tok, receiver, receiver_tok = timed(
        "language models", lambda: _language_models(world, out, spec, seed, progress, parallel, reused)
    )
    model = timed(
        "fuser",
        lambda: _fuser(world, out / "fuser", receiver, receiver_tok, sharer, sharer_tok, spec, seed, progress, reused),
    )
    questions = corpora.held_out_questions(world)
    results = timed("evaluation", lambda: evaluate_modes(model, questions, spec.latency_items, progress))
    result = DemoResult(
        out,
        [q[0][0]["content"] for q in questions],
        [q[1] for q in questions],
        results,
        seconds,
        reused,
        {p.name for p in world.fuser_train},
        {p.name for p in world.held_out},
    )
    write_demo_report(result, world)
    return result


def _saved_settings(out: Path) -> dict | None:
    path = out / "demo_config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _save_atomic(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def _load(folder: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A trained model and its tokenizer, frozen; a damaged folder is reported with the fix."""
    try:
        return freeze(AutoModelForCausalLM.from_pretrained(folder)), AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, SafetensorError) as err:
        raise ValueError(
            f"cannot load the demo's trained {folder.name} from {folder} ({err}); rerun with --fresh (fresh=True) to retrain"
        ) from err


def train_sharer(world: World, folder: Path, spec: DemoSize, seed: int, progress: bool) -> None:
    """Train the sharer from scratch and save it (with its tokenizer) to `folder`, atomically."""
    people = world.fuser_train + world.held_out + world.receiver_known
    vocab_texts = [
        " ".join([p.bio(), *(p.question(a) + " " + p.background(a) for a in ATTRIBUTES), BACKGROUND_REQUEST])
        for p in people
    ]
    tokenizer = word_tokenizer(vocab_texts, role="sharer")
    model = sharer_model(len(tokenizer), seed)
    texts = corpora.sharer_texts(world, tokenizer, seed)
    pretrain(
        model,
        tokenizer,
        texts,
        steps=spec.sharer_steps,
        lr=spec.sharer_lr,
        batch_size=spec.lm_batch_size,
        seed=seed,
        desc="sharer LM",
        progress=progress,
    )
    _save_atomic(model, tokenizer, folder)


def train_receiver(world: World, folder: Path, spec: DemoSize, seed: int, progress: bool) -> None:
    """Train the receiver from scratch and save it (with its tokenizer) to `folder`, atomically."""
    vocab_texts, hidden = corpora.receiver_vocabulary_texts(world)
    tokenizer = word_tokenizer(vocab_texts, role="receiver", exclude=hidden)
    model = receiver_model(len(tokenizer), seed + 1)
    texts = corpora.receiver_texts(world, tokenizer)
    pretrain(
        model,
        tokenizer,
        texts,
        steps=spec.receiver_steps,
        lr=spec.receiver_lr,
        batch_size=spec.lm_batch_size,
        seed=seed,
        desc="receiver LM",
        progress=progress,
    )
    _save_atomic(model, tokenizer, folder)


def _receiver_job(folder: str, spec: DemoSize, seed: int, progress: bool) -> None:
    """Entry point of the receiver's training process (the world is rebuilt from the seed)."""
    torch.set_num_threads(1)
    world = make_world(seed, n_fuser_train=spec.n_fuser_train, n_held_out=spec.n_held_out,
                       n_receiver_known=spec.n_receiver_known, n_reading=spec.n_reading)  # fmt: skip
    train_receiver(world, Path(folder), spec, seed, progress)


def _language_models(
    world: World, out: Path, spec: DemoSize, seed: int, progress: bool, parallel: bool, reused: list[str]
):
    """Train (or reuse) the sharer and the receiver; returns both models and tokenizers, as saved.

    The two are independent, so with `parallel` the receiver trains in a second process while the
    sharer trains here, one CPU thread each (tiny models gain nothing from more threads).
    """
    todo = [name for name in ("sharer", "receiver") if not (out / name / "config.json").is_file()]
    reused += [name for name in ("sharer", "receiver") if name not in todo]
    job = None
    if "receiver" in todo and "sharer" in todo and parallel:
        job = multiprocessing.get_context("spawn").Process(
            target=_receiver_job, args=(str(out / "receiver"), spec, seed, False)
        )
        job.start()
        todo.remove("receiver")
    try:
        if "sharer" in todo:
            train_sharer(world, out / "sharer", spec, seed, progress)
        if "receiver" in todo:
            train_receiver(world, out / "receiver", spec, seed, progress)
    except BaseException:
        if job is not None:  # do not leave the receiver's process training alone
            job.terminate()
        raise
    finally:
        if job is not None:
            job.join()
    if job is not None and job.exitcode != 0:
        raise RuntimeError(
            f"training the receiver in its own process failed (exit code {job.exitcode}); rerun with parallel=False to see why"
        )
    return (*_load(out / "sharer"), *_load(out / "receiver"))


def fuser_recipe(spec: DemoSize, seed: int, output_dir: Path) -> tuple[FuserConfig, TrainConfig]:
    """The demo's fuser and training settings.

    Small scale needs two departures from the published recipe (docs/demo.md): the gate logits start
    open (+3) because a logit at 0 barely moves in a few hundred steps, and the learning rate is
    `spec.fuser_lr` (3e-3) rather than 1e-4.
    """
    fuser = FuserConfig(hidden_dim=128, intermediate_dim=128, num_layers=3, dropout=0.1, gate_init=3.0,
                        initial_temperature=1.0, final_temperature=0.001)  # fmt: skip
    config = TrainConfig(
        training=TrainingOptions(
            seed=seed, max_steps=spec.fuser_steps, per_device_batch_size=spec.fuser_batch_size, learning_rate=spec.fuser_lr, weight_decay=0.01,
            warmup_ratio=0.05, precision="fp32", anneal_ratio=0.8, device="cpu",
        ),
        output=OutputOptions(output_dir=str(output_dir), save_steps=spec.fuser_steps, eval_steps=0, log_steps=50, overwrite=True),
    )  # fmt: skip
    return fuser, config


def _fuser(
    world,
    folder: Path,
    receiver,
    receiver_tok,
    sharer,
    sharer_tok,
    spec: DemoSize,
    seed: int,
    progress: bool,
    reused: list[str],
) -> C2CModel:
    if (folder / "final" / "c2c_config.json").is_file():
        reused.append("fuser")
        return C2CModel.from_pretrained(folder / "final", receiver=receiver, sharer=sharer,
                                        receiver_tokenizer=receiver_tok, sharer_tokenizer=sharer_tok)  # fmt: skip
    fuser, config = fuser_recipe(spec, seed, folder)
    model = C2CModel.from_models(
        receiver, sharer, fuser=fuser, receiver_tokenizer=receiver_tok, sharer_tokenizer=sharer_tok, seed=seed
    )
    train_fusers(model, corpora.fuser_conversations(world), None, config, progress=progress)
    return model.eval()


# ------------------------------------------------------------------------------------ evaluation


def evaluate_modes(
    model: C2CModel, questions: list[tuple[list[dict[str, str]], str]], latency_items: int, progress: bool
) -> dict[str, ModeResult]:
    """Answer every held-out question in each mode (batched), then time `latency_items` of them at
    batch size 1. An answer is correct when its first word is the gold value."""
    from tqdm.auto import tqdm

    conversations = [q for q, _ in questions]
    gold = [g for _, g in questions]

    def answer(mode: str, convs: list[list[dict[str, str]]]) -> list[str]:
        return _first_words(reply_texts(model, mode, convs, t2t=DEMO_T2T, max_new_tokens=2, do_sample=False))

    results: dict[str, ModeResult] = {}
    for mode in tqdm(MODES, desc="evaluate", disable=not progress, leave=False):
        answers = [
            a for start in range(0, len(conversations), 64) for a in answer(mode, conversations[start : start + 64])
        ]
        latencies = []
        for conv in conversations[:latency_items]:
            start = time.perf_counter()
            answer(mode, [conv])
            latencies.append((time.perf_counter() - start) * 1000)
        results[mode] = ModeResult(mode, answers, sum(a == g for a, g in zip(answers, gold)), latencies)
    return results


def _first_words(texts: list[str]) -> list[str]:
    return [(t.split() or [""])[0] for t in texts]
