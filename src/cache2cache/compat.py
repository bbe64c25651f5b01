"""The reference code's loading and generation calls, on top of `C2CModel`.

People arrive from the Hugging Face model card of `nics-efc/C2C_Fuser`, whose example imports
`load_rosetta_model` from the reference repository. With this module its code runs unchanged except
for the import line:

    from cache2cache.compat import load_rosetta_model

    model_config = {"rosetta_config": {"base_model": "Qwen/Qwen3-0.6B",
                                       "teacher_model": "Qwen/Qwen2.5-0.5B-Instruct",
                                       "checkpoints_dir": f"{checkpoint_dir}/qwen3_0.6b+qwen2.5_0.5b_Fuser/final"}}
    rosetta_model, tokenizer = load_rosetta_model(model_config, eval_config={}, device=torch.device("cuda"))
    outputs = rosetta_model.generate(**inputs, kv_cache_index=[instruction_index, label_index],
                                     do_sample=False, max_new_tokens=256)

`kv_cache_index` (the reference code's per-token fusion index; README "Coming from the model card")
is a list of sections, each a (B, n_i, 2) LongTensor of `[sharer_index, layer_offset]` rows, one per
token, the n_i summing to the prompt length. It becomes our per-token fusion mask: a row `[1, 0]`
fuses sharer 1 at that token; `[-1, 0]` (and `[0, 0]`, which the reference treats alike) fuses
nothing. As in the reference, the last section is never fused. Two differences, both only for index
lists the reference's own examples never build: every row of every token is read (the reference
reads the first row's first token of each section), and the whole prompt is prefilled in one
receiver pass before fusion (the reference prefills section by section, so a section that follows a
fused one attends to the fused cache).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from .loading import usable_device
from .model import C2CModel

logger = logging.getLogger(__name__)


def fusion_mask_from_kv_cache_index(kv_cache_index: Sequence[torch.Tensor], input_ids: torch.Tensor) -> torch.Tensor:
    """Translate the reference's `kv_cache_index` sections into a fusion mask.

    Args:
        kv_cache_index: Sections, each (B or 1, n_i, 2) integer rows `[sharer_index, layer_offset]`,
            with sum(n_i) == N. `sharer_index` 1 fuses the sharer; -1 or 0 fuses nothing.
            `layer_offset` must be 0 (the reference never reads it).
        input_ids: (B, N) the prompt the index describes.

    Returns:
        (B, N) bool, True where the sharer is fused; the last section's tokens are always False.

    Raises:
        ValueError: A section of the wrong shape, lengths that do not add up to N, a sharer other
            than sharer 1, or a non-zero layer offset; the message names the section and the fix.
    """
    batch, length = input_ids.shape
    if isinstance(kv_cache_index, torch.Tensor) or not kv_cache_index:
        raise ValueError(
            "kv_cache_index must be a non-empty list of (B, n, 2) tensors, e.g. [instruction_index, label_index]"
        )
    sections = []
    for i, section in enumerate(kv_cache_index):
        section = torch.as_tensor(section)
        if section.dim() != 3 or section.shape[-1] != 2 or section.shape[0] not in (1, batch):
            raise ValueError(
                f"kv_cache_index[{i}] has shape {tuple(section.shape)}; expected (B, n, 2) with B = 1 or {batch} "
                "(rows [sharer_index, layer_offset], e.g. torch.tensor([1, 0]).repeat(n, 1).unsqueeze(0))"
            )
        sections.append(section.to(input_ids.device).long().expand(batch, -1, -1))
    lengths = [s.shape[1] for s in sections]
    if sum(lengths) != length:
        raise ValueError(
            f"kv_cache_index sections cover {sum(lengths)} tokens ({' + '.join(map(str, lengths))}) but the prompt has {length}; "
            f"the sections must partition the prompt, e.g. [1, 0] x {length - 1} then [-1, 0] x 1"
        )
    rows = torch.cat(sections, dim=1)  # (B, N, 2)
    sharer, offset = rows[..., 0], rows[..., 1]
    if bool((offset != 0).any()):
        raise ValueError(
            f"kv_cache_index layer offsets must be 0 (the reference never reads them), got {sorted(set(offset.unique().tolist()))}"
        )
    unknown = sorted(set(sharer.unique().tolist()) - {-1, 0, 1})
    if unknown:
        raise ValueError(
            f"kv_cache_index selects sharer values {unknown}; this model has one sharer, so each row's first value is "
            "1 (fuse the sharer) or -1 (fuse nothing). Combining several sharers (bitmasks 3, 7, ...) is not supported"
        )
    mask = sharer == 1
    mask[:, length - lengths[-1] :] = False  # the reference always runs its last section on the receiver alone
    return mask


class ReferenceStyleModel:
    """A `C2CModel` behind the reference code's `generate(input_ids, attention_mask, kv_cache_index=...)`.

    Args:
        model: The loaded pair.

    Attributes:
        c2c: The wrapped `C2CModel` (everything else of the library works on it).
    """

    def __init__(self, model: C2CModel) -> None:
        self.c2c = model

    @property
    def device(self) -> torch.device:
        """The receiver's device (where inputs go)."""
        return self.c2c.device

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        kv_cache_index: Sequence[torch.Tensor] | None = None,
        **generate_kwargs: Any,
    ) -> Any:
        """Generate with the receiver reading the sharer's cache where `kv_cache_index` says.

        Args:
            input_ids: (B, N) receiver token ids of the rendered prompt (left-padded for B > 1).
            attention_mask: (B, N), 0 on padding (default: all ones).
            kv_cache_index: The reference's sections (see `fusion_mask_from_kv_cache_index`);
                None fuses every prompt token but the last, the reference's standard encoding.
            **generate_kwargs: Hugging Face `generate` arguments (`max_new_tokens`, `do_sample`, ...)
                and the fusion controls of `C2CModel.generate` (`fusion_strength`, ...).

        Returns:
            What `C2CModel.generate` returns for token ids: (B, N + new) sequences by default, the
            prompt included, so `outputs[0, N:]` is the answer as in the reference.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        fusion_mask = attention_mask.bool()
        if kv_cache_index is not None:
            fusion_mask = fusion_mask & fusion_mask_from_kv_cache_index(kv_cache_index, input_ids)
        return self.c2c.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            sharer_input_ids=self._sharer_ids(input_ids, attention_mask),
            sharer_attention_mask=attention_mask,
            fusion_mask=fusion_mask,
            **generate_kwargs,
        )

    def _sharer_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, N) sharer ids: the receiver's own with a shared vocabulary, else each real token mapped 1:1."""
        aligner = self.c2c.aligner
        if aligner is None:
            return input_ids
        sharer_ids = torch.full_like(input_ids, aligner.sharer_pad_id)
        for row, (ids, mask) in enumerate(zip(input_ids, attention_mask.bool(), strict=True)):
            sharer_ids[row, mask] = torch.tensor(
                aligner.align_tokens(ids[mask].tolist()), dtype=input_ids.dtype, device=input_ids.device
            )
        return sharer_ids


def load_rosetta_model(
    model_config: Mapping[str, Any],
    eval_config: Mapping[str, Any] | None = None,
    device: torch.device | str | None = None,
    *,
    dtype: torch.dtype | str = torch.bfloat16,
) -> tuple[ReferenceStyleModel, PreTrainedTokenizerBase]:
    """Load a published C2C pair the way the reference's `load_rosetta_model` is called.

    Args:
        model_config: `{"rosetta_config": {"base_model": receiver id or folder, "teacher_model":
            sharer id or folder, "checkpoints_dir": a published `final/` folder (or its pair folder)}}`.
        eval_config: Accepted for the reference's signature; its settings do not apply here.
        device: Where the models go (default: cuda when available, else cpu). A CUDA device on a
            machine without CUDA falls back to the CPU with a warning, so the card's example runs.
        dtype: The models' dtype; bfloat16, as the reference loads them.

    Returns:
        `(model, tokenizer)`: the pair behind the reference's `generate(..., kv_cache_index=...)`
        call, and the receiver's tokenizer.

    Raises:
        ValueError: A missing or unsupported `rosetta_config` field, named with the fix.
    """
    rosetta = model_config.get("rosetta_config") if isinstance(model_config, Mapping) else None
    if not isinstance(rosetta, Mapping):
        raise ValueError(
            'model_config needs a "rosetta_config" mapping with base_model, teacher_model and checkpoints_dir'
        )
    missing = [key for key in ("base_model", "teacher_model", "checkpoints_dir") if not rosetta.get(key)]
    if missing:
        raise ValueError(
            f"rosetta_config lacks {', '.join(missing)}; give the receiver id, the sharer id and the published final/ folder"
        )
    if not isinstance(rosetta["teacher_model"], str) or not isinstance(rosetta["checkpoints_dir"], (str, Path)):
        raise ValueError(
            "rosetta_config names several sharers or checkpoints (a dict teacher_model or a list checkpoints_dir); "
            "only one sharer with one checkpoint is supported: give a single id and a single final/ folder"
        )
    if rosetta.get("include_response"):
        raise ValueError(
            "rosetta_config include_response is not supported (fusers fuse prompt tokens only, as they were trained); drop it"
        )
    if eval_config:
        logger.info("load_rosetta_model ignores eval_config keys %s", sorted(eval_config))
    model = C2CModel.from_pretrained(
        rosetta["checkpoints_dir"],
        receiver=rosetta["base_model"],
        sharer=rosetta["teacher_model"],
        dtype=dtype,
        device=usable_device(device),
    )
    tokenizer = model.receiver_tokenizer
    if tokenizer is None:  # a base_model given as a model object rather than a name comes without one
        raise ValueError(f"no receiver tokenizer could be loaded for {rosetta['base_model']!r}")
    return ReferenceStyleModel(model), tokenizer
