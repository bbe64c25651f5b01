"""Fusion control at inference: strength, layer subset and proportion, each from the receiver alone
(token-identical, allclose logits) to plain C2C, with an interior point that differs from both ends."""

from __future__ import annotations

import pytest
import torch

from cache2cache import FusionControl, kv
from cache2cache.cli.main import main
from cache2cache.evaluation.config import load_eval_config
from cache2cache.evaluation.runner import run_eval
from conftest import prompt_ids
from test_eval_runner import config, tiny_eval_pair

pytestmark = pytest.mark.usefixtures("one_thread")

IDS = prompt_ids(2, 10, seed=4)


def _greedy(model, **kw):
    return model.generate(
        input_ids=IDS, max_new_tokens=4, do_sample=False, return_dict_in_generate=True, output_logits=True, **kw
    )


@pytest.fixture
def ends(pair):
    """The receiver alone and plain C2C on IDS."""
    return _greedy(pair.receiver), _greedy(pair)


def _assert_same(a, b):
    assert torch.equal(a.sequences, b.sequences)
    for x, y in zip(a.logits, b.logits, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


def _assert_differs(a, b):
    assert not torch.allclose(a.logits[0], b.logits[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("name", "receiver_end", "c2c_end", "interior"),
    [
        ("fusion_strength", 0.0, 1.0, 0.5),
        ("fuse_layers", [], [0, 1, 2], [2]),
        ("fuse_proportion", 0.0, 1.0, 0.5),
    ],
)
def test_each_control_runs_from_the_receiver_alone_to_c2c(pair, ends, name, receiver_end, c2c_end, interior):
    receiver, c2c = ends
    assert sorted(pair.config.layer_map) == [0, 1, 2]
    _assert_same(_greedy(pair, **{name: receiver_end}), receiver)
    _assert_same(_greedy(pair, **{name: c2c_end}), c2c)
    middle = _greedy(pair, **{name: interior})
    _assert_differs(middle, receiver)
    _assert_differs(middle, c2c)


def test_strength_scales_every_fused_delta(pair):
    inputs = pair.inputs_from_ids(IDS[:, :-1])
    base = kv.layers(pair.fuse(inputs, enabled=False))
    full = kv.layers(pair.fuse(inputs))
    half = kv.layers(pair.fuse(inputs, control=FusionControl(strength=0.5)))
    for (kr, vr), (kf, vf), (kh, vh) in zip(base, full, half, strict=True):
        torch.testing.assert_close(kh - kr, 0.5 * (kf - kr), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(vh - vr, 0.5 * (vf - vr), rtol=1e-5, atol=1e-5)


def test_a_layer_subset_fuses_those_layers_only(pair):
    inputs = pair.inputs_from_ids(IDS[:, :-1])
    base, full = kv.layers(pair.fuse(inputs, enabled=False)), kv.layers(pair.fuse(inputs))
    some = kv.layers(pair.fuse(inputs, control=FusionControl(layers=(2, 0))))
    for layer in range(3):
        expected = full[layer] if layer in (0, 2) else base[layer]
        torch.testing.assert_close(some[layer], expected, rtol=0, atol=0)


def test_proportion_keeps_the_last_tokens_of_each_row():
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0], [1, 0, 1, 0, 1, 1]], dtype=torch.bool)
    half = FusionControl(proportion=0.5).fusion_mask(mask)
    assert half.int().tolist() == [[0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 1, 1]]  # floor(p * n) per row
    assert FusionControl(proportion=1.0).fusion_mask(mask) is mask
    assert not FusionControl(proportion=0.0).fusion_mask(mask).any()


def test_ablated_sets_each_fused_token_to_its_row_mean():
    g = torch.Generator().manual_seed(0)
    k, v = torch.randn(2, 3, 5, 4, generator=g), torch.randn(2, 3, 5, 4, generator=g)
    mask = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    ((ka, va),) = FusionControl(ablate_sharer=True).ablated([(k, v)], mask)
    for x, xa in ((k, ka), (v, va)):
        mean = x[0, :, 1:4].mean(dim=1)  # (H, D)
        for t in (1, 2, 3):
            torch.testing.assert_close(xa[0, :, t], mean)
        torch.testing.assert_close(xa[0, :, [0, 4]], x[0, :, [0, 4]], rtol=0, atol=0)
        torch.testing.assert_close(xa[1], x[1], rtol=0, atol=0)  # nothing fused: unchanged


def test_ablate_sharer_fuses_the_sharer_mean_and_changes_c2c(pair):
    """The fused cache equals the fusers run on the sharer cache averaged by hand over the fused tokens."""
    inputs = pair.inputs_from_ids(IDS[:, :-1])
    ablated = kv.layers(pair.fuse(inputs, control=FusionControl(ablate_sharer=True)))
    receiver = kv.layers(pair.fuse(inputs, enabled=False))
    sharer = kv.layers(kv.prefill(pair.sharer, inputs.input_ids, inputs.attention_mask))
    mask = inputs.fusion_mask  # every token of IDS[:, :-1]: a shared tokenizer
    assert bool(mask.all())
    averaged = [(k.mean(2, keepdim=True).expand_as(k), v.mean(2, keepdim=True).expand_as(v)) for k, v in sharer]
    by_hand = pair.fusers(averaged, receiver, mask)
    for layer, expected in by_hand.items():
        torch.testing.assert_close(ablated[layer], expected, rtol=1e-5, atol=1e-5)
    plain = kv.layers(pair.fuse(inputs))
    assert not torch.allclose(plain[0][0], ablated[0][0], atol=1e-4)


def test_bad_control_values_are_refused_with_the_fix(pair):
    with pytest.raises(ValueError, match="fusion_strength must be a finite number >= 0"):
        pair.generate(input_ids=IDS, fusion_strength=-1)
    with pytest.raises(ValueError, match=r"fuse_proportion must be a number in \[0, 1\]"):
        pair.generate(input_ids=IDS, fuse_proportion=1.5)
    with pytest.raises(
        ValueError, match=r"fuse_layers \[7\] have no fuser: this checkpoint fuses receiver layers \[0, 1, 2\]"
    ):
        pair.generate(input_ids=IDS, fuse_layers=[0, 7])
    with pytest.raises(ValueError, match="list of receiver layer indices"):
        pair.generate(input_ids=IDS, fuse_layers="0,1")
    with pytest.raises(ValueError, match="ablate_sharer and include_response"):
        FusionControl(ablate_sharer=True, include_response=True)
    with pytest.raises(ValueError, match="ablate_sharer must be True or False"):
        FusionControl(ablate_sharer="yes")  # type: ignore[arg-type]


def test_cli_flags_reach_generate(generate_cli_kwargs, capsys):
    seen = generate_cli_kwargs
    assert (
        main(["generate", "hi", "--fusion_strength", "0.25", "--fuse_layers", "1,2", "--fuse_proportion", "0.5"]) == 0
    )
    assert (seen["fusion_strength"], seen["fuse_layers"], seen["fuse_proportion"]) == (0.25, [1, 2], 0.5)
    assert main(["generate", "hi", "--fuse_layers", ""]) == 0 and seen["fuse_layers"] == []
    for flag, value in (("--fusion_strength", "-1"), ("--fuse_proportion", "2"), ("--fuse_layers", "a,b")):
        with pytest.raises(SystemExit):
            main(["generate", "hi", flag, value])
        assert f"argument {flag}" in capsys.readouterr().err


def test_eval_flags_parse_and_are_checked():
    cfg = load_eval_config(None, {"task": "x.jsonl", "receiver": "r", "sharer": "s", "fuser": "f", "modes": "receiver,c2c",
                                  "fusion_strength": "0.5", "fuse_layers": "0,2", "fuse_proportion": "0.25"}, check_files=False)  # fmt: skip
    assert (cfg.fusion_strength, cfg.fuse_layers, cfg.fuse_proportion) == (0.5, [0, 2], 0.25)
    with pytest.raises(ValueError) as err:
        load_eval_config(None, {"task": "x.jsonl", "receiver": "r", "sharer": "s", "modes": "receiver",
                                "fusion_strength": "-2", "fuse_proportion": "3"}, check_files=False)  # fmt: skip
    message = str(err.value)
    assert "fusion_strength: got -2.0" in message and "fuse_proportion: got 3.0" in message
    assert "control the c2c mode only" in message
    with pytest.raises(ValueError) as err:
        load_eval_config(None, {"task": "x.jsonl", "receiver": "r", "sharer": "s", "modes": "receiver",
                                "ablate_sharer": "true"}, check_files=False)  # fmt: skip
    assert "ablate_sharer: applies to the c2c and self modes, which --modes lacks" in str(err.value)


@pytest.mark.parametrize("method", ["generate", "loglik"])
def test_eval_c2c_mode_at_strength_zero_is_the_receiver(tmp_path, method):
    """Through `run_eval`, timed item and batched items alike."""
    model = tiny_eval_pair("aligned")
    cfg = config(tmp_path, modes=["receiver", "c2c"], answer_method=method, fusion_strength=0.0, latency_items=1)
    records = run_eval(cfg, model=model, progress=False).records
    receiver, c2c = ([r for r in records if r["mode"] == mode] for mode in ("receiver", "c2c"))
    if method == "generate":
        assert [r["output"] for r in c2c] == [r["output"] for r in receiver]
    else:
        for a, b in zip(c2c, receiver, strict=True):
            assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)
    with pytest.raises(ValueError, match="have no fuser"):
        run_eval(config(tmp_path / "other", modes=["c2c"], fuse_layers=[9]), model=model, progress=False)


def test_eval_ablate_sharer_changes_c2c_scores_only(tmp_path):
    model = tiny_eval_pair("aligned")
    common = {"modes": ["receiver", "c2c"], "answer_method": "loglik", "limit": 3, "latency_items": 1}
    plain = run_eval(config(tmp_path / "plain", **common), model=model, progress=False).records
    ablated = run_eval(config(tmp_path / "ablated", ablate_sharer=True, **common), model=model, progress=False).records
    for a, b in zip(plain, ablated, strict=True):
        if a["mode"] == "receiver":
            assert a["scores"] == pytest.approx(b["scores"], abs=1e-6)
    c2c = [(a["scores"], b["scores"]) for a, b in zip(plain, ablated, strict=True) if a["mode"] == "c2c"]
    assert any(x != pytest.approx(y, abs=1e-4) for x, y in c2c)


def test_a_run_folder_older_than_the_control_fields_resumes(tmp_path):
    import yaml

    model = tiny_eval_pair("aligned")
    cfg = config(tmp_path, modes=["receiver", "c2c"], answer_method="loglik", limit=2, latency_items=0)
    run_eval(cfg, model=model, progress=False)  # c2c records: the fusion controls may no longer change
    saved = tmp_path / "run" / "config.yaml"
    old = {
        k: v
        for k, v in yaml.safe_load(saved.read_text()).items()
        if k not in ("fusion_strength", "fuse_layers", "fuse_proportion")
    }
    saved.write_text(yaml.safe_dump(old))
    config_resumed = config(
        tmp_path, modes=["receiver", "c2c"], answer_method="loglik", limit=2, latency_items=0, resume=True
    )
    assert len(run_eval(config_resumed, model=model, progress=False).records) == 4
    changed = config(
        tmp_path,
        modes=["receiver", "c2c"],
        answer_method="loglik",
        limit=2,
        latency_items=0,
        resume=True,
        fusion_strength=0.5,
    )
    with pytest.raises(ValueError, match="fusion_strength: 1.0 -> 0.5"):
        run_eval(changed, model=model, progress=False)
