"""Sliding-window models (Gemma-3 keeps only the last W tokens on its sliding layers), in both roles.

The rules (see kv.prefill and FuserStack.forward):
- a sharer is prefilled keeping every token on every layer, so each prompt position has its sharer
  K/V; attention still honours the window, so the values are exactly the windowed model's;
- a receiver's sliding layers keep their last W tokens only, and only those are fused: earlier
  tokens can never be attended again, so fusing them would change nothing.
Both are checked against reference computations written here for prompts longer than the window.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache, Gemma3ForCausalLM, Gemma3TextConfig

from cache2cache import C2CModel, kv
from conftest import SMALL_FUSER, prompt_ids
from tiny import VOCAB, tiny_receiver, tiny_sharer

WINDOW = 4


def tiny_gemma(seed: int) -> Gemma3ForCausalLM:
    """Gemma-3 text model: 3 layers, the first two sliding (window 4), 1 KV head of dim 16."""
    cfg = Gemma3TextConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, sliding_window=WINDOW,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        max_position_embeddings=128, pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )  # fmt: skip
    torch.manual_seed(seed)
    return Gemma3ForCausalLM(cfg).eval()


def _open_pair(receiver, sharer) -> C2CModel:
    fuser = type(SMALL_FUSER)(**{**SMALL_FUSER.__dict__, "gate_init": 3.0})
    return C2CModel.from_models(receiver, sharer, fuser=fuser, seed=0).eval()


def _fuse_by_hand(model: C2CModel, sharer_kv: list, cache: DynamicCache) -> DynamicCache:
    """Replace every mapped receiver layer of `cache` by its fuser's output on all its tokens."""
    receiver_kv = kv.layers(cache)
    with torch.no_grad():
        for t, s in model.config.layer_map.items():
            kv.replace_layer(cache, t, *model.fusers.fusers[str(t)](sharer_kv[s], receiver_kv[t]))
    return cache


def _greedy_by_hand(model: C2CModel, ids: torch.Tensor, cache: DynamicCache, steps: int = 4) -> list[torch.Tensor]:
    logits, seq = [], ids
    with torch.no_grad():
        for _ in range(steps):
            step = model.receiver(input_ids=seq[:, -1:], cache=cache, use_cache=True)
            logits.append(step.logits[:, -1])
            seq = torch.cat([seq, step.logits[:, -1:].argmax(-1)], dim=1)
    return logits


def _generated_logits(model: C2CModel, ids: torch.Tensor, steps: int = 4) -> tuple[torch.Tensor, ...]:
    return model.generate(
        input_ids=ids, max_new_tokens=steps, do_sample=False, return_dict_in_generate=True, output_logits=True
    ).logits


def test_sliding_window_sharer_matches_a_per_prefix_reference():
    model = _open_pair(tiny_receiver(), tiny_gemma(seed=3))
    ids = prompt_ids(1, 3 * WINDOW, seed=7)
    prefix = ids[:, :-1]
    # Reference sharer K/V: position j read off the ordinary (windowed) cache of a run on prompt[:j+1].
    per_layer: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in range(3)]
    with torch.no_grad():
        for j in range(prefix.shape[1]):
            windowed = model.sharer.model(
                input_ids=prefix[:, : j + 1], cache=DynamicCache(config=model.sharer.config), use_cache=True
            ).cache
            for layer, (k, v) in enumerate(kv.layers(windowed)):
                per_layer[layer].append((k[..., -1:, :], v[..., -1:, :]))
        sharer_kv = [(torch.cat([k for k, _ in pos], -2), torch.cat([v for _, v in pos], -2)) for pos in per_layer]
        cache = model.receiver.model(input_ids=prefix, use_cache=True).cache
    expected = _greedy_by_hand(model, ids, _fuse_by_hand(model, sharer_kv, cache))
    for got, want in zip(_generated_logits(model, ids), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_sliding_window_receiver_matches_fusing_a_full_cache():
    model = _open_pair(tiny_gemma(seed=4), tiny_sharer())
    ids = prompt_ids(1, 3 * WINDOW, seed=8)
    prefix = ids[:, :-1]
    with torch.no_grad():
        # Reference: keep every receiver token on every layer and fuse them all.
        cache = model.receiver.model(input_ids=prefix, cache=DynamicCache(), use_cache=True).cache
        sharer_kv = kv.layers(model.sharer.model(input_ids=prefix, use_cache=True).cache)
    expected = _greedy_by_hand(model, ids, _fuse_by_hand(model, sharer_kv, cache))
    for got, want in zip(_generated_logits(model, ids), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # and the fused path really keeps only the window on sliding layers
    fused = model.fuse(model.inputs_from_ids(prefix))
    assert [k.shape[-2] for k, _ in kv.layers(fused)] == [WINDOW - 1, WINDOW - 1, prefix.shape[1]]


def test_continuation_scoring_over_a_prompt_longer_than_the_window():
    """The sharer's loglik path prefills each distinct prompt once and reads it with [last token +
    continuation]; on a windowed model that must equal one full forward of prompt + continuation."""
    from cache2cache.evaluation.scoring import append_tokens, continuation_logits

    gemma = tiny_gemma(seed=3)
    prompts = prompt_ids(2, 9, seed=4)
    mask = torch.ones_like(prompts)
    mask[1, :3] = 0  # left padding
    rows, tails = [0, 1, 0, 1], [[5, 6, 7], [8], [9], [10, 11]]
    ids, full_mask = append_tokens(prompts, mask, rows, tails, pad_id=0)
    with torch.no_grad():
        logits = continuation_logits(gemma, ids, full_mask, prompt_length=9)
        for i, tail in enumerate(tails):
            alone, alone_mask = ids[i : i + 1, : 9 + len(tail)], full_mask[i : i + 1, : 9 + len(tail)]
            full = gemma(input_ids=alone, attention_mask=alone_mask, position_ids=kv.positions(alone_mask)).logits
            torch.testing.assert_close(logits[i, : len(tail) + 1], full[0, 8:], rtol=1e-5, atol=1e-5)
