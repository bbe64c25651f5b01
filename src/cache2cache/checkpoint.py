"""Fuser checkpoints: our format, and finding and loading a pair's checkpoint in either format.

Our format, written by `C2CModel.save_pretrained(dir)`: exactly two files,
    c2c_config.json      C2CConfig: format version, pair fingerprints, fuser hparams, layer map
                         (with several sharers also `more_sharers` and `sharer_mode`)
    fuser.safetensors    the FuserStack state dict (`fusers.{receiver_layer}.{published key}`), or
                         with several sharers the MultiFuserStack's (`stacks.{i}.fusers.{layer}.*`)

`load_pair` also reads the published layout (`published.py`) and loads the receiver and sharers a
checkpoint records; `C2CModel.from_pretrained` builds the model from what it returns. Loading is
strict: every key and shape must match, and pickled code never runs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from . import loading, published
from .config import CONFIG_NAME, C2CConfig
from .fuser import FuserStack, load_strict
from .output_dir import output_dir_problem
from .sharers import MultiFuserStack, fusers_for

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "fuser.safetensors"


# --------------------------------------------------------------------------------------- our format


class LoadedPair(NamedTuple):
    """What a checkpoint and its models load into: the arguments of `C2CModel(...)`, in order."""

    receiver: PreTrainedModel
    sharers: list[PreTrainedModel]
    fusers: FuserStack | MultiFuserStack
    config: C2CConfig
    receiver_tokenizer: PreTrainedTokenizerBase | None
    sharer_tokenizers: list[PreTrainedTokenizerBase | None]


def save_c2c(config: C2CConfig, fusers: FuserStack | MultiFuserStack, directory: str | Path) -> Path:
    """Write `c2c_config.json` (`config`) and `fuser.safetensors` (`fusers`) into `directory`.

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
    config_text = json.dumps(config.to_dict(), indent=2) + "\n"
    with tempfile.TemporaryDirectory(dir=directory, prefix=".saving-") as tmp:
        save_model(
            fusers,
            os.path.join(tmp, WEIGHTS_NAME),
            metadata={"format": "pt", "c2c_format_version": str(config.format_version)},
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
    load_strict(fusers, state, str(path))


# --------------------------------------------------------------------------------------- loading


def load_pair(
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
) -> LoadedPair:
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
        The models, the fusers (on the receiver's device, in its dtype), the config and the tokenizers.
    """
    directory = _resolve_dir(path_or_hub_id, subfolder, revision)
    if (directory / CONFIG_NAME).is_file():
        config = C2CConfig.load(directory)
        recorded = [config.receiver.name_or_path, *(link.sharer.name_or_path for link in config.sharers)]
        layout = None
    else:
        final = published.final_dir(directory)
        layout = published.read_published(final)
        recorded = list(published.pair_ids(final))
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
    fusers: FuserStack | MultiFuserStack
    if layout is None:
        fusers = _build_empty_fusers(config)
        load_fuser_weights(fusers, directory / WEIGHTS_NAME)
    else:
        config, fusers = published.published_fusers(layout, receiver, sharers[0])
    fusers.to(device=receiver.device, dtype=receiver.dtype)
    return LoadedPair(receiver, sharers, fusers, config, receiver_tokenizer, sharer_tokenizers)


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
        logger.info("loading %s %s", role, name)
        model = loading.load_model(name, dtype=dtype, device=device or "cpu")
        if tokenizer is None:
            tokenizer = name
    if isinstance(tokenizer, str):
        tokenizer = loading.load_tokenizer(tokenizer)
    return model, tokenizer  # type: ignore[return-value]
