"""The training recipe schema: `TrainConfig` and its sections, as dataclasses.

A recipe has five sections (every key optional except the models and the training data):

    kind: train
    model:    receiver, sharer, tokenizers, how to load them (init, dtype), layer map, fuser sizes
    data:     train / eval sources (chat files, multiple-choice tasks, ShareGPT), max_length
    training: seed, batch, optimizer, schedule, precision, gate annealing, device, resume_from
    output:   output_dir, save/eval/log intervals, reporting

Each field's docstring entry (`Attributes:`) is also its `c2c train --help` line. Reading, overriding
and type checking are `cache2cache.recipe`'s; the value and file checks are in `training.checks`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..config import AlignmentStrategy, FuserConfig
from ..layer_map import LayerMapName
from ..tasks.prompts import PromptStyle

RECIPE_NAME = "recipe.yaml"
"""The resolved recipe, copied into every run's output_dir."""


@dataclass
class ModelOptions:
    """The pair and its fusers.

    Attributes:
        receiver: Hub id, local folder, `.gguf` file or fetched alias (see `cache2cache.loading`).
        sharer: Same, for the sharer.
        receiver_tokenizer: Where the receiver's tokenizer is; default: with the receiver.
        sharer_tokenizer: Where the sharer's tokenizer is; default: with the sharer. When it maps
            tokens like the receiver's, the sharer reads the receiver's ids; otherwise prompts are
            token-aligned (`cache2cache.alignment`).
        init: "pretrained" loads weights. "random" builds each model from the `config.json` in its
            folder with seeded random weights (smoke tests; `recipes/tiny.yaml`); the built models are
            saved under `<output_dir>/models/` so the checkpoint reloads on its own.
        dtype: dtype of the frozen LLMs; "auto" follows the training precision (bfloat16 under bf16,
            float32 under fp32).
        layer_map: "terminal" (published default) or "depth".
        alignment_strategy: Token alignment when the tokenizers differ: "longest" or "first".
        fuser: Fuser hyperparameters (published names). `anneal_steps` may instead come from
            `training.anneal_ratio`.
        more_sharers: Further sharers, each with its own fusers (docs/method.md §7), loaded like
            `sharer` with their own tokenizers; `init: pretrained` only.
        sharer_mode: How several sharers combine: "parallel" (deltas summed on the clean receiver
            cache) or "sequential" (each fuses into the cache the previous one produced).
    """

    receiver: str = ""
    sharer: str = ""
    receiver_tokenizer: str | None = None
    sharer_tokenizer: str | None = None
    init: Literal["pretrained", "random"] = "pretrained"
    dtype: Literal["auto", "bfloat16", "float32", "float16"] = "auto"
    layer_map: LayerMapName = "terminal"
    alignment_strategy: AlignmentStrategy = "longest"
    fuser: FuserConfig = field(default_factory=FuserConfig)
    more_sharers: list[str] = field(default_factory=list)
    sharer_mode: Literal["parallel", "sequential"] = "parallel"


@dataclass
class DataSource:
    """One source of training or evaluation conversations.

    Attributes:
        type: "chat": records holding a `messages` (or `conversations`) list, from a .jsonl/.json
            (optionally .gz), .parquet or .arrow file, a folder of those or a `datasets.save_to_disk`
            folder, or a hub dataset id. "mc": a multiple-choice task read by
            `cache2cache.tasks.load_task` (`bigbench:<task>`, a JSONL file, ...), turned
            into chat with the paper's training prompt. "sharegpt": the (possibly truncated) ShareGPT
            JSON; `path` defaults to the fetched `sharegpt` asset.
        path: The file, folder, hub id or task name.
        split: Dataset split (hub ids, `datasets` folders, registered mc tasks).
        limit: Keep the first `limit` conversations.
        data_dir: "mc" only: where `load_task` finds local data (default: the asset cache).
        prompt_style: "mc" only: "paper" (question and lettered options, reply "The correct answer
            is X."), "plain" (the bare question) or "listed" (the question and its lettered options);
            plain and listed reply with the gold option's text: what `c2c eval --prompt_style
            plain|listed --loglik_target texts` scores.
        sharer_context: "mc" only: items with a supporting passage (SciQ's `support`, a JSONL
            `context`) train with the passage in the sharer's prompt alone, so the receiver can only
            answer from it through the fused cache; the other items stay plain.
    """

    type: Literal["chat", "mc", "sharegpt"] = "chat"
    path: str | None = None
    split: str | None = None
    limit: int | None = None
    data_dir: str | None = None
    prompt_style: PromptStyle = "paper"
    sharer_context: bool = False


@dataclass
class DataOptions:
    """Which conversations to train and evaluate on.

    Attributes:
        train: Training sources, concatenated in order.
        eval: Held-out sources for the periodic eval loss.
        eval_ratio: When `eval` is empty, hold out this fraction of the training conversations
            (seeded); 0 disables evaluation.
        max_length: Drop conversations longer than this many tokens (receiver tokenizer, after
            alignment), counted and logged.
        enable_thinking: Passed to chat templates that read it (Qwen3); off, as in the paper.
    """

    train: list[DataSource] = field(default_factory=list)
    eval: list[DataSource] = field(default_factory=list)
    eval_ratio: float = 0.0
    max_length: int = 2048
    enable_thinking: bool = False


@dataclass
class TrainingOptions:
    """The optimisation.

    Attributes:
        seed: Seeds fuser init, data order, the eval split and the per-step noise (Gumbel, dropout).
        epochs: Passes over the training data (ignored when `max_steps` is set).
        max_steps: Optimizer steps to run; default `epochs` x steps per epoch.
        per_device_batch_size: Conversations per micro-batch on each process.
        gradient_accumulation_steps: Micro-batches per optimizer step. The global batch is
            per_device_batch_size x gradient_accumulation_steps x world size.
        learning_rate: Peak AdamW learning rate.
        gate_lr_multiplier: Learning-rate factor for the `*_gate_logit` parameters (a small run needs
            the gate to move; e.g. 30).
        weight_decay: AdamW decoupled weight decay on weight matrices (not on biases, norms or gates).
        warmup_ratio: Fraction of the steps with a linear warmup; then linear decay to 0.
        max_grad_norm: Gradient clipping norm (0 disables clipping).
        precision: "bf16": autocast to bfloat16 with fp32 master weights; "fp32": no autocast;
            "auto": bf16 where the device runs bf16 natively (CUDA with bf16, CPUs with AMX or
            AVX512-BF16), fp32 elsewhere (on an AVX2-only CPU bf16 is emulated and much slower).
        anneal_ratio: When set, the gate temperature anneals over this fraction of the steps (sets
            `model.fuser.anneal_steps`; give one or the other).
        device: "auto" (cuda:<local rank> if available, else cpu), "cpu", "cuda" or "cuda:N".
        num_threads: CPU threads for torch's intra-op parallelism (None: torch's default). Tiny
            models run fastest on 1: their ops are too small to split, and spare threads only contend.
        resume_from: "latest" (the newest `checkpoint-*` in output_dir; a fresh start if none) or a
            checkpoint folder. None starts from scratch.
        include_response: Also fuse the response tokens, teacher-forced, with the sharer reading the
            response too (the reference's `include_response`; `cache2cache.response_fusion`). Fusers
            trained so are meant to be used with `include_response` at inference.
        group_by_length: Shuffle, then sort each pool of `LENGTH_POOL_STEPS` global batches by
            length and shuffle the batches (Hugging Face Trainer's `group_by_length`): micro-batches
            of similar lengths carry far less padding, and every example is still seen once per epoch.
    """

    seed: int = 42
    epochs: int = 1
    max_steps: int | None = None
    per_device_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-4
    gate_lr_multiplier: float = 1.0
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    anneal_ratio: float | None = None
    device: str = "auto"
    num_threads: int | None = None
    resume_from: str | None = None
    include_response: bool = False
    group_by_length: bool = False


@dataclass
class OutputOptions:
    """Where and how often to write.

    Attributes:
        output_dir: The run folder: `recipe.yaml`, `metrics.jsonl`, `checkpoint-<step>/`, `final/`.
        save_steps: Write a checkpoint every this many optimizer steps (and always at the end).
        eval_steps: Compute the eval loss every this many steps (and at the end); 0 only at the end.
        log_steps: Write a metrics row every this many steps.
        keep_last: Keep only the newest `keep_last` checkpoints (None keeps all).
        overwrite: Delete earlier checkpoints of a fresh run in output_dir instead of refusing.
        report_to: Also log to "tensorboard" and/or "wandb" (each needs its package installed).
        run_name: Run name for wandb (default: the output_dir's name).
    """

    output_dir: str = "runs/c2c"
    save_steps: int = 500
    eval_steps: int = 100
    log_steps: int = 10
    keep_last: int | None = None
    overwrite: bool = False
    report_to: list[Literal["tensorboard", "wandb"]] = field(default_factory=list)
    run_name: str | None = None


@dataclass
class TrainConfig:
    """A complete training recipe (see the module docstring)."""

    kind: Literal["train"] = "train"
    model: ModelOptions = field(default_factory=ModelOptions)
    data: DataOptions = field(default_factory=DataOptions)
    training: TrainingOptions = field(default_factory=TrainingOptions)
    output: OutputOptions = field(default_factory=OutputOptions)

    def to_dict(self) -> dict[str, Any]:
        """A plain nested dict (what `to_yaml` writes); without `model.fuser.anneal_steps` when
        `training.anneal_ratio` gives the anneal length, so the dict validates again."""
        data = dataclasses.asdict(self)
        if self.training.anneal_ratio is not None:
            del data["model"]["fuser"]["anneal_steps"]
        return data

    def to_yaml(self) -> str:
        """The recipe as YAML, every field written out."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    @property
    def output_path(self) -> Path:
        """`output.output_dir` as a Path."""
        return Path(self.output.output_dir).expanduser()
