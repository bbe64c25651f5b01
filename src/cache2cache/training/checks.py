"""The value and file checks of a training recipe (`check_train_config`), each problem one message.

Values: ranges, settings that exclude each other, the anneal length given one way. Files (with
`check_files`): data files and fetched assets, model folders and their vocabularies, and an
output_dir that is a finished run or holds a checkpoint made for other models.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import CONFIG_NAME
from ..output_dir import output_dir_problem
from .schema import DataSource, ModelOptions, TrainConfig

_DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".arrow")


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


EVALUATION_BENCHMARKS = ("arc_easy", "arc_challenge", "openbookqa", "mmlu", "mmlu_redux", "ceval")
"""Benchmarks this project evaluates on: their test and validation items never train a fuser."""


def is_evaluation_data(source: DataSource) -> bool:
    """Whether an "mc" source reads test or validation items of an evaluated benchmark (any split but train)."""
    if source.type != "mc" or source.path is None:
        return False
    name = source.path.removeprefix("hub:").removeprefix("oe_eval:").split("/")[0]
    return name in EVALUATION_BENCHMARKS and source.split != "train"


def _source_problems(source: DataSource, where: str) -> list[str]:
    problems = []
    if is_evaluation_data(source):
        problems.append(
            f"{where}.path: {source.path!r} is an evaluation benchmark; training on its test or validation items "
            "would leak them into the results. Use other tasks (bigbench:<task>, oe_eval:sciq/rc_0shot, ...), "
            "or a train split (split: train, hub tasks)"
        )
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
    if source.prompt_style != "paper" and source.type != "mc":
        problems.append(f"{where}.prompt_style: only 'mc' sources have a prompt style; remove it or set type: mc")
    if source.sharer_context and source.type != "mc":
        problems.append(
            f"{where}.sharer_context: only 'mc' sources have item contexts; remove it, or give chat records "
            "a 'sharer_messages' list instead"
        )
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
                    f"{where}.path: {path!r} needs BIG-bench, which is not fetched; set data_dir to a bigbench-1.0.0.tar.gz "
                    "you have (`c2c fetch bigbench` fails since the release left PyPI), or use oe_eval:<task> sources"
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
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False
