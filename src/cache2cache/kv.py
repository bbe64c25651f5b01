"""The only module that touches transformers' Cache internals (transformers >=5.24,<5.40).

Everything C2C needs from a KV-cache goes through these functions: prefill a model into a cache,
read and replace one layer's `(K, V)`, and pass a cache to `forward`/`generate` under the keyword the
installed transformers expects (`cache=` from 5.24; `past_key_values=` before). Tensors are in the
Hugging Face layout (B, H_kv, N, D), keys after RoPE.
"""

from __future__ import annotations

import inspect
from functools import cache

import torch
from transformers import DynamicCache, PreTrainedModel
from transformers.cache_utils import Cache


@cache
def _cache_kwarg_for(forward_cls: type) -> str:
    params = inspect.signature(forward_cls.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def cache_kwarg(model: PreTrainedModel) -> str:
    """The keyword under which `model.forward` and `generate` take a cache ("cache" or "past_key_values")."""
    return _cache_kwarg_for(type(model))


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
    kv_cache = DynamicCache() if keep_all_tokens else DynamicCache(config=model.config)
    model.base_model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=positions(attention_mask),
        use_cache=True,
        **{cache_kwarg(model): kv_cache},
    )
    return kv_cache


def layers(kv_cache: Cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every layer's `(K, V)`, each (B, H_kv, N_l, D)."""
    return [(layer.keys, layer.values) for layer in kv_cache.layers]


def replace_layer(kv_cache: Cache, layer_idx: int, keys: torch.Tensor, values: torch.Tensor) -> None:
    """Swap one layer's stored `(K, V)` for tensors of the same shape (they may carry autograd history)."""
    layer = kv_cache.layers[layer_idx]
    if keys.shape != layer.keys.shape or values.shape != layer.values.shape:
        raise ValueError(
            f"layer {layer_idx}: replacement K/V {tuple(keys.shape)}/{tuple(values.shape)} must match the cache's "
            f"{tuple(layer.keys.shape)}/{tuple(layer.values.shape)}"
        )
    layer.keys, layer.values = keys, values


def seq_length(kv_cache: Cache | None) -> int:
    """Tokens the cache has seen (0 for None)."""
    return 0 if kv_cache is None else kv_cache.get_seq_length()
