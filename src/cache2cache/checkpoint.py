"""Fuser checkpoints: our format, and import/export of the published (thu-nics/C2C) layout.

Our format, written by `C2CModel.save_pretrained(dir)`: exactly two files,
    c2c_config.json      C2CConfig: format version, pair fingerprints, fuser hparams, layer map
                         (with several sharers also `more_sharers` and `sharer_mode`)
    fuser.safetensors    the FuserStack state dict (`fusers.{receiver_layer}.{published key}`), or
                         with several sharers the MultiFuserStack's (`stacks.{i}.fusers.{layer}.*`)

The published layout (docs/method.md §5.8), read and written here:
    <pair>/config.json                   training recipe; `model.base_model` / `model.teacher_model`
    <pair>/final/projector_{i}.pt        state dict of fuser i (read with weights_only=True)
    <pair>/final/projector_{i}.json      {"class": "C2CProjector", "init_args": {...}}
    <pair>/final/projector_config.json   {"0": {"1": {"<receiver layer>": [[<sharer layer>, i]]}}}

Loading is strict: every key and shape must match, and pickled code never runs.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import tempfile
import typing
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .config import CONFIG_NAME, C2CConfig, FuserConfig, ModelFingerprint, fits_annotation
from .fuser import C2CFuser, FuserStack
from .model import C2CModel
from .output_dir import output_dir_problem
from .recipe import type_name
from .sharers import MultiFuserStack, fusers_for

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "fuser.safetensors"
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


# --------------------------------------------------------------------------------------- our format


def save_c2c(model: C2CModel, directory: str | Path) -> Path:
    """Write `c2c_config.json` and `fuser.safetensors` into `directory`.

    Each file is written to a temporary name in the same folder and renamed into place, so an
    interrupted save never leaves a half-written checkpoint behind.

    Returns:
        The directory.
    """
    directory = Path(directory)
    unusable = output_dir_problem(directory)
    if unusable:
        raise ValueError(f"cannot save the checkpoint: {unusable}; give a folder path that can be written")
    directory.mkdir(parents=True, exist_ok=True)
    config_text = json.dumps(model.config.to_dict(), indent=2) + "\n"
    with tempfile.TemporaryDirectory(dir=directory, prefix=".saving-") as tmp:
        save_model(
            model.fusers,
            os.path.join(tmp, WEIGHTS_NAME),
            metadata={"format": "pt", "c2c_format_version": str(model.config.format_version)},
        )
        Path(tmp, CONFIG_NAME).write_text(config_text)
        os.replace(os.path.join(tmp, WEIGHTS_NAME), directory / WEIGHTS_NAME)
        os.replace(os.path.join(tmp, CONFIG_NAME), directory / CONFIG_NAME)
    return directory


def load_fuser_weights(fusers: FuserStack | MultiFuserStack, path: str | Path) -> None:
    """Load `fuser.safetensors` into `fusers`, failing on any missing, unexpected or mis-shaped tensor."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(
            f"cannot read fuser weights {path}: {err}. The file is missing or corrupt; re-save the checkpoint."
        ) from err
    _load_strict(fusers, state, str(path))


def _load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """`load_state_dict(strict=True)` with one error listing every missing, unexpected or mis-shaped key."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: file {tuple(state[k].shape)} != model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            parts.append(
                f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}"
            )
        if wrong:
            parts.append(f"wrong shapes ({len(wrong)}): {', '.join(wrong[:8])}")
        raise ValueError(
            f"{source} does not match the fuser architecture: {'; '.join(parts)}. "
            "Fix: load it for the pair and fuser sizes it was trained with (see its config)."
        )
    module.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------------------- loading


def load_c2c(
    path_or_hub_id: str | Path,
    *,
    receiver: PreTrainedModel | str | None = None,
    sharer: PreTrainedModel | str | Sequence[PreTrainedModel | str | None] | None = None,
    receiver_tokenizer: PreTrainedTokenizerBase | str | None = None,
    sharer_tokenizer: PreTrainedTokenizerBase | str | Sequence[PreTrainedTokenizerBase | str | None] | None = None,
    subfolder: str | None = None,
    revision: str | None = None,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
) -> C2CModel:
    """Load a C2C pair: fusers from a checkpoint, receiver and sharer as given or as recorded.

    Args:
        path_or_hub_id: A folder saved by `save_pretrained`, a published-layout folder (the pair
            folder or its `final/`), or a hub repo id (with `subfolder` for multi-pair repos such as
            `nics-efc/C2C_Fuser`, subfolder `qwen3_0.6b+qwen2.5_0.5b_Fuser`).
        receiver: A loaded model, or a hub id / local folder / GGUF / alias to load; default: the
            one the checkpoint records.
        sharer: Same, for the sharer; for a checkpoint with several sharers, a list with one entry
            per recorded sharer, in order (None entries load the recorded one).
        receiver_tokenizer: A tokenizer or where to load it; default: next to the receiver when the
            receiver is given by name.
        sharer_tokenizer: Same, for the sharer (a list for several sharers).
        subfolder: Folder inside `path_or_hub_id`.
        revision: Hub revision.
        dtype: dtype for models loaded here (default: `loading.auto_dtype` of the device).
        device: Device for models loaded here and for the fusers (default: the receiver's).

    Returns:
        The `C2CModel`, fusers cast to the receiver's dtype and in eval mode.
    """
    directory = _resolve_dir(path_or_hub_id, subfolder, revision)
    if (directory / CONFIG_NAME).is_file():
        config = C2CConfig.load(directory)
        recorded = [config.receiver.name_or_path, *(link.sharer.name_or_path for link in config.sharers)]
        published = None
    else:
        final = _published_final_dir(directory)
        published = _read_published(final)
        recorded = list(_published_pair_ids(final))
    receiver, receiver_tokenizer = _resolve_model("receiver", receiver, receiver_tokenizer, recorded[0], dtype, device)
    sharers, sharer_tokenizers = [], []
    for i, (given, tokenizer) in enumerate(
        zip(
            _per_sharer("sharer", sharer, recorded[1:]), _per_sharer("sharer_tokenizer", sharer_tokenizer, recorded[1:])
        )
    ):
        role = f"sharer {i + 1}" if len(recorded) > 2 else "sharer"
        model_i, tokenizer_i = _resolve_model(role, given, tokenizer, recorded[1 + i], dtype, device)
        sharers.append(model_i)
        sharer_tokenizers.append(tokenizer_i)
    if published is None:
        fusers = _build_empty_fusers(config)
        load_fuser_weights(fusers, directory / WEIGHTS_NAME)
    else:
        config, fusers = _published_to_fusers(published, receiver, sharers[0])
    model = C2CModel(receiver, sharers, fusers, config, receiver_tokenizer, sharer_tokenizers)
    model.check_pair()
    model.fusers.to(device=model.device, dtype=model.receiver.dtype)
    return model.eval()


def _per_sharer(name: str, value: Any, recorded: list[str | None]) -> list[Any]:
    """`value` as one entry per recorded sharer: a list is checked against their count, anything else
    (a single model, name, tokenizer or None) stands for a checkpoint with one sharer."""
    if not isinstance(value, list | tuple):
        if value is not None and len(recorded) > 1:
            raise ValueError(
                f"this checkpoint has {len(recorded)} sharers ({', '.join(map(repr, recorded))}) but {name}= gives one; "
                f"pass a list of {len(recorded)} (None entries load the recorded sharer), or leave {name}= unset"
            )
        return [value] * len(recorded)
    if len(value) != len(recorded):
        raise ValueError(
            f"mismatched sharer count: {name}= lists {len(value)} but the checkpoint records {len(recorded)} "
            f"({', '.join(map(repr, recorded))}); give one per recorded sharer, in order"
        )
    return list(value)


def _build_empty_fusers(config: C2CConfig) -> FuserStack | MultiFuserStack:
    """Fusers of the right shapes, uninitialised (their weights are about to be overwritten)."""
    with torch.device("meta"):
        stack = fusers_for(config)
    return stack.to_empty(device="cpu")


def _resolve_dir(path_or_hub_id: str | Path, subfolder: str | None, revision: str | None) -> Path:
    local = Path(path_or_hub_id).expanduser()
    if local.exists():
        directory = local / subfolder if subfolder else local
        if not directory.is_dir():
            raise FileNotFoundError(f"{directory} is not a folder; check the path and subfolder")
        return directory
    repo_id = str(path_or_hub_id)
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise FileNotFoundError(f"{repo_id!r} is neither an existing folder nor a hub repo id (owner/name)")
    from huggingface_hub import snapshot_download

    patterns = [f"{subfolder.rstrip('/')}/*", f"{subfolder.rstrip('/')}/**"] if subfolder else None
    try:
        root = Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))
    except Exception as err:  # the hub raises many types (offline, 404, auth); all mean "could not fetch"
        raise FileNotFoundError(
            f"could not download {repo_id!r}{f' (subfolder {subfolder!r})' if subfolder else ''} from the Hugging Face hub: {err}. "
            "Check the id and your connection, or download it elsewhere and pass the local folder."
        ) from err
    return root / subfolder if subfolder else root


def _resolve_model(
    role: str,
    model: PreTrainedModel | str | None,
    tokenizer: PreTrainedTokenizerBase | str | None,
    recorded: str | None,
    dtype: torch.dtype | str | None,
    device: str | torch.device | None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase | None]:
    """Load `model` (and its tokenizer) when given by name, falling back to the recorded name."""
    if model is not None and not isinstance(model, str | PreTrainedModel):
        raise TypeError(
            f"{role}= must be a loaded PreTrainedModel or a hub id / path string, got {type(model).__name__}"
        )
    name = model if isinstance(model, str) else (recorded if model is None else None)
    if model is None and not recorded:
        raise ValueError(f"the checkpoint does not record its {role}; pass {role}= (a model or a hub id / path)")
    if name is not None:
        from .loading import load_model

        logger.info("loading %s %s", role, name)
        model = load_model(name, dtype=dtype, device=device or "cpu")
        if tokenizer is None:
            tokenizer = name
    if isinstance(tokenizer, str):
        from .loading import load_tokenizer

        tokenizer = load_tokenizer(tokenizer)
    return model, tokenizer  # type: ignore[return-value]


# --------------------------------------------------------------------------------------- published


def _published_final_dir(directory: Path) -> Path:
    for candidate in (directory, directory / "final"):
        if (candidate / PUBLISHED_MAP).is_file():
            return candidate
    raise FileNotFoundError(
        f"{directory} holds no C2C checkpoint: expected {CONFIG_NAME} (cache2cache format) or {PUBLISHED_MAP} "
        "(published layout, in the folder or its final/)"
    )


def _published_pair_ids(final: Path) -> tuple[str | None, str | None]:
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


def _read_published(final: Path) -> dict[str, Any]:
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


def _published_to_fusers(
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
            _load_strict(built[idx], state, f"projector_{idx}.pt")
        fusers[t] = built[idx]
        if fuser_cfg is None:
            fuser_cfg = FuserConfig(**{k: v for k, v in args.items() if k in {f.name for f in fields(FuserConfig)}})
    config = C2CConfig(r, s, fuser_cfg or FuserConfig(), layer_map, "custom")
    config.validate()
    return config, FuserStack(layer_map, fusers)


def export_published(model: C2CModel, directory: str | Path) -> Path:
    """Write `model`'s fusers in the published layout (`config.json` + `final/projector_*`).

    Projector index i is the i-th mapped receiver layer (the receiver layer itself when every layer
    is mapped, as in the published checkpoints).

    Returns:
        The pair folder.
    """
    cfg = model.config
    if cfg.more_sharers:
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
        fuser = model.fusers.fusers[str(t)]
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
