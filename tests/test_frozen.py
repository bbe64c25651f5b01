"""`frozen.freeze`: frozen models whose output layer always gets its input in the standard layout,
with the same logits as before."""

from __future__ import annotations

import torch

from cache2cache import C2CModel
from cache2cache.frozen import freeze, has_standard_layout
from tiny import tiny_receiver, tiny_sharer


def test_standard_layout_is_stricter_than_contiguous():
    x = torch.randn(3, 9, 4)
    assert has_standard_layout(x) and has_standard_layout(torch.randn(5)) and has_standard_layout(torch.randn(()))
    last = torch.randn(1, 9, 4)[:, -1:]  # is_contiguous() ignores the size-1 dimensions' strides
    assert last.is_contiguous() and not has_standard_layout(last)
    assert not has_standard_layout(x[:, -2:]) and not has_standard_layout(x.transpose(1, 2))
    assert has_standard_layout(last.clone(memory_format=torch.contiguous_format))


def _head_inputs(model) -> list[torch.Tensor]:
    """Records what the output layer receives (a pre-hook registered after freeze's runs after it)."""
    seen: list[torch.Tensor] = []
    model.get_output_embeddings().register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    return seen


def test_the_output_layer_gets_standard_layout_and_the_same_logits():
    model = freeze(tiny_receiver())
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    seen = _head_inputs(model)
    ids = torch.randint(3, 96, (3, 11))
    with torch.no_grad():
        full = model(input_ids=ids).logits
        for keep in (1, 4):
            kept = model(input_ids=ids, logits_to_keep=keep).logits
            assert has_standard_layout(seen[-1]) and seen[-1].shape == (3, keep, 64)
            # float32 rounding only: a matmul over fewer rows may take another kernel (AVX2: up to 1e-7 apart)
            torch.testing.assert_close(kept, full[:, -keep:], rtol=1e-5, atol=1e-6)
        out = model.generate(input_ids=ids, max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert all(has_standard_layout(x) for x in seen)
    assert out.shape == (3, 14)


def test_freezing_twice_hooks_once_and_the_pair_freezes_its_models():
    model = tiny_receiver()
    head = model.get_output_embeddings()
    freeze(model)
    hooks = len(head._forward_pre_hooks)
    assert freeze(model) is model and len(head._forward_pre_hooks) == hooks == 1
    pair = C2CModel.from_models(tiny_receiver(), tiny_sharer())
    for frozen in (pair.receiver, pair.sharer):
        assert len(frozen.get_output_embeddings()._forward_pre_hooks) == 1
        assert not any(p.requires_grad for p in frozen.parameters())
