"""Checkpoints: our two-file format, the published layout (import and export), strict loading."""

from __future__ import annotations

import json
import os

import pytest
import torch

from cache2cache import C2CModel
from cache2cache.published import export_published
from conftest import prompt_ids


def _out(model, ids):
    return model.generate(
        input_ids=ids, max_new_tokens=5, do_sample=False, return_dict_in_generate=True, output_logits=True
    )


def _assert_same_generation(a, b, ids):
    x, y = _out(a, ids), _out(b, ids)
    assert torch.equal(x.sequences, y.sequences)
    for la, lb in zip(x.logits, y.logits, strict=True):
        torch.testing.assert_close(la, lb, rtol=0, atol=0)


def test_save_then_load_gives_identical_outputs_and_exactly_two_files(pair, tmp_path):
    with torch.no_grad():
        for p in pair.fusers.parameters():
            p.add_(0.01 * torch.randn_like(p))  # not the init: proves weights really load
    pair.save_pretrained(tmp_path / "ckpt")
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["c2c_config.json", "fuser.safetensors"]
    loaded = C2CModel.from_pretrained(tmp_path / "ckpt", receiver=pair.receiver, sharer=pair.sharer)
    _assert_same_generation(pair, loaded, prompt_ids(2, 9))
    config = json.loads((tmp_path / "ckpt" / "c2c_config.json").read_text())
    assert config["format_version"] == 1 and config["receiver"]["num_hidden_layers"] == 3
    assert config["layer_map"] == {"0": 0, "1": 0, "2": 1}


def test_loading_onto_another_pair_names_both_sides(pair, tmp_path):
    from tiny import tiny_receiver

    pair.save_pretrained(tmp_path)
    with pytest.raises(
        ValueError,
        match=r"(?s)receiver: the fusers were built for an unnamed model \(qwen3, 3 layers\).*num_key_value_heads: 2 != 4.*Fix:",
    ):
        C2CModel.from_pretrained(tmp_path, receiver=tiny_receiver(num_key_value_heads=4), sharer=pair.sharer)


def test_corrupt_or_mismatched_weights_fail_clearly(pair, tmp_path):
    pair.save_pretrained(tmp_path)
    (tmp_path / "fuser.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="corrupt"):
        C2CModel.from_pretrained(tmp_path, receiver=pair.receiver, sharer=pair.sharer)
    cfg = json.loads((tmp_path / "c2c_config.json").read_text())
    cfg["format_version"] = 99
    (tmp_path / "c2c_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="format_version 99"):
        C2CModel.from_pretrained(tmp_path, receiver=pair.receiver, sharer=pair.sharer)


def test_published_layout_round_trip_is_strict_and_identical(pair, tmp_path):
    export_published(pair, tmp_path / "pair")
    final = tmp_path / "pair" / "final"
    assert sorted(os.listdir(final)) == sorted(
        ["projector_config.json"] + [f"projector_{i}.{ext}" for i in range(3) for ext in ("pt", "json")]
    )
    assert json.loads((final / "projector_config.json").read_text()) == {
        "0": {"1": {"0": [[0, 0]], "1": [[0, 1]], "2": [[1, 2]]}}
    }
    meta = json.loads((final / "projector_0.json").read_text())
    assert meta["class"] == "C2CProjector" and meta["init_args"]["dtype"] == {
        "__type__": "torch.dtype",
        "value": "float32",
    }
    for where in (tmp_path / "pair", final):  # the pair folder or its final/
        loaded = C2CModel.from_pretrained(where, receiver=pair.receiver, sharer=pair.sharer)
        _assert_same_generation(pair, loaded, prompt_ids(1, 8))


def test_published_layout_missing_key_wrong_shape_and_pickled_code_are_refused(pair, tmp_path):
    export_published(pair, tmp_path)
    final = tmp_path / "final"
    good = torch.load(final / "projector_1.pt", weights_only=True)

    state = dict(good)
    del state["key_in.bias"]
    torch.save(state, final / "projector_1.pt")
    with pytest.raises(ValueError, match=r"missing keys \(1\): key_in.bias"):
        C2CModel.from_pretrained(tmp_path, receiver=pair.receiver, sharer=pair.sharer)

    state = dict(good)
    state["value_scalar_head.weight"] = torch.zeros(5, 32)
    torch.save(state, final / "projector_1.pt")
    with pytest.raises(ValueError, match=r"wrong shapes.*value_scalar_head.weight: file \(5, 32\) != model \(2, 32\)"):
        C2CModel.from_pretrained(tmp_path, receiver=pair.receiver, sharer=pair.sharer)

    torch.save({"weights": good, "payload": _Payload()}, final / "projector_1.pt")
    with pytest.raises(ValueError, match="pickled objects or code"):
        C2CModel.from_pretrained(tmp_path, receiver=pair.receiver, sharer=pair.sharer)
    assert not _Payload.ran


def test_published_checkpoint_for_other_kv_shapes_is_refused(pair, tmp_path):
    from tiny import tiny_sharer

    export_published(pair, tmp_path)
    with pytest.raises(ValueError, match=r"source_num_heads: checkpoint 3 != model 2"):
        C2CModel.from_pretrained(tmp_path, receiver=pair.receiver, sharer=tiny_sharer(num_key_value_heads=2))


def test_missing_folder_and_bad_hub_id_fail_clearly(tmp_path, pair):
    with pytest.raises(FileNotFoundError, match="holds no C2C checkpoint"):
        C2CModel.from_pretrained(tmp_path, receiver=pair.receiver, sharer=pair.sharer)
    with pytest.raises(FileNotFoundError, match="neither an existing folder nor a hub repo id"):
        C2CModel.from_pretrained("no/such/dir/here", receiver=pair.receiver, sharer=pair.sharer)
    with pytest.raises(FileNotFoundError, match="could not download 'nobody-xyz/none'"):
        C2CModel.from_pretrained("nobody-xyz/none", subfolder="a", receiver=pair.receiver, sharer=pair.sharer)


class _Payload:
    """A pickled object whose unpickling would run code."""

    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran():
    _Payload.ran = True
    return None
