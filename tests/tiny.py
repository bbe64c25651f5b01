"""Tiny random models built in-process for the tests: a Qwen3 receiver and a deliberately different
Llama sharer (other family, depth, KV heads and head_dim), both with a shared small vocabulary."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedModel, Qwen3Config

VOCAB = 96


def tiny_receiver(vocab_size: int = VOCAB, seed: int = 0, **overrides) -> PreTrainedModel:
    """Qwen3: 3 layers, 4 q heads, 2 KV heads of dim 16, hidden 64."""
    kw = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        tie_word_embeddings=True,
        max_position_embeddings=512,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    cfg = Qwen3Config(**{**kw, **overrides})
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()


def tiny_sharer(vocab_size: int = VOCAB, seed: int = 1, **overrides) -> PreTrainedModel:
    """Llama: 2 layers, 6 q heads, 3 KV heads of dim 8, hidden 48."""
    kw = dict(
        vocab_size=vocab_size,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=3,
        max_position_embeddings=512,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    cfg = LlamaConfig(**{**kw, **overrides})
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()


def tokenized_pair(receiver_tokenizer, sharer_tokenizer):
    """The tiny receiver and sharer sized to two tokenizers, their generation config using each
    tokenizer's eos and pad, with small open-gate fusers (a `C2CModel` in eval mode)."""
    from cache2cache import C2CModel, FuserConfig

    receiver, sharer = tiny_receiver(vocab_size=len(receiver_tokenizer)), tiny_sharer(vocab_size=len(sharer_tokenizer))
    for model, tok in ((receiver, receiver_tokenizer), (sharer, sharer_tokenizer)):
        model.generation_config.eos_token_id = tok.eos_token_id
        model.generation_config.pad_token_id = tok.pad_token_id
    fuser = FuserConfig(hidden_dim=16, intermediate_dim=16, num_layers=3, dropout=0.0, gate_init=3.0)
    return C2CModel.from_models(receiver, sharer, fuser=fuser, receiver_tokenizer=receiver_tokenizer,
                                sharer_tokenizer=sharer_tokenizer, seed=0).eval()  # fmt: skip
