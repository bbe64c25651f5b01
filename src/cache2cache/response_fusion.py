"""Fusion during the response (`include_response`): the sharer keeps reading, and every response token is fused.

Plain C2C fuses the prompt once; the receiver then answers over that cache alone. With
`include_response` (the reference's newest mode, docs/method.md §1.5) the sharer runs over the
response as well, and each response token's receiver K/V is fused as the receiver reads it: generated
tokens one step at a time, or a whole teacher-forced response in training. Three caches grow side
by side:

    receiver   the receiver alone over prompt and response: the fuser's receiver input, as at prefill
    sharer     the sharer over its tokens, aligned 1:1 to the receiver's
    fused      the cache the receiver answers from: the fused prompt, then fused response tokens

For T new tokens (B, T) (the last prompt token first, then each generated token, or the whole
response at once in training):

    R_new = receiver over the new tokens on `receiver`        K/V per layer, (B, H_kv, T, D)
    S_new = sharer over its tokens for them on `sharer`
    F_new = fusers(S_new, R_new) on the tokens to fuse (`fusion_mask`), at the control's strength and layers
    the receiver's real forward on `fused` then stores F_new instead of the K/V it computed, in every
    fused layer, before attending: the new tokens attend to their own fused K/V, as in the reference.

The first call fuses the prompt and its new tokens in one call of the fusers (distributed training
needs one call per step), so the prompt is fused exactly as in plain C2C. Unfused layers and tokens
keep what the real forward computed. Fused K/V of token j depend only on the receiver alone and the
sharer up to j, so a teacher-forced pass over a response equals decoding it step by step.

The rewrite goes through `Cache.update` (`kv.rewrite_updates`), so any architecture works; the
reference monkey-patches Qwen3's attention instead. Each generated token costs a second receiver
pass (the receiver alone), a sharer pass and the fusers.

Tokens: the prompt's sharer tokens are its aligned ones (`C2CInputs`); each response token is mapped
alone to one sharer token: the same id for a shared tokenizer, `TokenAligner.align_tokens` (decode
the receiver token, re-encode it for the sharer, keep one) otherwise. Left-padded batches work as in
plain C2C; a row that has finished keeps receiving pad tokens until the batch stops, as in Hugging
Face `generate`, and they do not affect the other rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import Cache

from . import kv
from .control import FusionControl
from .inputs import C2CInputs, Stage

if TYPE_CHECKING:
    from .alignment import TokenAligner
    from .config import C2CConfig


class FusingPair(Protocol):
    """What response fusion reads of a `C2CModel` (single sharer)."""

    @property
    def config(self) -> C2CConfig: ...
    @property
    def receiver(self) -> PreTrainedModel: ...
    @property
    def sharer(self) -> PreTrainedModel: ...
    @property
    def fusers(self) -> nn.Module: ...
    @property
    def aligner(self) -> TokenAligner | None: ...
    @property
    def receiver_tokenizer(self) -> PreTrainedTokenizerBase | None: ...
    @property
    def sharer_tokenizer(self) -> PreTrainedTokenizerBase | None: ...


class ResponseFusion:
    """The three caches of one response-fused batch, and the step that extends them.

    Args:
        model: The pair.
        prompt: The prompt, (B, N) left-padded, all N tokens (the last one is read with the response).
        control: Strength and layers apply everywhere; `proportion` counts the N prompt tokens.
        fusers: The fuser module to call (a DDP wrapper in distributed training); None: `model.fusers`.
        stage: Wraps the `prefill` and `sharer` stages (the receiver alone and the sharer over the
            first N - 1 prompt tokens).

    Raises:
        ValueError: The sharer's tokens differ from the receiver's but the model has no token
            aligner (token ids given without tokenizers), so response tokens cannot be mapped.
    """

    def __init__(
        self,
        model: FusingPair,
        prompt: C2CInputs,
        control: FusionControl,
        *,
        fusers: nn.Module | None,
        stage: Stage,
    ) -> None:
        if model.config.more_sharers:
            raise ValueError(
                "include_response fuses one sharer's cache during the response; this model reads "
                f"{1 + len(model.config.more_sharers)} sharers: use include_response=False, or a single-sharer model"
            )
        real = prompt.attention_mask.bool() & prompt.sharer_attention_mask.bool()
        # Both tokenizers known and no aligner: they share a vocabulary, so the sharer may read its own
        # prompt (`sharer_messages`) and response tokens still map as themselves.
        shared_vocab = model.receiver_tokenizer is not None and model.sharer_tokenizer is not None
        if (
            model.aligner is None
            and not shared_vocab
            and not torch.equal(prompt.input_ids[real], prompt.sharer_input_ids[real])
        ):
            raise ValueError(
                "include_response maps each response token to a sharer token, but the sharer ids given differ from the "
                "receiver's and the model has no token aligner: build the C2CModel with receiver_tokenizer= and "
                "sharer_tokenizer= (or pass chat messages), or use a pair that shares a tokenizer"
            )
        self.model, self.prompt, self.control = model, prompt, control
        self.fusers = fusers or model.fusers
        self.prompt_mask = control.fusion_mask(prompt.fusion_mask)  # (B, N)
        prefix = prompt.truncate(prompt.input_ids.shape[1] - 1)
        with torch.no_grad():
            with stage("prefill"):
                self.receiver_cache = self._prefill(model.receiver, prefix.input_ids, prefix.attention_mask)
            with stage("sharer"):
                self.sharer_cache = self._prefill(
                    model.sharer, prefix.sharer_input_ids, prefix.sharer_attention_mask, keep_all_tokens=True
                )
        # The fused cache starts as the receiver's own; the first step fuses the prompt into it.
        self.fused_cache = kv.twin(self.receiver_cache)
        self._unfused_prompt: list[tuple[torch.Tensor, torch.Tensor]] | None = (
            kv.layers(self.receiver_cache) if prefix.input_ids.shape[1] else None
        )
        self._pending: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._length = prefix.input_ids.shape[1]  # tokens the caches hold

    @staticmethod
    def _prefill(
        model: PreTrainedModel, ids: torch.Tensor, mask: torch.Tensor, *, keep_all_tokens: bool = False
    ) -> Cache:
        if ids.shape[1] == 0:
            return kv.empty_cache(model, keep_all_tokens=keep_all_tokens)
        return kv.prefill(model, ids, mask, keep_all_tokens=keep_all_tokens)

    # ----------------------------------------------------------------------------------- one step

    def sharer_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Map response tokens 1:1 to sharer tokens: (B, T) receiver ids -> (B, T) sharer ids."""
        aligner = self.model.aligner
        if aligner is None:
            vocab = self.model.config.sharer.vocab_size
            if input_ids.numel() and int(input_ids.max()) >= vocab:
                raise ValueError(
                    f"response token {int(input_ids.max())} is outside the sharer's vocabulary ({vocab}); the "
                    "tokenizers differ: build the C2CModel with sharer_tokenizer= so response tokens get aligned"
                )
            return input_ids
        rows = [aligner.align_tokens(row) for row in input_ids.tolist()]
        return torch.tensor(rows, dtype=input_ids.dtype, device=input_ids.device).reshape(input_ids.shape)

    def _columns(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The sharer's side of T new tokens at columns L - T .. L - 1.

        Columns inside the prompt (its last token) come from the prompt's aligned sharer tokens and
        fusion mask; response columns are mapped by `sharer_tokens` and fused wherever they are real.

        Returns:
            Sharer ids (B, T), the sharer's mask over all L columns (B, L), and the new tokens'
            fusion mask (B, T) bool.
        """
        n, (t, length) = self.prompt.input_ids.shape[1], (input_ids.shape[1], attention_mask.shape[1])
        start = length - t
        in_prompt = max(0, n - start)  # new tokens that are prompt tokens (the last prompt token, once)
        sharer_ids = torch.cat(
            [self.prompt.sharer_input_ids[:, start:n], self.sharer_tokens(input_ids[:, in_prompt:])], dim=1
        )
        sharer_mask = torch.cat([self.prompt.sharer_attention_mask, attention_mask[:, n:]], dim=1)[:, :length]
        fusion = torch.cat([self.prompt_mask[:, start:n], attention_mask[:, max(start, n) :].bool()], dim=1)
        return sharer_ids, sharer_mask, fusion

    def prepare(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        """Fuse T new tokens before the receiver's real forward on `fused_cache` reads them.

        Extends the receiver-alone and sharer caches by the new tokens (no gradients) and fuses
        their K/V (gradients reach the fusers); the first call also fuses the prompt into
        `fused_cache`.

        Args:
            input_ids: (B, T) receiver ids of the new tokens, right after what the caches hold.
            attention_mask: (B, L) the receiver's mask over all tokens so far, the new ones included.
        """
        if self._pending:
            raise RuntimeError("prepare was called twice without a receiver forward in between")
        t = input_ids.shape[1]
        if attention_mask.shape[1] != self._length + t:
            raise ValueError(
                f"the attention mask covers {attention_mask.shape[1]} tokens, but the caches hold {self._length} "
                f"and {t} are new: give the mask over every token so far"
            )
        self._length += t
        sharer_ids, sharer_mask, fusion = self._columns(input_ids, attention_mask)
        with torch.no_grad():
            receiver_new = kv.extend(self.model.receiver, self.receiver_cache, input_ids, attention_mask)
            sharer_new = kv.extend(self.model.sharer, self.sharer_cache, sharer_ids, sharer_mask)
        prompt_kv, self._unfused_prompt = self._unfused_prompt, None
        if prompt_kv is None:
            receiver_kv, sharer_kv, mask = receiver_new, sharer_new, fusion
        else:  # first step: the prompt and the new tokens in one call of the fusers
            receiver_kv = [
                (torch.cat([k, kn], dim=2), torch.cat([v, vn], dim=2))
                for (k, v), (kn, vn) in zip(prompt_kv, receiver_new, strict=True)
            ]
            sharer_kv = kv.layers(self.sharer_cache)
            mask = torch.cat([self.prompt_mask[:, : attention_mask.shape[1] - t], fusion], dim=1)
        fused = self.fusers(sharer_kv, receiver_kv, mask, layers=self.control.layers, strength=self.control.strength)
        for layer_idx, (keys, values) in fused.items():
            if prompt_kv is not None:
                kv.replace_layer(self.fused_cache, layer_idx, keys[:, :, :-t], values[:, :, :-t])
            self._pending[layer_idx] = (keys[:, :, -t:], values[:, :, -t:], fusion)

    def _substitute(
        self, layer_idx: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The `kv.KVRewrite` of the real forward: fused K/V where the new tokens are fused, its own elsewhere."""
        if layer_idx not in self._pending:
            return keys, values
        fused_keys, fused_values, fusion = self._pending.pop(layer_idx)
        if fused_keys.shape != keys.shape or fused_values.shape != values.shape:
            raise RuntimeError(
                f"layer {layer_idx}: fused K/V {tuple(fused_keys.shape)} do not match the forward's {tuple(keys.shape)}; "
                "the receiver's forward read other tokens than prepare() fused"
            )
        where = fusion[:, None, :, None].to(keys.device)  # (B, 1, T, 1)
        return torch.where(where, fused_keys, keys), torch.where(where, fused_values, values)

    # ----------------------------------------------------------------------------------- driving

    @contextmanager
    def _rewriting(self) -> Iterator[None]:
        """While active, receiver forwards on `fused_cache` store the fused K/V `prepare` made."""
        with kv.rewrite_updates(self.fused_cache, self._substitute):
            yield
        if self._pending:
            raise RuntimeError(f"fused K/V of layers {sorted(self._pending)} were prepared but never read")

    @contextmanager
    def reading(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Iterator[None]:
        """Fuse T new tokens now; the one receiver forward over them on `fused_cache` inside the block
        then reads them fused (a teacher-forced response in training, scoring in evaluation).

        Args:
            input_ids: (B, T) the tokens after the prompt's first N - 1 (the last prompt token first).
            attention_mask: (B, N - 1 + T) the receiver's mask over everything.
        """
        self.prepare(input_ids, attention_mask)
        with self._rewriting():
            yield

    @contextmanager
    def decoding(self) -> Iterator[None]:
        """While active, each forward of the receiver (as Hugging Face `generate` calls it) fuses its
        new tokens first: `prepare` runs in a forward pre-hook, then `reading` stores the result."""

        def before_forward(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            input_ids, attention_mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
            if input_ids is None or (attention_mask is not None and attention_mask.dim() != 2):
                raise ValueError(
                    "include_response decodes from token ids with a 2-D attention mask (B, L); "
                    "inputs_embeds and custom 4-D masks are not supported"
                )
            if attention_mask is None:  # generate drops a mask without padding
                attention_mask = input_ids.new_ones(input_ids.shape[0], self._length + input_ids.shape[1])
            self.prepare(input_ids, attention_mask)

        handle = self.model.receiver.register_forward_pre_hook(before_forward, with_kwargs=True)
        try:
            with self._rewriting():
                yield
        finally:
            handle.remove()
