"""Tiny random models built in-process for the tests: a Qwen3 receiver and a deliberately different
Llama sharer (other family, depth, KV heads and head_dim), both with a shared small vocabulary."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedModel, Qwen3Config

VOCAB = 96


def tiny_receiver(vocab_size: int = VOCAB, seed: int = 0, **overrides) -> PreTrainedModel:
    """Qwen3: 3 layers, 4 q heads, 2 KV heads of dim 16, hidden 64."""
    kw = dict(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
        max_position_embeddings=512, pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )
    cfg = Qwen3Config(**{**kw, **overrides})
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()


def tiny_sharer(vocab_size: int = VOCAB, seed: int = 1, **overrides) -> PreTrainedModel:
    """Llama: 2 layers, 6 q heads, 3 KV heads of dim 8, hidden 48."""
    kw = dict(
        vocab_size=vocab_size, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=6, num_key_value_heads=3, max_position_embeddings=512,
        pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )
    cfg = LlamaConfig(**{**kw, **overrides})
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
