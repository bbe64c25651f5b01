"""Prefix reuse (prefix.py): a reused prefix gives what encoding the whole prompt gives, and is never changed."""

from __future__ import annotations

import pytest
import torch

from cache2cache import C2CModel, FusionControl, kv, prefix
from conftest import prompt_ids
from test_sliding_window import _open_pair, tiny_gemma
from tiny import tiny_sharer, tokenized_pair
from toy_tokenizers import bpe_tokenizer, wordlevel_tokenizer

GREEDY = {"max_new_tokens": 6, "do_sample": False, "return_dict_in_generate": True, "output_logits": True}


def _fresh(model: C2CModel, inputs, **kw):
    return model.generate_from_inputs(inputs, **GREEDY, **kw)


def _assert_same(ours, fresh) -> None:
    assert torch.equal(ours.sequences, fresh.sequences), (ours.sequences, fresh.sequences)
    for a, b in zip(ours.logits, fresh.logits, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def _snapshot(p: prefix.PrefixCache) -> list[torch.Tensor]:
    return [t.clone() for cache in (p.receiver, *p.sharers, p.fused) for pair in kv.layers(cache) for t in pair]


def test_a_reused_prefix_equals_the_whole_prompt_and_is_not_changed(pair):
    inputs = pair.inputs_from_ids(prompt_ids(1, 16, seed=4))
    start = prefix.extend(pair, inputs.truncate(10))
    before = _snapshot(start)
    fresh = _fresh(pair, inputs)
    first, covered = prefix.generate_from_inputs(pair, inputs, start, **GREEDY)
    second, _ = prefix.generate_from_inputs(pair, inputs, start, **GREEDY)
    assert covered.reused == 10 and covered.length == 15
    _assert_same(first, fresh)
    _assert_same(second, first)
    for a, b in zip(before, _snapshot(start), strict=True):
        assert torch.equal(a, b)
    unfused = _fresh(pair, inputs, fuse=False)
    assert not torch.allclose(first.logits[0], unfused.logits[0])  # the open gate fused something


def test_a_prefix_is_reused_up_to_the_first_differing_column(pair):
    ids = prompt_ids(1, 14, seed=5)
    other = ids.clone()
    other[0, 6:] = (other[0, 6:] + 1 - 3) % 93 + 3  # differs from column 6 on
    start = prefix.extend(pair, pair.inputs_from_ids(other))
    inputs = pair.inputs_from_ids(ids)
    ours, covered = prefix.generate_from_inputs(pair, inputs, start, **GREEDY)
    assert covered.reused == 6
    _assert_same(ours, _fresh(pair, inputs))


def test_strength_and_layer_subset_are_kept_with_the_prefix(pair):
    inputs = pair.inputs_from_ids(prompt_ids(1, 12, seed=6))
    control = FusionControl(strength=0.5, layers=(pair.config.fused_layers[-1],))
    start = prefix.extend(pair, inputs.truncate(7), control=control)
    ours, _ = prefix.generate_from_inputs(pair, inputs, start, control=control, **GREEDY)
    _assert_same(ours, _fresh(pair, inputs, control=control))
    with pytest.raises(ValueError, match="build the prefix with the same settings"):
        prefix.generate_from_inputs(pair, inputs, start, **GREEDY)


def test_closed_gate_with_a_prefix_equals_the_receiver_alone(closed_pair):
    ids = prompt_ids(1, 13, seed=7)
    inputs = closed_pair.inputs_from_ids(ids)
    start = prefix.extend(closed_pair, inputs.truncate(8))
    ours, _ = prefix.generate_from_inputs(closed_pair, inputs, start, **GREEDY)
    alone = closed_pair.receiver.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **GREEDY)
    _assert_same(ours, alone)
    off = prefix.extend(closed_pair, inputs.truncate(8), fuse=False)
    unfused, _ = prefix.generate_from_inputs(closed_pair, inputs, off, fuse=False, **GREEDY)
    _assert_same(unfused, alone)


def test_chat_turns_reuse_the_previous_turn_with_aligned_tokenizers():
    model = tokenized_pair(bpe_tokenizer(), wordlevel_tokenizer())
    assert model.aligner is not None
    system = [{"role": "system", "content": "You are a helpful assistant. Answer the question."}]
    start = prefix.prefill(model, system)
    turns = ["What is the capital of France?", "How are you today?"]
    history, previous, reused = list(system), start, []
    for text in turns:
        history.append({"role": "user", "content": text})
        inputs = model.encode([history])
        ours, covered = prefix.generate_from_inputs(model, inputs, previous, **GREEDY)
        _assert_same(ours, _fresh(model, inputs))
        reused.append(covered.reused)
        reply = model.chat_tokenizer().decode(ours.sequences[0, inputs.input_ids.shape[1] :], skip_special_tokens=True)
        history.append({"role": "assistant", "content": reply})
        previous = covered
    # the system message's columns, then the whole first turn up to its generation prompt (whose
    # template padding differs once the assistant's answer follows it), were reused
    first_turn = model.aligner.align_messages(history[:2]).message_sections
    assert reused[0] >= first_turn[0].end and reused[1] >= first_turn[1].end
    text, _ = prefix.generate(model, history[:-1], prefix=start, max_new_tokens=6, do_sample=False)
    assert text == model.generate(history[:-1], max_new_tokens=6, do_sample=False)


def test_what_prefix_reuse_refuses(pair):
    inputs = pair.inputs_from_ids(prompt_ids(1, 10))
    with pytest.raises(ValueError, match="a batch of 2 rows"):
        prefix.extend(pair, pair.inputs_from_ids(prompt_ids(2, 10)))
    with pytest.raises(ValueError, match="fuse_proportion=0.5"):
        prefix.extend(pair, inputs, control=FusionControl(proportion=0.5))
    with pytest.raises(ValueError, match="include_response"):
        prefix.extend(pair, inputs, control=FusionControl(include_response=True))
    with pytest.raises(ValueError, match="ablate_sharer: the sharer's mean depends on the whole prompt"):
        prefix.extend(pair, inputs, control=FusionControl(ablate_sharer=True))
    start = prefix.extend(pair, inputs.truncate(6))
    with pytest.raises(ValueError, match="fuse=True"):
        prefix.extend(pair, inputs, start, fuse=False)


def test_sliding_window_receiver_extends_a_prefix_but_cannot_cut_one_back():
    model = _open_pair(tiny_gemma(seed=0), tiny_sharer())
    ids = prompt_ids(1, 12, seed=8)
    inputs = model.inputs_from_ids(ids)
    start = prefix.extend(model, inputs.truncate(7))  # longer than the window of 4
    ours, _ = prefix.generate_from_inputs(model, inputs, start, **GREEDY)
    _assert_same(ours, _fresh(model, inputs))
    other = ids.clone()
    other[0, 3] = 3 if int(ids[0, 3]) != 3 else 4
    changed = model.inputs_from_ids(other)
    with pytest.raises(ValueError, match="sliding-window layer"):
        prefix.extend(model, changed, start)
    again, covered = prefix.generate_from_inputs(model, changed, start, recompute=True, **GREEDY)
    assert covered.reused == 0
    _assert_same(again, _fresh(model, changed))
