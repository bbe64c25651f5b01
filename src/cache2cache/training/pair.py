"""The receiver and sharer a training recipe names: loaded pretrained, or built with random weights."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..frozen import freeze
from ..loading import load_model, load_tokenizer
from .schema import ModelOptions

logger = logging.getLogger(__name__)


def load_pair(
    options: ModelOptions, device: torch.device, seed: int, output_dir: Path, *, write: bool
) -> tuple[PreTrainedModel, PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerBase | None]:
    """The receiver, sharer and their tokenizers a recipe names, frozen on `device`.

    With `init: pretrained` the models load through `cache2cache.loading` (hub id, folder, GGUF or
    fetched alias) in `options.dtype` ("auto": chosen by the device, see `loading.auto_dtype`; `run_training` resolves
    the recipe's "auto" from the precision first). With `init: random` each is built from the
    `config.json` in its folder with random weights seeded by `seed` (receiver) and `seed + 1`
    (sharer), then saved with its tokenizer under `<output_dir>/models/<role>/` (when `write`) and
    named by that folder, so the fusers' config records where to reload the exact models from.

    Returns:
        `(receiver, sharer, receiver_tokenizer, sharer_tokenizer)`; the sharer tokenizer is None when
        the sharer comes with none (it then reads the receiver's ids).
    """
    receiver_tokenizer = load_tokenizer(options.receiver_tokenizer or options.receiver)
    receiver = _model(options, "receiver", receiver_tokenizer, device, output_dir, seed, write)
    if options.sharer == options.receiver and (options.sharer_tokenizer or options.sharer) == (
        options.receiver_tokenizer or options.receiver
    ):
        # The receiver as its own sharer (the `self` control of c2c eval): one model, read twice.
        return receiver, receiver, receiver_tokenizer, receiver_tokenizer
    sharer_tokenizer = _sharer_tokenizer(options)
    sharer = _model(options, "sharer", sharer_tokenizer or receiver_tokenizer, device, output_dir, seed + 1, write)
    if options.init == "random":
        logger.info(
            "built random-weight receiver and sharer from %s and %s (saved under %s)",
            options.receiver,
            options.sharer,
            output_dir / "models",
        )
    return receiver, sharer, receiver_tokenizer, sharer_tokenizer


def _sharer_tokenizer(options: ModelOptions) -> PreTrainedTokenizerBase | None:
    """The sharer's tokenizer: the one named, else the sharer's own; a random-init sharer folder may
    have none (it then reads the receiver's ids)."""
    if options.sharer_tokenizer or options.init == "pretrained":
        return load_tokenizer(options.sharer_tokenizer or options.sharer)
    folder = Path(options.sharer).expanduser()
    has_tokenizer = any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))
    return load_tokenizer(options.sharer) if has_tokenizer else None


def _model(
    options: ModelOptions,
    role: str,
    tokenizer: PreTrainedTokenizerBase,
    device: torch.device,
    output_dir: Path,
    seed: int,
    write: bool,
) -> PreTrainedModel:
    """`role`'s model, frozen on `device`: loaded (`init: pretrained`), or built from the `config.json`
    its option names with random weights seeded by `seed`, saved with `tokenizer` under
    `<output_dir>/models/<role>/` when `write`, and named by that folder."""
    if options.init == "pretrained":
        return load_model(getattr(options, role), dtype=options.dtype, device=device)
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype = torch.float32 if options.dtype == "auto" else getattr(torch, options.dtype)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(getattr(options, role)), dtype=dtype)
    target = (output_dir / "models" / role).resolve()
    if write:
        target.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)
    model.name_or_path = model.config._name_or_path = str(target)
    return freeze(model.to(device))
