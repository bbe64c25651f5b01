"""The only module that touches transformers' Cache internals (transformers >=5.24,<5.40).

Everything C2C needs from a KV-cache goes through these functions: prefill a model into a cache,
extend it by new tokens (returning the K/V they add), read and replace one layer's `(K, V)`, rewrite
the K/V a forward pass appends (fusion during the response, `response_fusion.py`), and pass a cache
to `forward`/`generate` under the keyword the installed transformers expects (`cache=` from 5.24;
`past_key_values=` before). Tensors are in the Hugging Face layout (B, H_kv, N, D), keys after RoPE.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import torch
from transformers import DynamicCache, PreTrainedModel
from transformers.cache_utils import Cache


@cache
def _cache_kwarg_for(forward: Callable[..., Any]) -> str:
    params = inspect.signature(forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def cache_kwarg(model: PreTrainedModel) -> str:
    """The keyword under which `model.forward` and `generate` take a cache ("cache" or "past_key_values")."""
    return _cache_kwarg_for(type(model).forward)


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip padding, as `generate` computes them: (B, N) -> (B, N)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def prefill(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    keep_all_tokens: bool = False,
) -> Cache:
    """Run `model`'s base (no LM head) over a prompt and return its KV-cache.

    Args:
        model: A causal LM.
        input_ids: (B, N) token ids.
        attention_mask: (B, N), 0 on padding.
        keep_all_tokens: Keep every token in every layer, even where the model attends through a
            sliding window (its sliding layers would otherwise keep only the last W tokens). Attention
            itself still honours the window, since masks come from the model config. Sharers need
            this: fusion reads the sharer at every prompt position.

    Returns:
        The cache; `len(layers(cache))` equals the model's layer count, each layer (B, H_kv, N_l, D).
    """
    kv_cache = empty_cache(model, keep_all_tokens=keep_all_tokens)
    model.base_model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=positions(attention_mask),
        use_cache=True,
        **{cache_kwarg(model): kv_cache},
    )
    return kv_cache


def empty_cache(model: PreTrainedModel, *, keep_all_tokens: bool = False) -> Cache:
    """A cache with nothing in it yet, for `model` (sliding-window layers unless `keep_all_tokens`, see `prefill`)."""
    return DynamicCache() if keep_all_tokens else DynamicCache(config=model.config)


KVRewrite = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""`(layer_idx, keys, values) -> (keys, values)`: what a layer stores instead of the K/V a forward computed."""


@contextmanager
def rewrite_updates(kv_cache: Cache, rewrite: KVRewrite) -> Iterator[None]:
    """While active, every layer update of `kv_cache` stores `rewrite(layer_idx, K, V)` instead of `(K, V)`.

    Attention layers hand their new tokens' K/V, each (B, H_kv, T, D), to `cache.update` and attend
    over what it returns, so a rewritten K/V is what the new tokens themselves attend to, and what
    later tokens find in the cache. This works for any architecture that caches through
    `Cache.update` (every Hugging Face decoder), with no change to the model.
    """
    previous = kv_cache.__dict__.get("update")
    stored = kv_cache.update

    def update(
        key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = rewrite(layer_idx, key_states, value_states)
        return stored(keys, values, layer_idx, *args, **kwargs)

    kv_cache.update = update  # type: ignore[method-assign]
    try:
        yield
    finally:
        if previous is None:
            del kv_cache.update
        else:
            kv_cache.update = previous  # type: ignore[method-assign]


def extend(
    model: PreTrainedModel, kv_cache: Cache, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Run `model`'s base over T new tokens on top of `kv_cache` and return the K/V they add.

    Args:
        model: A causal LM.
        kv_cache: Its cache over the first L - T positions; extended in place by the T new tokens.
        input_ids: (B, T) the new tokens.
        attention_mask: (B, L) the mask over cached and new tokens, 0 on padding.

    Returns:
        Per layer, the new tokens' `(K, V)`, each (B, H_kv, T, D), as the forward computed them (a
        sliding-window layer may keep fewer of them in the cache).
    """
    added: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(layer_idx: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        added[layer_idx] = (keys, values)
        return keys, values

    t = input_ids.shape[1]
    with rewrite_updates(kv_cache, record):
        model.base_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=positions(attention_mask)[:, -t:],
            use_cache=True,
            **{cache_kwarg(model): kv_cache},
        )
    n_layers = model.config.get_text_config().num_hidden_layers
    if sorted(added) != list(range(n_layers)):
        raise ValueError(
            f"{type(model).__name__} cached K/V for layers {sorted(added)} of its {n_layers}: fusion during the "
            "response needs a model that caches every layer (models that share K/V across layers are not supported)"
        )
    return [added[i] for i in range(n_layers)]


def twin(kv_cache: Cache) -> Cache:
    """A second cache over the same tensors; extending either one leaves the other as it was.

    Dynamic cache layers grow by concatenating into new tensors, never by writing in place, so the
    two can share every tensor held now. (B, H_kv, N, D) per layer, nothing copied.
    """
    if not isinstance(kv_cache, DynamicCache) or "update" in kv_cache.__dict__:
        raise TypeError(
            f"twin needs a DynamicCache whose updates are not being rewritten, got {type(kv_cache).__name__}"
        )
    other = copy.copy(kv_cache)
    other.layers = [copy.copy(layer) for layer in kv_cache.layers]
    return other


def _stored(layer: object, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One cache layer's `(K, V)`; a TypeError for a layer that holds none (unfilled, or linear attention)."""
    keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
    if not isinstance(keys, torch.Tensor) or not isinstance(values, torch.Tensor):
        raise TypeError(
            f"cache layer {layer_idx} ({type(layer).__name__}) holds no keys and values: C2C fuses attention caches "
            "after a prefill, not empty or linear-attention layers"
        )
    return keys, values


def layers(kv_cache: Cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every layer's `(K, V)`, each (B, H_kv, N_l, D)."""
    return [_stored(layer, i) for i, layer in enumerate(kv_cache.layers)]


def replace_layer(kv_cache: Cache, layer_idx: int, keys: torch.Tensor, values: torch.Tensor) -> None:
    """Swap one layer's stored `(K, V)` for tensors of the same shape (they may carry autograd history)."""
    layer = kv_cache.layers[layer_idx]
    old_keys, old_values = _stored(layer, layer_idx)
    if keys.shape != old_keys.shape or values.shape != old_values.shape:
        raise ValueError(
            f"layer {layer_idx}: replacement K/V {tuple(keys.shape)}/{tuple(values.shape)} must match the cache's "
            f"{tuple(old_keys.shape)}/{tuple(old_values.shape)}"
        )
    layer.keys, layer.values = keys, values  # type: ignore[union-attr]  # _stored checked it holds K and V


def append(kv_cache: Cache, new_kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Extend every layer of `kv_cache` by T tokens' `(K, V)`, as a forward pass over them would.

    Args:
        kv_cache: A cache over the first L tokens; afterwards it covers L + T (a sliding-window layer
            keeps only its window, as it does in a forward). Layers grow into new tensors, so a
            `twin` taken before is left as it was.
        new_kv: Per layer, the new tokens' `(K, V)`, each (B, H_kv, T, D).
    """
    for layer_idx, (keys, values) in enumerate(new_kv):
        kv_cache.update(keys, values, layer_idx)


def can_cut(kv_cache: Cache, length: int) -> bool:
    """Whether `head(kv_cache, length)` can cut the cache back: no sliding-window layer holds fewer
    than all its tokens unless it already ends at `length`."""
    return all(
        _seen(layer, i) == length or not getattr(layer, "is_sliding", False) for i, layer in enumerate(kv_cache.layers)
    )


def _seen(layer: object, layer_idx: int) -> int:
    """The tokens a layer has read: a sliding layer counts them all but holds only the last ones."""
    keys, _ = _stored(layer, layer_idx)
    return int(getattr(layer, "cumulative_length", keys.shape[-2]))


def head(kv_cache: Cache, length: int) -> Cache:
    """A `twin` of `kv_cache` that holds only its first `length` tokens (the original is unchanged).

    Raises:
        ValueError: `can_cut` is False (a sliding-window layer past its window has lost the earlier
            tokens), or the cache is shorter than `length`.
    """
    other = twin(kv_cache)
    for layer_idx, layer in enumerate(other.layers):
        keys, values = _stored(layer, layer_idx)
        seen = _seen(layer, layer_idx)
        if seen == length:
            continue
        if getattr(layer, "is_sliding", False) or seen < length:
            raise ValueError(
                f"cache layer {layer_idx} ({type(layer).__name__}) has read {seen} tokens and cannot be cut to "
                f"its first {length}: a sliding-window layer keeps only its last tokens"
            )
        layer.keys, layer.values = keys[:, :, :length], values[:, :, :length]  # type: ignore[union-attr]
    return other
