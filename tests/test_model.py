"""C2CModel invariants: closed gate == receiver alone, generate == hand loop, batching, gradients."""

from __future__ import annotations

import copy
import functools

import pytest
import torch

from cache2cache import C2CModel, FuserConfig, FuserStack, kv
from cache2cache.inputs import C2CInputs
from conftest import SMALL_FUSER, prompt_ids
from tiny import tiny_receiver


def _greedy(model, **kw):
    return model.generate(max_new_tokens=6, do_sample=False, return_dict_in_generate=True, output_logits=True, **kw)


def test_closed_gate_equals_the_receiver_alone(closed_pair):
    ids = prompt_ids(2, 10)
    ours = _greedy(closed_pair, input_ids=ids)
    plain = _greedy(closed_pair.receiver, input_ids=ids)
    assert torch.equal(ours.sequences, plain.sequences)
    for a, b in zip(ours.logits, plain.logits, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_empty_fusion_mask_and_receiver_only_mode_equal_the_receiver_alone(pair):
    ids = prompt_ids(1, 9)
    plain = _greedy(pair.receiver, input_ids=ids)
    for kw in ({"fusion_mask": torch.zeros_like(ids, dtype=torch.bool)}, {"fuse": False}):
        ours = _greedy(pair, input_ids=ids, **kw)
        assert torch.equal(ours.sequences, plain.sequences)
        torch.testing.assert_close(ours.logits[0], plain.logits[0], rtol=1e-5, atol=1e-5)
    fused = _greedy(pair, input_ids=ids)
    assert not torch.allclose(fused.logits[0], plain.logits[0])  # an open gate changes the answer


def test_fused_generate_matches_a_hand_written_greedy_loop(pair):
    ids = prompt_ids(1, 11, seed=3)
    out = _greedy(pair, input_ids=ids)
    # By hand: prefill both on prompt[:-1], fuse every mapped layer, then a greedy loop on the cache.
    recv, shr = pair.receiver, pair.sharer
    with torch.no_grad():
        cache = recv.model(input_ids=ids[:, :-1], use_cache=True).cache
        sharer_layers = kv.layers(shr.model(input_ids=ids[:, :-1], use_cache=True).cache)
        for t, s in pair.config.layer_map.items():
            k, v = pair.fusers.fusers[str(t)](sharer_layers[s], kv.layers(cache)[t])
            kv.replace_layer(cache, t, k, v)
        seq, logits = ids, []
        for _ in range(6):
            step = recv(input_ids=seq[:, -1:], cache=cache, use_cache=True)
            logits.append(step.logits[:, -1])
            seq = torch.cat([seq, step.logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(out.sequences, seq)
    for a, b in zip(out.logits, logits, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_left_padded_batch_matches_each_example_alone(pair):
    a, b = prompt_ids(1, 7, seed=1)[0], prompt_ids(1, 12, seed=2)[0]
    ids = torch.zeros(2, 12, dtype=torch.long)
    mask = torch.zeros(2, 12, dtype=torch.long)
    ids[0, 5:], mask[0, 5:] = a, 1
    ids[1], mask[1] = b, 1
    batch = _greedy(pair, input_ids=ids, attention_mask=mask)
    for row, single_ids in enumerate((a, b)):
        alone = _greedy(pair, input_ids=single_ids[None])
        assert torch.equal(batch.sequences[row, 12:], alone.sequences[0, len(single_ids) :])
        torch.testing.assert_close(batch.logits[0][row], alone.logits[0][0], rtol=1e-4, atol=1e-4)


def test_only_fuser_parameters_receive_gradients(pair):
    pair.train()
    assert not pair.receiver.training and not pair.sharer.training and pair.fusers.training
    ids = prompt_ids(2, 14)
    inputs = pair.inputs_from_ids(ids)
    labels = ids.clone()
    labels[:, :9] = -100
    before = {n: p.clone() for n, p in pair.receiver.named_parameters()}
    loss = pair(inputs, prompt_length=9, labels=labels).loss
    loss.backward()
    assert all(p.grad is None for p in pair.receiver.parameters())
    assert all(p.grad is None for p in pair.sharer.parameters())
    grads = [p.grad for p in pair.fusers.parameters()]
    assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)
    torch.optim.SGD(pair.fuser_parameters(), lr=1.0).step()
    assert all(torch.equal(p, before[n]) for n, p in pair.receiver.named_parameters())


def test_forward_scores_the_continuation_like_generate(pair):
    ids = prompt_ids(1, 10, seed=5)
    inputs = pair.inputs_from_ids(ids)
    with torch.no_grad():
        logits = pair(inputs, prompt_length=10).logits  # prompt = all 10 tokens: one position scored
    first = _greedy(pair, input_ids=ids).logits[0]
    torch.testing.assert_close(logits[:, -1], first, rtol=1e-5, atol=1e-5)


def test_input_errors_are_clear(pair):
    with pytest.raises(ValueError, match="either chat messages or input_ids"):
        pair.generate()
    with pytest.raises(ValueError, match="receiver tokenizer"):
        pair.generate("hello")
    with pytest.raises(ValueError, match="outside the sharer's vocabulary"):
        pair.generate(input_ids=torch.tensor([[5, 500, 7]]))
    with pytest.raises(ValueError, match="must all be"):
        C2CInputs(torch.ones(1, 3), torch.ones(1, 3), torch.ones(1, 4), torch.ones(1, 4), torch.ones(1, 3))
    with pytest.raises(ValueError, match="prompt_length"):
        pair(pair.inputs_from_ids(prompt_ids(1, 4)), prompt_length=0)


def test_models_with_other_shapes_are_refused(pair):
    from tiny import tiny_receiver

    with pytest.raises(ValueError, match="num_hidden_layers: 3 != 4"):
        C2CModel(tiny_receiver(num_hidden_layers=4), pair.sharer, pair.fusers, pair.config).check_pair()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_batched_fusion_generates_what_each_fuser_in_turn_generates(pair, dtype, monkeypatch):
    # The default (stacked, batched) fuse path against the per-layer one, through generate.
    pair.receiver.to(dtype), pair.sharer.to(dtype), pair.fusers.to(dtype)
    ids = prompt_ids(3, 14, seed=5)
    batched = _greedy(pair, input_ids=ids)
    each_forward = functools.partial(FuserStack.forward, pair.fusers, batched=False)
    monkeypatch.setattr(pair.fusers, "forward", each_forward)
    each = _greedy(pair, input_ids=ids)
    assert torch.equal(batched.sequences, each.sequences)
    tolerance = 1e-5 if dtype == torch.float32 else 5e-2
    for a, b in zip(batched.logits, each.logits, strict=True):
        torch.testing.assert_close(a.float(), b.float(), rtol=tolerance, atol=tolerance)


def _self_pairs(receiver) -> tuple[C2CModel, C2CModel]:
    """The receiver as its own sharer, and the same pair with the sharer a separate copy of it (same fusers)."""
    fuser = FuserConfig(**{**SMALL_FUSER.__dict__, "gate_init": 3.0})
    own = C2CModel.from_models(receiver, receiver, fuser=fuser, seed=0).eval()
    twin = C2CModel.from_models(receiver, copy.deepcopy(receiver), fuser=fuser, seed=0).eval()
    return own, twin


def _base_calls(model) -> list[int]:
    calls: list[int] = []
    model.base_model.register_forward_hook(lambda *_: calls.append(1))
    return calls


@pytest.mark.parametrize("window", [None, 4])
def test_the_receiver_as_its_own_sharer_prefills_once(window):
    """The `self` control reuses the receiver's prefill as its sharer's cache: the same fused cache,
    loss and fuser gradients as a separate copy of the receiver gives, with one prefill instead of
    two; a sliding window shorter than the prompt (layers keep fewer tokens than fusion reads) prefills again."""
    sliding = {"use_sliding_window": True, "sliding_window": window, "layer_types": ["sliding_attention"] * 3}
    receiver = tiny_receiver(**(sliding if window else {}))
    own, twin = _self_pairs(receiver)
    ids = prompt_ids(2, 12)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # a left-padded row
    inputs = own.inputs_from_ids(ids, mask)
    calls = _base_calls(receiver)
    with torch.no_grad():
        fused = kv.layers(own.fuse(inputs))
    assert len(calls) == (2 if window else 1)
    with torch.no_grad():
        reference = kv.layers(twin.fuse(inputs))
    for (k, v), (k_ref, v_ref) in zip(fused, reference, strict=True):
        torch.testing.assert_close(k, k_ref, rtol=0, atol=0)
        torch.testing.assert_close(v, v_ref, rtol=0, atol=0)

    labels = ids.clone()
    labels[:, :9] = -100
    losses = []
    for pair in (own, twin):
        pair.train()
        torch.manual_seed(0)  # the same Gumbel gate noise for both
        loss = pair(pair.inputs_from_ids(ids, mask), prompt_length=9, labels=labels).loss
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)
    for p_own, p_twin in zip(own.fusers.parameters(), twin.fusers.parameters(), strict=True):
        torch.testing.assert_close(p_own.grad, p_twin.grad, rtol=1e-6, atol=1e-7)


def test_rows_repeating_a_prompt_share_its_fusion(pair):
    """Scoring several continuations of one prompt (the choices of a question) in eval mode prefills
    and fuses the prompt once, and gives the logits each row gives in a batch of its own."""
    from cache2cache.evaluation.scoring import append_continuations

    a, b = prompt_ids(1, 7, seed=1)[0], prompt_ids(1, 10, seed=2)[0]
    ids = torch.zeros(2, 10, dtype=torch.long)
    mask = torch.zeros(2, 10, dtype=torch.long)
    ids[0, 3:], mask[0, 3:] = a, 1
    ids[1], mask[1] = b, 1
    prompts = pair.inputs_from_ids(ids, mask)
    rows, tails = [0, 1, 0, 0], [[5, 6], [7], [8, 9, 10], [5, 11]]
    batch = append_continuations(prompts, rows, tails, pad_id=0)
    sharer_rows: list[int] = []
    pair.sharer.base_model.register_forward_hook(
        lambda module, args, kwargs, out: sharer_rows.append(len(kwargs["input_ids"])), with_kwargs=True
    )
    with torch.no_grad():
        together = pair(batch, 10).logits
        assert sharer_rows == [2]  # two distinct prompts, fused once each
        for i, (row, tail) in enumerate(zip(rows, tails, strict=True)):
            alone = pair(append_continuations(prompts, [row], [tail], pad_id=0), 10).logits[0]
            torch.testing.assert_close(together[i, : len(tail) + 1], alone[: len(tail) + 1], rtol=1e-5, atol=1e-5)
    pair.train()
    sharer_rows.clear()
    pair(batch, 10)
    assert sharer_rows == [4]  # training keeps every row (its gates draw noise per row)


def test_distinct_rows_maps_back_to_the_batch(pair):
    prompts = pair.inputs_from_ids(prompt_ids(3, 6))
    assert prompts.distinct_rows() is None
    batch = prompts.rows(torch.tensor([2, 0, 2, 1, 0]))
    distinct, inverse = batch.distinct_rows()
    assert distinct.input_ids.shape[0] == 3
    again = distinct.rows(inverse)
    for name in ("input_ids", "attention_mask", "sharer_input_ids", "sharer_attention_mask", "fusion_mask"):
        assert torch.equal(getattr(again, name), getattr(batch, name))
