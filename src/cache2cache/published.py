"""The published (thu-nics/C2C) checkpoint layout: reading it strictly, and writing it.

The layout (docs/method.md §5.8):
    <pair>/config.json                   training recipe; `model.base_model` / `model.teacher_model`
    <pair>/final/projector_{i}.pt        state dict of fuser i (read with weights_only=True)
    <pair>/final/projector_{i}.json      {"class": "C2CProjector", "init_args": {...}}
    <pair>/final/projector_config.json   {"0": {"1": {"<receiver layer>": [[<sharer layer>, i]]}}}

Loading is strict: every key, shape and constructor argument must match, and pickled code never runs.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import typing
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from transformers import PreTrainedModel

from .config import CONFIG_NAME, C2CConfig, FuserConfig, ModelFingerprint, fits_annotation
from .fuser import C2CFuser, FuserStack, load_strict
from .recipe import type_name

logger = logging.getLogger(__name__)

PUBLISHED_MAP = "projector_config.json"
PUBLISHED_CLASS = "C2CProjector"
_SHAPE_ARGS = ("source_dim", "target_dim", "source_num_heads", "target_num_heads")
_PUBLISHED_ARGS = _SHAPE_ARGS + tuple(
    f.name for f in fields(FuserConfig) if f.name not in ("gate_init", "anneal_schedule", "zero_init")
)
# The JSON type of each published constructor argument, to refuse a mistyped projector_{i}.json up front.
_PUBLISHED_ARG_TYPES: dict[str, Any] = {name: int for name in _SHAPE_ARGS} | {
    f.name: typing.get_type_hints(FuserConfig)[f.name] for f in fields(FuserConfig)
}


class PublishablePair(Protocol):
    """What `export_published` reads of a `C2CModel`."""

    @property
    def config(self) -> C2CConfig: ...
    @property
    def fusers(self) -> nn.Module: ...
    @property
    def receiver(self) -> PreTrainedModel: ...


def final_dir(directory: Path) -> Path:
    """The folder holding `projector_config.json`: `directory` itself or its `final/`."""
    for candidate in (directory, directory / "final"):
        if (candidate / PUBLISHED_MAP).is_file():
            return candidate
    raise FileNotFoundError(
        f"{directory} holds no C2C checkpoint: expected {CONFIG_NAME} (cache2cache format) or {PUBLISHED_MAP} "
        "(published layout, in the folder or its final/)"
    )


def pair_ids(final: Path) -> tuple[str | None, str | None]:
    """Receiver and sharer ids from the pair folder's `config.json`, when present."""
    for candidate in (final.parent / "config.json", final / "config.json"):
        if candidate.is_file():
            try:
                model_cfg = json.loads(candidate.read_text()).get("model", {})
            except json.JSONDecodeError:
                logger.warning("ignoring unreadable %s", candidate)
                continue
            teacher = model_cfg.get("teacher_model")
            return model_cfg.get("base_model"), teacher if isinstance(teacher, str) else None
    return None, None


def _decode_arg(value: Any) -> Any:
    """Undo the reference's JSON encoding of constructor arguments (`{"__type__": ..., "value": ...}`)."""
    if isinstance(value, dict) and "__type__" in value:
        return value["value"]
    return value


def read_published(final: Path) -> dict[str, Any]:
    """Read `projector_config.json`, every `projector_{i}.json` and every `projector_{i}.pt`."""
    try:
        mapping = json.loads((final / PUBLISHED_MAP).read_text())
        per_layer = mapping["0"]["1"]
        layer_map = {int(t): (int(pairs[0][0]), int(pairs[0][1])) for t, pairs in per_layer.items()}
    except (json.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as err:
        raise ValueError(
            f"{final / PUBLISHED_MAP} is not a published layer map ({err}); expected {{'0': {{'1': {{layer: [[src, idx]]}}}}}}"
        ) from err
    projectors: dict[int, tuple[dict[str, Any], dict[str, torch.Tensor]]] = {}
    for idx in sorted({i for _, i in layer_map.values()}):
        meta_path, weights_path = final / f"projector_{idx}.json", final / f"projector_{idx}.pt"
        if not meta_path.is_file() or not weights_path.is_file():
            raise FileNotFoundError(
                f"{final} lacks projector_{idx}.json or projector_{idx}.pt, which {PUBLISHED_MAP} refers to"
            )
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(
                f"{meta_path} is not valid JSON ({err}); restore it from the published checkpoint"
            ) from err
        if not isinstance(meta, dict) or meta.get("class") != PUBLISHED_CLASS:
            found = meta.get("class") if isinstance(meta, dict) else meta
            raise ValueError(
                f"{meta_path}: class {found!r} is not supported; only {PUBLISHED_CLASS} (the published fuser) is"
            )
        init_args = meta.get("init_args", {})
        if not isinstance(init_args, dict):
            raise ValueError(f"{meta_path}: init_args must be an object of constructor arguments, got {init_args!r}")
        args = {k: _decode_arg(v) for k, v in init_args.items() if k != "dtype"}
        types = _PUBLISHED_ARG_TYPES.items()
        wrong = [
            f"{k}: got {args[k]!r}, expected {type_name(tp)}"
            for k, tp in types
            if k in args and not fits_annotation(args[k], tp)
        ]
        if wrong:
            raise ValueError(
                f"{meta_path}: bad init_args ({'; '.join(wrong)}); restore it from the published checkpoint"
            )
        state = _load_tensors(weights_path)
        projectors[idx] = (args, state)
    return {"layer_map": layer_map, "projectors": projectors}


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A published `projector_{i}.pt` state dict, read with `weights_only=True`: pickled code never runs."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message is a page long; keep the one fact that matters, what the file tried to load.
        what = re.search(r"GLOBAL (\S+)|Unsupported operand \d+", str(err))
        detail = f" (it asks for {what.group(0).removeprefix('GLOBAL ')})" if what else ""
        raise ValueError(
            f"{path} holds more than tensors (pickled objects or code) and was refused without running it{detail}. "
            "Fix: load only checkpoints you trust, re-saved as plain tensors with torch.save(module.state_dict())"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:  # torch reports a truncated or corrupt zip as RuntimeError
        raise ValueError(
            f"cannot read {path}: it is truncated or corrupt ({str(err).split('. ')[0]}); download it again"
        ) from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"{path} does not hold a state dict of tensors (got {type(state).__name__}); download it again"
        )
    return state


def published_fusers(
    published: dict[str, Any], receiver: PreTrainedModel, sharer: PreTrainedModel
) -> tuple[C2CConfig, FuserStack]:
    """Build strict fusers from the published files and check them against the models' shapes."""
    r, s = ModelFingerprint.from_model(receiver), ModelFingerprint.from_model(sharer)
    layer_map = {t: src for t, (src, _) in published["layer_map"].items()}
    fuser_cfg: FuserConfig | None = None
    fusers: dict[int, C2CFuser] = {}
    built: dict[int, C2CFuser] = {}
    for t, (_, idx) in sorted(published["layer_map"].items()):
        args, state = published["projectors"][idx]
        expect = {
            "source_dim": s.head_dim,
            "source_num_heads": s.num_key_value_heads,
            "target_dim": r.head_dim,
            "target_num_heads": r.num_key_value_heads,
        }
        wrong = [f"{k}: checkpoint {args.get(k)} != model {v}" for k, v in expect.items() if args.get(k) != v]
        if wrong:
            raise ValueError(
                f"published projector_{idx} was trained for other KV shapes than receiver {r.name_or_path!r} / sharer {s.name_or_path!r}: "
                + "; ".join(wrong)
                + ". Fix: pass the receiver and sharer this checkpoint was trained for."
            )
        unknown = set(args) - set(_PUBLISHED_ARGS) - {"zero_init"}
        if unknown:
            raise ValueError(
                f"published projector_{idx}.json has init_args this fuser does not know: {sorted(unknown)}"
            )
        if idx not in built:
            built[idx] = C2CFuser(**args)
            load_strict(built[idx], state, f"projector_{idx}.pt")
        fusers[t] = built[idx]
        if fuser_cfg is None:
            fuser_cfg = FuserConfig(**{k: v for k, v in args.items() if k in {f.name for f in fields(FuserConfig)}})
    config = C2CConfig(r, s, fuser_cfg or FuserConfig(), layer_map, "custom")
    config.validate()
    return config, FuserStack(layer_map, fusers)


def export_published(model: PublishablePair, directory: str | Path) -> Path:
    """Write `model`'s fusers in the published layout (`config.json` + `final/projector_*`).

    Projector index i is the i-th mapped receiver layer (the receiver layer itself when every layer
    is mapped, as in the published checkpoints).

    Returns:
        The pair folder.
    """
    cfg, stack = model.config, model.fusers
    if cfg.more_sharers or not isinstance(stack, FuserStack):
        raise ValueError(
            f"export_published writes one sharer's fusers, but this model has {len(cfg.sharers)} sharers; "
            "save it with save_pretrained (our format records every sharer)"
        )
    directory = Path(directory)
    final = directory / "final"
    final.mkdir(parents=True, exist_ok=True)
    init_args = {k: v for k, v in cfg.fuser_kwargs().items() if k in _PUBLISHED_ARGS}
    dtype_name = str(model.receiver.dtype).removeprefix("torch.")
    init_args["dtype"] = {"__type__": "torch.dtype", "value": dtype_name}
    mapping: dict[str, list[list[int]]] = {}
    for idx, (t, s) in enumerate(cfg.layer_map.items()):
        fuser = stack.fuser(t)
        torch.save({k: v.detach().cpu().clone() for k, v in fuser.state_dict().items()}, final / f"projector_{idx}.pt")
        (final / f"projector_{idx}.json").write_text(
            json.dumps({"class": PUBLISHED_CLASS, "init_args": init_args}, indent=2)
        )
        mapping[str(t)] = [[s, idx]]
    (final / PUBLISHED_MAP).write_text(json.dumps({"0": {"1": mapping}}))
    recipe = {
        "model": {
            "base_model": cfg.receiver.name_or_path,
            "teacher_model": cfg.sharer.name_or_path,
            "projector": {
                "type": PUBLISHED_CLASS,
                "params": {k: v for k, v in asdict(cfg.fuser).items() if k in _PUBLISHED_ARGS},
            },
            "mapping": "last_aligned" if cfg.layer_map_name == "terminal" else "k_nearest",
        }
    }
    (directory / "config.json").write_text(json.dumps(recipe, indent=2))
    return directory
