"""`TrainConfig`: a training recipe, as a tree of dataclasses loaded from YAML.

A recipe has five sections (every key optional except the models and the training data):

    kind: train
    model:    receiver, sharer, tokenizers, how to load them (init, dtype), layer map, fuser sizes
    data:     train / eval sources (chat files, multiple-choice tasks, ShareGPT), max_length
    training: seed, batch, optimizer, schedule, precision, gate annealing, device, resume_from
    output:   output_dir, save/eval/log intervals, reporting

`load_train_config(path, overrides)` reads a YAML file, applies `--key value` overrides (a dotted path
such as `training.learning_rate`, or a leaf name that is unique in the schema such as `learning_rate`)
and checks the result. Every problem is collected, then raised together as one `ConfigError`:
unknown keys (with a "did you mean"), wrong types, bad values, missing data files or model folders,
and models that do not fit each other or the checkpoint being resumed. `validate_recipe` is the same
check for `c2c validate`; `check_files=False` keeps only what can be checked without the files.

Relative paths resolve against the current directory. YAML 1.1 reads `1e-4` as a string; float fields
accept such strings.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..config import CONFIG_NAME, FuserConfig
from ..output_dir import output_dir_problem

RECIPE_NAME = "recipe.yaml"
"""The resolved recipe, copied into every run's output_dir."""

REPORTERS = ("tensorboard", "wandb")
_DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".arrow")


class ConfigError(ValueError):
    """A recipe has problems; `problems` lists each one (field, value, expectation and fix)."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        if len(problems) == 1:  # one problem, one line
            super().__init__(f"{source}: {problems[0]}")
        else:
            super().__init__(f"{source}: {len(problems)} problems:\n  - " + "\n  - ".join(problems))


# ------------------------------------------------------------------------------------------ schema


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
    layer_map: Literal["terminal", "depth"] = "terminal"
    alignment_strategy: Literal["longest", "first"] = "longest"
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
    """

    type: Literal["chat", "mc", "sharegpt"] = "chat"
    path: str | None = None
    split: str | None = None
    limit: int | None = None
    data_dir: str | None = None


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


# ------------------------------------------------------------------------------------- overrides


def override_paths() -> dict[str, str]:
    """Every command-line override name -> the dotted recipe path it sets.

    Each scalar or list field is reachable by its dotted path (`training.learning_rate`), and by its
    leaf name alone when that name is unique in the schema (`learning_rate`). Lists of sources are
    set whole, as YAML (`--data.train '[{type: chat, path: a.jsonl}]'`).
    """
    leaves = list(_leaf_paths(TrainConfig, ""))
    by_name: dict[str, list[str]] = {}
    for path in leaves:
        by_name.setdefault(path.rsplit(".", 1)[-1], []).append(path)
    names = {path: path for path in leaves}
    names.update({leaf: paths[0] for leaf, paths in by_name.items() if len(paths) == 1 and leaf not in names})
    return names


def _leaf_paths(cls: type, prefix: str) -> typing.Iterator[str]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "kind":
            continue
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _leaf_paths(hints[f.name], path + ".")
        else:
            yield path


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any]) -> list[str]:
    """Set `overrides` (dotted path or unique leaf name -> value) in the raw recipe dict, in place.

    String values are parsed as YAML (`null`, `true`, `3`, `[a, b]`, `{k: v}`), so command-line text
    and Python values both work. Returns problems (an unknown override name); types are checked later.
    """
    problems = []
    known = override_paths()
    for name, value in overrides.items():
        path = known.get(name)
        if path is None:
            close = difflib.get_close_matches(name, list(known), n=3)
            hint = f"; did you mean {', '.join('--' + c for c in close)}?" if close else ""
            problems.append(f"override --{name}: no such recipe field{hint} (see `c2c train --help`)")
            continue
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value) if value.strip() else value
            except yaml.YAMLError:
                pass  # keep the text; the type check reports it if a string is wrong here
        node = raw
        *parents, leaf = path.split(".")
        for key in parents:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[leaf] = value
    return problems


# ----------------------------------------------------------------------------------- typed parsing


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " or null"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _convert(tp: Any, value: Any, path: str, problems: list[str]) -> Any:
    """`value` checked against the annotation `tp`; on a mismatch a problem is recorded and
    `dataclasses.MISSING` returned (so the field keeps its default)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], value, path, problems)
    elif origin is Literal:
        if value in typing.get_args(tp):
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in typing.get_args(tp)], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        problems.append(f"{path}: got {_describe(value)}, expected {_type_name(tp)}{hint}")
        return dataclasses.MISSING
    elif origin is list:
        if not isinstance(value, list):
            problems.append(f"{path}: got {_describe(value)}, expected {_type_name(tp)}")
            return dataclasses.MISSING
        (item_type,) = typing.get_args(tp)
        items = [_convert(item_type, v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
        return [v for v in items if v is not dataclasses.MISSING]
    elif dataclasses.is_dataclass(tp):
        return _parse_dataclass(tp, value, path, problems)
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    problems.append(f"{path}: got {_describe(value)}, expected {_type_name(tp)}")
    return dataclasses.MISSING


def _parse_dataclass(cls: type, data: Any, path: str, problems: list[str]) -> Any:
    """Build `cls` from a mapping, recording unknown keys and type errors; bad fields keep defaults."""
    where = path or "the recipe"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        problems.append(
            f"{where}: got {_describe(data)}, expected a mapping of {', '.join(f.name for f in dataclasses.fields(cls))}"
        )
        return cls()
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"{key_path}: unknown key; {hint}valid keys here: {', '.join(names)}")
            continue
        converted = _convert(hints[key], value, key_path, problems)
        if converted is not dataclasses.MISSING:
            values[key] = converted
    return cls(**values)


def parse_train_config(raw: Mapping[str, Any]) -> tuple[TrainConfig, list[str]]:
    """Build a `TrainConfig` from a raw recipe dict.

    Returns:
        The config (fields with problems keep their defaults) and the structural problems (unknown
        keys, wrong types), without the value and file checks of `check_train_config`.
    """
    problems: list[str] = []
    config = _parse_dataclass(TrainConfig, raw, "", problems)
    return config, problems


# ------------------------------------------------------------------------------------------ checks


def check_train_config(
    config: TrainConfig,
    raw: Mapping[str, Any] | None = None,
    *,
    check_files: bool = True,
    check_models: bool = True,
) -> list[str]:
    """Every value problem of a parsed recipe, and (with `check_files`) every file problem.

    Args:
        config: The parsed recipe.
        raw: The raw dict it came from, to tell keys given explicitly from defaults.
        check_files: Check that data files, model folders and fetched assets exist, that the models
            fit each other (vocabularies) and the checkpoint being resumed, and that output_dir is
            not a finished run.
        check_models: Check the `model` and `data.train` sections (False when the caller provides
            the models and conversations itself, as `train_fusers` does).
    """
    problems: list[str] = []
    m, d, t, o = config.model, config.data, config.training, config.output
    raw_fuser = ((raw or {}).get("model") or {}).get("fuser") or {}

    if check_models:
        for role in ("receiver", "sharer"):
            if not getattr(m, role):
                problems.append(
                    f"model.{role}: missing; give a hub id, a local folder, a .gguf file or a fetched alias"
                )
        if not d.train:
            problems.append(
                "data.train: no training sources; add at least one, e.g. {type: chat, path: data/train.jsonl}"
            )
    problems += m.fuser.problems("model.fuser.")
    if m.more_sharers and m.init != "pretrained":
        problems.append(
            f"model.more_sharers: given with init {m.init!r}; further sharers load pretrained weights only. "
            "Fix: set model.init: pretrained, or drop model.more_sharers"
        )
    for i, source in enumerate(d.train):
        problems += _source_problems(source, f"data.train[{i}]")
    for i, source in enumerate(d.eval):
        problems += _source_problems(source, f"data.eval[{i}]")
    if not 0.0 <= d.eval_ratio < 1.0:
        problems.append(
            f"data.eval_ratio: got {d.eval_ratio}, expected 0 <= ratio < 1 (a fraction of the training conversations)"
        )
    if d.eval and d.eval_ratio:
        problems.append("data.eval_ratio: set together with data.eval; give explicit eval sources or a ratio, not both")
    if d.max_length < 2:
        problems.append(
            f"data.max_length: got {d.max_length}, expected at least 2 tokens (one prompt token and one response token)"
        )

    positive = {
        "training.epochs": t.epochs,
        "training.per_device_batch_size": t.per_device_batch_size,
        "training.gradient_accumulation_steps": t.gradient_accumulation_steps,
        "output.save_steps": o.save_steps,
        "output.log_steps": o.log_steps,
    }
    if t.max_steps is not None:
        positive["training.max_steps"] = t.max_steps
    if t.num_threads is not None:
        positive["training.num_threads"] = t.num_threads
    if o.keep_last is not None:
        positive["output.keep_last"] = o.keep_last
    problems += [f"{name}: got {value}, expected a positive integer" for name, value in positive.items() if value < 1]
    if o.eval_steps < 0:
        problems.append(f"output.eval_steps: got {o.eval_steps}, expected >= 0 (0: evaluate only at the end)")
    if not t.learning_rate > 0:
        problems.append(f"training.learning_rate: got {t.learning_rate}, expected > 0 (published: 1e-4)")
    if not t.gate_lr_multiplier > 0:
        problems.append(
            f"training.gate_lr_multiplier: got {t.gate_lr_multiplier}, expected > 0 (1 = same lr as the rest)"
        )
    if t.weight_decay < 0:
        problems.append(f"training.weight_decay: got {t.weight_decay}, expected >= 0 (published: 0.01)")
    if not 0.0 <= t.warmup_ratio < 1.0:
        problems.append(f"training.warmup_ratio: got {t.warmup_ratio}, expected 0 <= ratio < 1 (published: 0.1)")
    if t.max_grad_norm < 0:
        problems.append(f"training.max_grad_norm: got {t.max_grad_norm}, expected >= 0 (0 disables clipping)")
    if t.anneal_ratio is not None:
        if not 0.0 < t.anneal_ratio <= 1.0:
            problems.append(
                f"training.anneal_ratio: got {t.anneal_ratio}, expected 0 < ratio <= 1 (1: anneal over the whole run)"
            )
        if "anneal_steps" in raw_fuser:
            problems.append(
                "training.anneal_ratio: set together with model.fuser.anneal_steps; give the anneal length one way: "
                "drop anneal_steps (to follow the run length) or anneal_ratio (for a fixed step count)"
            )
    device = t.device
    if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        problems.append(f"training.device: got {device!r}, expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if t.resume_from is not None and not t.resume_from:
        problems.append("training.resume_from: empty; give 'latest', a checkpoint folder, or null")
    if not o.output_dir:
        problems.append("output.output_dir: empty; give the run folder, e.g. runs/my-pair")
    for reporter in dict.fromkeys(o.report_to):
        if check_files and not _importable("torch.utils.tensorboard" if reporter == "tensorboard" else "wandb"):
            package = "tensorboard" if reporter == "tensorboard" else "wandb"
            problems.append(
                f"output.report_to: {reporter!r} requested but the {package} package is not installed; pip install {package}, or remove it"
            )

    if check_files:
        for i, source in enumerate(d.train):
            problems += _source_file_problems(source, f"data.train[{i}]")
        for i, source in enumerate(d.eval):
            problems += _source_file_problems(source, f"data.eval[{i}]")
        if check_models:
            problems += _model_file_problems(m)
        problems += _output_problems(config)
    return problems


def _source_problems(source: DataSource, where: str) -> list[str]:
    problems = []
    if source.path is None and source.type != "sharegpt":
        example = (
            "a task name such as bigbench:strategyqa, or a .jsonl file"
            if source.type == "mc"
            else "a file, folder or hub dataset id"
        )
        problems.append(f"{where}.path: missing; a {source.type!r} source needs a path ({example})")
    if source.limit is not None and source.limit < 1:
        problems.append(
            f"{where}.limit: got {source.limit}, expected a positive number of conversations (or null for all)"
        )
    if source.data_dir is not None and source.type != "mc":
        problems.append(f"{where}.data_dir: only 'mc' sources read data_dir; remove it or set type: mc")
    if source.split is not None and source.type == "sharegpt":
        problems.append(f"{where}.split: a sharegpt file has no splits; remove it")
    return problems


def looks_local(path: str) -> bool:
    """Whether a data path names a local file or folder rather than a hub dataset id."""
    return (
        path.endswith(_DATA_SUFFIXES)
        or path.startswith(("/", "./", "../", "~"))
        or path.count("/") > 1
        or Path(path).expanduser().exists()
    )


def _source_file_problems(source: DataSource, where: str) -> list[str]:
    from .. import assets

    if source.type == "sharegpt" and source.path is None:
        if not assets.is_fetched("sharegpt"):
            return [
                f"{where}.path: not given and the sharegpt asset is not fetched; run `c2c fetch sharegpt` or give the JSON file's path"
            ]
        return []
    if source.path is None:
        return []
    path = source.path
    if source.type == "mc":
        if path.startswith("bigbench:"):
            place = Path(source.data_dir).expanduser() if source.data_dir else None
            if place is not None and not place.exists():
                return [
                    f"{where}.data_dir: {source.data_dir!r} does not exist; point it at the BIG-bench sdist (or the folder holding it)"
                ]
            if place is None and not assets.is_fetched("bigbench"):
                return [
                    f"{where}.path: {path!r} needs BIG-bench, which is not fetched; run `c2c fetch bigbench` or set data_dir"
                ]
            return []
        if not path.endswith((".jsonl", ".jsonl.gz")):
            return []  # a registered task name: load_task knows where its data lives
    if looks_local(path) and not Path(path).expanduser().exists():
        return [
            f"{where}.path: {path!r} does not exist (relative paths resolve against {Path.cwd()}); fix the path or fetch the data"
        ]
    return []


def _model_file_problems(m: ModelOptions) -> list[str]:
    """Missing model folders, un-fetched aliases and vocabulary mismatches between models and tokenizers."""
    from .. import assets

    problems = []
    configs: dict[str, dict[str, Any] | None] = {}
    for role in ("receiver", "sharer"):
        name = getattr(m, role)
        if not name:
            continue
        folder = _local_model_folder(name)
        if m.init == "random":
            if folder is None or not (folder / "config.json").is_file():
                problems.append(
                    f"model.{role}: init 'random' builds the model from a config.json, but {name!r} is not a folder holding one"
                )
                continue
        elif folder is None:
            if name in assets.ASSETS and not assets.is_fetched(name):
                problems.append(f"model.{role}: {name!r} is not fetched; run `c2c fetch {name}`")
            elif name.startswith(("/", "./", "../", "~")) or name.endswith(".gguf"):
                problems.append(f"model.{role}: {name!r} does not exist (relative paths resolve against {Path.cwd()})")
            continue
        config_file = folder / "config.json"
        configs[role] = json.loads(config_file.read_text()) if config_file.is_file() else None
    for role in ("receiver", "sharer"):
        name = getattr(m, f"{role}_tokenizer")
        if name and _local_model_folder(name) is None and name.startswith(("/", "./", "../", "~")):
            problems.append(
                f"model.{role}_tokenizer: {name!r} does not exist (relative paths resolve against {Path.cwd()})"
            )
    if problems or len(configs) < 2 or None in configs.values():
        return problems
    problems += _vocab_problems(m, configs)  # type: ignore[arg-type]
    return problems


def _local_model_folder(name: str) -> Path | None:
    """The folder of a model named by path or fetched alias, if it is on this machine."""
    from .. import assets

    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent
    if name in assets.ASSETS and assets.is_fetched(name):
        return assets.model_path(name)
    return None


def _vocab_problems(m: ModelOptions, configs: dict[str, dict[str, Any]]) -> list[str]:
    """A tokenizer with more tokens than its model's embedding, or a sharer that would be fed
    receiver ids it cannot embed."""
    from ..loading import load_tokenizer

    def vocab(cfg: dict[str, Any]) -> int:
        return int((cfg.get("text_config") or cfg).get("vocab_size", 0))

    problems = []
    tokenizers = {}
    for role in ("receiver", "sharer"):
        where = getattr(m, f"{role}_tokenizer") or getattr(m, role)
        try:
            tokenizers[role] = load_tokenizer(where)
        except (OSError, ValueError) as err:
            if getattr(m, f"{role}_tokenizer") is None and role == "sharer":
                continue  # no tokenizer with the sharer: it shares the receiver's
            problems.append(f"model.{role}_tokenizer: cannot load a tokenizer from {where!r}: {err}")
    for role, tok in tokenizers.items():
        if len(tok) > vocab(configs[role]):
            problems.append(
                f"model.{role}_tokenizer: {len(tok)} tokens but the {role} {getattr(m, role)!r} embeds only {vocab(configs[role])}; "
                f"the tokenizer belongs to another model. Fix: point model.{role}_tokenizer at the {role}'s own tokenizer"
            )
    receiver_tok, sharer_tok = tokenizers.get("receiver"), tokenizers.get("sharer")
    shared = receiver_tok is not None and (sharer_tok is None or receiver_tok.get_vocab() == sharer_tok.get_vocab())
    if shared and receiver_tok is not None and len(receiver_tok) > vocab(configs["sharer"]):
        problems.append(
            f"model.sharer: {m.sharer!r} embeds {vocab(configs['sharer'])} tokens but would read the receiver's token ids "
            f"(up to {len(receiver_tok)}), since no different sharer tokenizer is given. Fix: set model.sharer_tokenizer"
        )
    return problems


def _output_problems(config: TrainConfig) -> list[str]:
    """A fresh run over finished checkpoints, or a resume checkpoint made for other models."""
    from .state import find_latest_checkpoint, read_checkpoint_pair

    out = config.output_path
    unusable = output_dir_problem(out)
    if unusable:
        return [f"output.output_dir: {unusable}; choose another output_dir"]
    resume = config.training.resume_from
    if resume is None:
        if not config.output.overwrite and find_latest_checkpoint(out) is not None:
            return [
                f"output.output_dir: {str(out)!r} already holds checkpoints; resume with --resume "
                "(training.resume_from: latest), set output.overwrite: true, or choose another output_dir"
            ]
        return []
    checkpoint = find_latest_checkpoint(out) if resume == "latest" else Path(resume).expanduser()
    if checkpoint is None:
        return []
    if not (checkpoint / CONFIG_NAME).is_file():
        return [
            f"training.resume_from: {str(checkpoint)!r} is not a training checkpoint (no {CONFIG_NAME}); give a checkpoint-<step> folder or 'latest'"
        ]
    recorded = read_checkpoint_pair(checkpoint)
    problems = []
    for role in ("receiver", "sharer"):
        wanted = getattr(config.model, role)
        saved = recorded.get(role)
        if saved and wanted and Path(saved).name != Path(wanted).name and saved != wanted:
            problems.append(
                f"model.{role}: {wanted!r} does not match the {role} of the checkpoint being resumed ({str(checkpoint)!r} "
                f"was trained with {saved!r}). Fix: resume with the same models, or start a fresh run in another output_dir"
            )
    return problems


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


# ------------------------------------------------------------------------------------------ loading


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The raw dict of a YAML recipe file.

    Raises:
        ConfigError: the file is missing, is not YAML, or is not a mapping.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(str(path), ["is a folder, not a recipe; give the .yaml file (see recipes/)"])
    if not path.is_file():
        raise ConfigError(str(path), [f"recipe file not found (relative paths resolve against {Path.cwd()})"])
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(
            str(path), [f"not valid YAML{where}: {what}; fix the file there (indentation, brackets, quotes)"]
        ) from err
    except UnicodeDecodeError as err:
        raise ConfigError(
            str(path), [f"not UTF-8 text (byte {err.start}: {err.reason}); save the recipe as UTF-8"]
        ) from err
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(str(path), [f"the top level must be a mapping of sections, got {type(raw).__name__}"])
    return raw


def load_train_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    check_files: bool = True,
) -> TrainConfig:
    """Read a training recipe, apply overrides and check everything.

    Args:
        path: A YAML recipe; None starts from the defaults (then overrides must name the models
            and data).
        overrides: Dotted paths or unique leaf names -> values (strings are parsed as YAML).
        check_files: Also check files, fetched assets, models and output_dir (see `check_train_config`).

    Returns:
        The validated `TrainConfig`.

    Raises:
        ConfigError: listing every problem found.

    Example:
        >>> cfg = load_train_config("recipes/tiny.yaml", {"max_steps": 5})  # doctest: +SKIP
    """
    source = str(path) if path is not None else "<overrides>"
    raw = read_recipe(path) if path is not None else {}
    problems = apply_overrides(raw, overrides or {})
    config, structural = parse_train_config(raw)
    problems += structural
    problems += check_train_config(config, raw, check_files=check_files)
    if problems:
        raise ConfigError(source, problems)
    return config


def validate_recipe(raw: Mapping[str, Any], *, source: str, check_files: bool = True) -> list[str]:
    """Every problem of a raw training recipe (the `train` validator of `c2c validate`).

    Args:
        raw: The recipe as read from YAML.
        source: Its name, for messages.
        check_files: Also check files, assets, models and output_dir.

    Returns:
        The problems; empty when the recipe is valid.
    """
    config, problems = parse_train_config(raw)
    return problems + check_train_config(config, raw, check_files=check_files)
