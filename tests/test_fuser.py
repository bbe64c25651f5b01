"""C2CFuser: the published math, parameter counts, keys, gate and temperature behaviour."""

from __future__ import annotations

import math

import pytest
import torch

import cache2cache.fuser as fuser_module
from cache2cache import C2CFuser, FuserStack, count_parameters


def _kv(b: int, h: int, n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, h, n, d, generator=g), torch.randn(b, h, n, d, generator=g)


def small(**kw) -> C2CFuser:
    torch.manual_seed(0)
    return C2CFuser(
        source_dim=8, target_dim=16, source_num_heads=3, target_num_heads=2, hidden_dim=32, intermediate_dim=24, **kw
    )


def test_parameter_count_matches_the_paper_for_qwen3_0_6b_from_qwen2_5_0_5b():
    # Receiver Qwen3-0.6B: 28 layers, 8 KV heads x 128; sharer Qwen2.5-0.5B: 2 KV heads x 64.
    with torch.device("meta"):
        fuser = C2CFuser(source_dim=64, target_dim=128, source_num_heads=2, target_num_heads=8)
        assert count_parameters(fuser) == 17_066_002
        stack = FuserStack({t: 0 for t in range(28)}, {t: C2CFuser(64, 128, 2, 8) for t in range(28)})
    assert count_parameters(stack) == 477_848_056  # the paper's "478M"


def test_parameter_count_follows_the_closed_form():
    h, i, hs, ds, ht, dt = 32, 24, 3, 8, 2, 16
    fuser = small()
    inp, out = hs * ds + ht * dt, ht * dt
    # per path: in Linear, mlp1 block, proj_mlp2 block (L-2 = 1), scalar_mlp2 block (inner = h), heads
    path = (inp * h + h) + (h + 2 * h * i) + (h + 2 * h * i) + (h + 2 * h * h) + (h * ht + ht) + (h * out + out)
    assert count_parameters(fuser) == 2 * path + 2


def test_state_dict_keys_are_the_published_ones():
    fuser = C2CFuser(8, 16, 3, 2, hidden_dim=32, intermediate_dim=32, num_layers=4)
    keys = set(fuser.state_dict())
    expected = {"key_gate_logit", "value_gate_logit", "gate_temperature"}
    for p in ("key_", "value_"):
        expected |= {
            f"{p}in.weight",
            f"{p}in.bias",
            f"{p}scalar_head.weight",
            f"{p}scalar_head.bias",
            f"{p}proj_out.weight",
            f"{p}proj_out.bias",
        }
        for block in ("mlp1.blocks.0", "scalar_mlp2.blocks.0", "proj_mlp2.blocks.0", "proj_mlp2.blocks.1"):
            expected |= {f"{p}{block}.norm.weight", f"{p}{block}.w1.weight", f"{p}{block}.w2.weight"}
    assert keys == expected


def test_forward_matches_a_hand_computation():
    fuser = small(gate_init=2.0).eval()
    (ks, vs), (kt, vt) = _kv(2, 3, 5, 8, 1), _kv(2, 2, 5, 16, 2)
    k, v = fuser((ks, vs), (kt, vt))

    def block(x, blk):
        return x + blk.w2(torch.nn.functional.gelu(blk.w1(blk.norm(x))))

    xs, xt = ks.transpose(1, 2).reshape(2, 5, 24), kt.transpose(1, 2).reshape(2, 5, 32)
    z = block(fuser.key_in(torch.cat([xs, xt], -1)), fuser.key_mlp1.blocks[0])
    p = fuser.key_proj_out(block(z, fuser.key_proj_mlp2.blocks[0])).reshape(2, 5, 2, 16).transpose(1, 2)
    w = torch.sigmoid(fuser.key_scalar_head(block(z, fuser.key_scalar_mlp2.blocks[0]))).permute(0, 2, 1)[..., None]
    torch.testing.assert_close(k, kt + w * p)  # gate open (logit 2 > 0): g = 1
    assert v.shape == vt.shape


def test_closed_gate_and_zero_init_are_the_identity():
    (ks, vs), (kt, vt) = _kv(1, 3, 4, 8, 1), _kv(1, 2, 4, 16, 2)
    for fuser in (small().eval(), small(zero_init=True, gate_init=3.0).eval()):
        k, v = fuser((ks, vs), (kt, vt))
        torch.testing.assert_close(k, kt, rtol=0, atol=0)
        torch.testing.assert_close(v, vt, rtol=0, atol=0)


def test_training_gate_is_stochastic_and_eval_gate_is_hard():
    fuser = small(gate_init=0.0)
    (ks, vs), (kt, vt) = _kv(1, 3, 6, 8, 1), _kv(1, 2, 6, 16, 2)
    fuser.train()
    a, _ = fuser((ks, vs), (kt, vt))
    b, _ = fuser((ks, vs), (kt, vt))
    assert not torch.equal(a, b)  # Gumbel noise per (batch, head, token)
    fuser.eval()
    torch.testing.assert_close(fuser((ks, vs), (kt, vt))[0], kt, rtol=0, atol=0)


@pytest.mark.parametrize("schedule", ["geometric", "linear"])
def test_temperature_anneals_from_initial_to_final(schedule):
    fuser = small(initial_temperature=1.0, final_temperature=0.001, anneal_steps=100, anneal_schedule=schedule)
    fuser.update_temperature(50)
    mid = float(fuser.gate_temperature)
    expected = math.sqrt(0.001) if schedule == "geometric" else (1.0 + 0.001) / 2
    assert mid == pytest.approx(expected, rel=1e-5)
    fuser.update_temperature(1000)
    assert float(fuser.gate_temperature) == pytest.approx(0.001, rel=1e-5)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="num_layers >= 3"):
        small(num_layers=2)
    with pytest.raises(ValueError, match="anneal_schedule"):
        small(anneal_schedule="cosine")
    with pytest.raises(ValueError, match="same tokens"):
        small()(_kv(1, 3, 4, 8, 0), _kv(1, 2, 5, 16, 0))


def test_stack_fuses_trailing_tokens_of_a_shorter_receiver_layer_and_honours_the_mask():
    stack = FuserStack({0: 0, 1: 0}, {0: small(gate_init=3.0), 1: small(gate_init=3.0)}).eval()
    sharer = [_kv(1, 3, 6, 8, 1)]
    full, windowed = _kv(1, 2, 6, 16, 2), _kv(1, 2, 3, 16, 3)  # layer 1 keeps only the last 3 tokens
    mask = torch.tensor([[False, True, True, True, False, True]])
    fused = stack(sharer, [full, windowed], mask)
    expected = stack.fusers["1"]((sharer[0][0][..., 3:, :], sharer[0][1][..., 3:, :]), windowed)[0]
    torch.testing.assert_close(fused[1][0][..., [0, 2], :], expected[..., [0, 2], :])
    torch.testing.assert_close(fused[1][0][..., 1, :], windowed[0][..., 1, :])  # mask False: untouched
    torch.testing.assert_close(fused[0][0][..., 0, :], full[0][..., 0, :])
    assert not torch.allclose(fused[0][0][..., 1, :], full[0][..., 1, :])


@pytest.mark.parametrize("paths_per_group", ["all", "one"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_batched_stack_equals_each_fuser_in_turn(dtype, paths_per_group, monkeypatch):
    # Three layers, one of them with a closed V gate (skipped by the batched path), a padded row
    # (columns no row fuses are skipped) and a strength below 1; the paths run all in one batched
    # matmul, or one per matmul (the CPU's grouping by activation size, forced small).
    if paths_per_group == "one":
        monkeypatch.setattr(fuser_module, "ACTIVATION_BYTES", 1)
    torch.manual_seed(0)
    fusers = {
        t: C2CFuser(8, 16, 3, 2, hidden_dim=32, intermediate_dim=24, num_layers=4, gate_init=3.0) for t in range(3)
    }
    fusers[1].value_gate_logit.data.fill_(-1.0)
    for fuser in fusers.values():  # trained norms are not all ones; the batched path folds them into w1
        for module in fuser.modules():
            if isinstance(module, torch.nn.RMSNorm):
                module.weight.data.uniform_(0.5, 1.5)
    stack = FuserStack({0: 0, 1: 1, 2: 1}, fusers).eval().to(dtype)
    sharer = [tuple(x.to(dtype) for x in _kv(2, 3, 7, 8, seed)) for seed in (1, 2)]
    receiver = [tuple(x.to(dtype) for x in _kv(2, 2, 7, 16, seed)) for seed in (3, 4, 5)]
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, :3] = False
    for fusion_mask in (torch.ones(2, 7, dtype=torch.bool), mask):
        with torch.no_grad():
            each = stack(sharer, receiver, fusion_mask, strength=0.7, batched=False)
            batched = stack(sharer, receiver, fusion_mask, strength=0.7)
        tolerance = 1e-5 if dtype == torch.float32 else 2e-2
        for t in each:
            for a, b in zip(each[t], batched[t], strict=True):
                torch.testing.assert_close(b, a, atol=tolerance, rtol=tolerance)
        assert torch.equal(batched[1][1], receiver[1][1])  # the closed gate adds nothing


def test_ffn_block_runs_the_fused_rms_norm_under_autocast():
    """The norm's float32 weight meets autocast's bf16 input without torch's 'Mismatch dtype' fallback
    warning, and in float32 the block is exactly pre-norm with nn.RMSNorm."""
    import warnings

    from cache2cache.fuser import FFNBlock

    torch.manual_seed(0)
    block = FFNBlock(16, 24, 0.0).eval()
    block.norm.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(3, 16)
    expected = x + block.w2(torch.nn.functional.gelu(block.w1(block.norm(x))))
    assert torch.equal(block(x), expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = block(torch.nn.Linear(16, 16)(x))
    assert out.dtype == torch.bfloat16 and out.shape == (3, 16)
