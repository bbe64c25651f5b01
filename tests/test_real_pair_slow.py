"""Real heterogeneous pair (slow, opt in with `-m slow`): receiver SmolLM2-135M-Instruct (Llama
architecture, 30 layers, 3x64 KV) <- sharer Gemma-3-270M (18 layers, 15 of them sliding-window,
1x256 KV), with different tokenizers. Needs `c2c fetch smollm2-135m-instruct gemma-3-270m`."""

from __future__ import annotations

import pytest
import torch

from cache2cache import C2CModel, FuserConfig

pytestmark = pytest.mark.slow

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a prime number larger than 10 ✓"},
    ],
    [
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Which gas do plants absorb?"},
    ],
]


@pytest.fixture(scope="module")
def real_pair() -> C2CModel:
    from cache2cache import assets
    from cache2cache.loading import load_model, load_tokenizer

    names = ("smollm2-135m-instruct", "gemma-3-270m")
    if not all(assets.is_fetched(n) for n in names):
        pytest.skip("run `c2c fetch smollm2-135m-instruct gemma-3-270m` first")
    receiver, sharer = (load_model(n, dtype=torch.float32) for n in names)
    rtok, stok = (load_tokenizer(n) for n in names)
    fuser = FuserConfig(hidden_dim=256, intermediate_dim=256)  # published gate init: closed at eval
    return C2CModel.from_models(
        receiver, sharer, fuser=fuser, receiver_tokenizer=rtok, sharer_tokenizer=stok, seed=0
    ).eval()


def test_real_prompts_align_with_equal_lengths_and_message_only_fusion(real_pair):
    assert real_pair.aligner is not None
    for messages in PROMPTS:
        seq = real_pair.aligner.align_messages(messages)
        assert len(seq.receiver_ids) == len(seq.sharer_ids) == len(seq.fusion_mask)
        assert seq.receiver_mask[-1] == 1  # the receiver's last prompt token is real
        for section, message in zip(seq.message_sections, messages, strict=True):
            text = real_pair.receiver_tokenizer.decode(seq.receiver_ids[section.start : section.end])
            assert text.strip() == message["content"]
            assert all(seq.fusion_mask[section.start : section.end])
        assert sum(seq.fusion_mask) == sum(s.end - s.start for s in seq.message_sections)


def test_closed_gate_reproduces_the_receiver_alone_exactly(real_pair):
    inputs = real_pair.encode(PROMPTS[:2])
    kwargs = dict(max_new_tokens=8, do_sample=False, return_dict_in_generate=True, output_logits=True)
    fused = real_pair.generate_from_inputs(inputs, **kwargs)
    alone = real_pair.receiver.generate(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask, **kwargs)
    assert torch.equal(fused.sequences, alone.sequences)
    torch.testing.assert_close(fused.logits[0], alone.logits[0], rtol=1e-4, atol=1e-4)


def test_generate_runs_with_a_fresh_fuser_and_long_prompts(real_pair):
    long_prompt = "Repeat after me: " + "the quick brown fox jumps over the lazy dog. " * 70  # > Gemma's 512 window
    texts = real_pair.generate(
        [[{"role": "user", "content": long_prompt}], PROMPTS[0]], max_new_tokens=4, do_sample=False
    )
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert real_pair.encode([[{"role": "user", "content": long_prompt}]]).input_ids.shape[1] > 512


def test_gradients_reach_only_the_fusers(real_pair):
    for fuser in real_pair.fusers.fusers.values():
        torch.nn.init.constant_(fuser.key_gate_logit, 3.0)
        torch.nn.init.constant_(fuser.value_gate_logit, 3.0)
    real_pair.train()
    conversation = PROMPTS[0] + [{"role": "assistant", "content": "Paris."}]
    full = real_pair.encode([conversation], add_generation_prompt=False)
    prompt_length = real_pair.encode([PROMPTS[0]]).input_ids.shape[1]
    labels = full.input_ids.masked_fill(torch.arange(full.input_ids.shape[1]) < prompt_length, -100)
    real_pair(full, prompt_length=prompt_length, labels=labels).loss.backward()
    assert all(p.grad is None for p in real_pair.receiver.parameters())
    assert all(p.grad is None for p in real_pair.sharer.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in real_pair.fusers.parameters())
    real_pair.eval()
