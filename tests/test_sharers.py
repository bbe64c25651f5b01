"""Several sharers (docs/method.md §7): one receiver reading two different tiny sharers' caches, each
through its own fusers, in parallel and sequential mode; checkpoints, training, eval and inspect."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from cache2cache import C2CConfig, C2CModel, FuserConfig
from cache2cache.cli.main import main
from cache2cache.loading import load_model
from cache2cache.sharers import MultiFuserStack
from cache2cache.training import OutputOptions, TrainConfig, TrainingOptions, train_fusers
from conftest import prompt_ids
from tiny import tiny_receiver, tiny_sharer
from toy_tokenizers import bpe_tokenizer, wordlevel_tokenizer

FUSER = FuserConfig(hidden_dim=16, intermediate_dim=16, num_layers=3, dropout=0.0, gate_init=3.0)


def sharer_b(vocab_size: int = 96):
    """A second sharer unlike `tiny_sharer`: 3 layers, 2 KV heads of dim 12, other weights."""
    return tiny_sharer(vocab_size=vocab_size, seed=7, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2)


def close_gates(stack) -> None:
    for fuser in stack.fusers.values():
        fuser.key_gate_logit.data.fill_(-3.0)
        fuser.value_gate_logit.data.fill_(-3.0)


def cache_tensors(model: C2CModel, ids: torch.Tensor) -> list[torch.Tensor]:
    cache = model.fuse(model.inputs_from_ids(ids))
    return [t for layer in cache.layers for t in (layer.keys, layer.values)]


def assert_caches_close(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


@pytest.fixture
def parts():
    return tiny_receiver(), tiny_sharer(), sharer_b()


def two_sharers(parts, mode: str = "parallel") -> C2CModel:
    receiver, a, b = parts
    return C2CModel.from_models(receiver, [a, b], fuser=FUSER, sharer_mode=mode, seed=0).eval()


# ------------------------------------------------------------------------------------------ the modes


def test_the_config_records_both_sharers_and_builds_their_own_fusers(parts) -> None:
    model = two_sharers(parts)
    assert isinstance(model.fusers, MultiFuserStack) and model.sharers == [parts[1], parts[2]]
    a, b = model.config.sharers
    assert (a.sharer.num_hidden_layers, b.sharer.num_hidden_layers) == (2, 3)
    assert a.layer_map == {0: 0, 1: 0, 2: 1} and b.layer_map == {0: 0, 1: 1, 2: 2}  # terminal, per sharer
    first, second = model.fusers.stacks
    assert first.fusers["0"].source_num_heads == 3 and second.fusers["0"].source_num_heads == 2
    assert second.fusers["0"].source_dim == 12


@pytest.mark.parametrize("closed", [1, 0])
def test_parallel_with_one_gate_closed_equals_single_sharer_c2c_with_the_other(parts, closed) -> None:
    receiver, a, b = parts
    model = two_sharers(parts)
    close_gates(model.fusers.stacks[closed])
    open_sharer = [a, b][1 - closed]
    single = C2CModel.from_models(receiver, open_sharer, fuser=FUSER, seed=0).eval()
    single.fusers.load_state_dict(model.fusers.stacks[1 - closed].state_dict())
    ids = prompt_ids(batch=2, length=9)
    fused = cache_tensors(model, ids)
    assert_caches_close(fused, cache_tensors(single, ids))
    clean = model.fuse(model.inputs_from_ids(ids), enabled=False).layers[0].keys
    assert (fused[0] - clean).abs().max() > 1e-3, "the open sharer must change the cache"
    out = model.generate(input_ids=ids, max_new_tokens=6, do_sample=False)
    assert torch.equal(out, single.generate(input_ids=ids, max_new_tokens=6, do_sample=False))


def test_parallel_with_sharer_two_closed_is_bit_identical_to_the_pair(parts) -> None:
    receiver, a, _ = parts
    model = two_sharers(parts)
    close_gates(model.fusers.stacks[1])
    single = C2CModel.from_models(receiver, a, fuser=FUSER, seed=0).eval()  # same seed: same first fusers
    ids = prompt_ids(length=8)
    for x, y in zip(cache_tensors(model, ids), cache_tensors(single, ids), strict=True):
        assert torch.equal(x, y)


def test_parallel_sums_the_two_deltas(parts) -> None:
    model = two_sharers(parts)
    ids = prompt_ids(length=8)
    clean = [t for layer in model.fuse(model.inputs_from_ids(ids), enabled=False).layers for t in (layer.keys, layer.values)]  # fmt: skip
    both = cache_tensors(model, ids)
    deltas = []
    for i in range(2):
        solo = two_sharers(parts)
        solo.fusers.load_state_dict(model.fusers.state_dict())
        close_gates(solo.fusers.stacks[1 - i])
        deltas.append([f - c for f, c in zip(cache_tensors(solo, ids), clean, strict=True)])
    expected = [c + d0 + d1 for c, d0, d1 in zip(clean, *deltas, strict=True)]
    assert_caches_close(both, expected)
    assert all(d.abs().max() > 1e-3 for d in deltas[0] + deltas[1]), "each sharer must change every fused layer"


def _swapped(parts, model: C2CModel, mode: str) -> C2CModel:
    """The same two sharers and fusers, in the other order."""
    receiver, a, b = parts
    swapped = C2CModel.from_models(receiver, [b, a], fuser=FUSER, sharer_mode=mode, seed=0).eval()
    swapped.fusers.stacks[0].load_state_dict(model.fusers.stacks[1].state_dict())
    swapped.fusers.stacks[1].load_state_dict(model.fusers.stacks[0].state_dict())
    return swapped


def test_order_does_not_matter_in_parallel_mode(parts) -> None:
    model = two_sharers(parts, "parallel")
    ids = prompt_ids(batch=2, length=9)
    assert_caches_close(cache_tensors(model, ids), cache_tensors(_swapped(parts, model, "parallel"), ids))


def test_order_matters_in_sequential_mode(parts) -> None:
    model = two_sharers(parts, "sequential")
    ids = prompt_ids(batch=2, length=9)
    forward, backward = cache_tensors(model, ids), cache_tensors(_swapped(parts, model, "sequential"), ids)
    assert max((x - y).abs().max().item() for x, y in zip(forward, backward, strict=True)) > 1e-3
    parallel = two_sharers(parts, "parallel")
    parallel.fusers.load_state_dict(model.fusers.state_dict())
    assert max((x - y).abs().max().item() for x, y in zip(forward, cache_tensors(parallel, ids), strict=True)) > 1e-3


def test_sequential_feeds_the_second_sharer_the_first_ones_cache(parts) -> None:
    """Sequential = sharer 1 fused into the receiver, then sharer 2 fused into that result, by hand."""
    from cache2cache import kv

    model = two_sharers(parts, "sequential")
    inputs = model.inputs_from_ids(prompt_ids(length=8))
    receiver = kv.layers(kv.prefill(model.receiver, inputs.input_ids, inputs.attention_mask))
    shared = [kv.layers(kv.prefill(s, inputs.input_ids, inputs.attention_mask, keep_all_tokens=True)) for s in model.sharers]  # fmt: skip
    step = dict(enumerate(receiver))
    for stack, sharer_kv in zip(model.fusers.stacks, shared, strict=True):
        step |= stack(sharer_kv, [step[t] for t in range(len(receiver))], inputs.fusion_mask)
    expected = [t for t_idx in range(len(receiver)) for t in step[t_idx]]
    assert_caches_close(cache_tensors(model, inputs.input_ids), expected)


def test_fusion_control_reaches_every_sharer(parts) -> None:
    model = two_sharers(parts)
    ids = prompt_ids(length=8)
    clean = model.generate(input_ids=ids, max_new_tokens=5, do_sample=False, fuse=False)
    assert torch.equal(model.generate(input_ids=ids, max_new_tokens=5, do_sample=False, fusion_strength=0.0), clean)
    assert torch.equal(model.generate(input_ids=ids, max_new_tokens=5, do_sample=False, fuse_layers=[]), clean)


# ------------------------------------------------------------------------------------------ checkpoints


def test_save_and_load_round_trip(parts, tmp_path) -> None:
    receiver, a, b = parts
    model = two_sharers(parts, "sequential")
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c2c_config.json", "fuser.safetensors"]
    saved = json.loads((tmp_path / "c2c_config.json").read_text())
    assert saved["sharer_mode"] == "sequential" and len(saved["more_sharers"]) == 1
    assert saved["more_sharers"][0]["layer_map"] == {"0": 0, "1": 1, "2": 2}
    assert any(k.startswith("stacks.1.fusers.2.") for k in load_file(tmp_path / "fuser.safetensors"))
    loaded = C2CModel.from_pretrained(tmp_path, receiver=receiver, sharer=[a, b]).eval()
    assert loaded.config.to_dict() == model.config.to_dict()
    ids = prompt_ids(batch=2, length=9)
    assert torch.equal(loaded.generate(input_ids=ids, max_new_tokens=6, do_sample=False),
                       model.generate(input_ids=ids, max_new_tokens=6, do_sample=False))  # fmt: skip


def test_single_sharer_checkpoints_are_written_as_before(tmp_path) -> None:
    pair = C2CModel.from_models(tiny_receiver(), tiny_sharer(), fuser=FUSER, seed=0)
    pair.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "c2c_config.json").read_text())
    assert "more_sharers" not in saved and "sharer_mode" not in saved
    assert all(k.startswith("fusers.") for k in load_file(tmp_path / "fuser.safetensors"))
    assert C2CConfig.from_dict(saved).to_dict() == saved


def test_weights_of_another_sharer_count_are_refused(parts, tmp_path) -> None:
    receiver, a, b = parts
    two_sharers(parts).save_pretrained(tmp_path / "two")
    C2CModel.from_models(receiver, a, fuser=FUSER, seed=0).save_pretrained(tmp_path / "one")
    (tmp_path / "one" / "fuser.safetensors").replace(tmp_path / "two" / "fuser.safetensors")
    with pytest.raises(ValueError, match=r"missing keys .*stacks\.0\.fusers"):
        C2CModel.from_pretrained(tmp_path / "two", receiver=receiver, sharer=[a, b])


def test_a_checkpoint_loads_its_recorded_sharers(tmp_path) -> None:
    """From folders, as `c2c eval --fuser` loads it: every sharer is found by the name it recorded."""
    tok = bpe_tokenizer()
    for name, model in (("recv", tiny_receiver), ("a", tiny_sharer), ("b", sharer_b)):
        model(vocab_size=len(tok)).save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
    receiver, a, b = (load_model(tmp_path / n) for n in ("recv", "a", "b"))
    C2CModel.from_models(receiver, [a, b], fuser=FUSER, seed=0).save_pretrained(tmp_path / "fuser")
    loaded = C2CModel.from_pretrained(tmp_path / "fuser")
    assert [s.config.num_hidden_layers for s in loaded.sharers] == [2, 3]
    with pytest.raises(ValueError, match="this checkpoint has 2 sharers .* but sharer= gives one"):
        C2CModel.from_pretrained(tmp_path / "fuser", sharer=a)
    with pytest.raises(ValueError, match="mismatched sharer count: sharer= lists 3 but the checkpoint records 2"):
        C2CModel.from_pretrained(tmp_path / "fuser", sharer=[a, b, a])
    with pytest.raises(ValueError, match="sharer 2: the fusers were built for"):
        C2CModel.from_pretrained(tmp_path / "fuser", sharer=[a, a])


# ------------------------------------------------------------------------------------------ bad input


def test_an_unknown_mode_is_refused(parts) -> None:
    receiver, a, b = parts
    with pytest.raises(ValueError, match="sharer_mode must be one of parallel, sequential .* got 'mixed'"):
        C2CModel.from_models(receiver, [a, b], fuser=FUSER, sharer_mode="mixed")
    saved = two_sharers(parts).config.to_dict()
    with pytest.raises(ValueError, match="sharer_mode must be one of parallel, sequential"):
        C2CConfig.from_dict({**saved, "sharer_mode": "both"}, source="x.json")


def test_malformed_more_sharers_are_named(parts) -> None:
    saved = two_sharers(parts).config.to_dict()
    bad = {**saved, "more_sharers": [{"sharer": saved["sharer"], "layer_map": {"0": "zero"}, "extra": 1}]}
    with pytest.raises(ValueError, match=r"x\.json is not a valid C2C config: more_sharers\[0\]\.extra: unknown key.*more_sharers\[0\]\.layer_map: got"):  # fmt: skip
        C2CConfig.from_dict(bad, source="x.json")
    out_of_range = {**saved, "more_sharers": [{**saved["more_sharers"][0], "layer_map": {"0": 9}}]}
    with pytest.raises(
        ValueError, match=r"more_sharers\[0\]\.layer_map value 9 .* is not a sharer 2's layer \(0\.\.2\)"
    ):
        C2CConfig.from_dict(out_of_range, source="x.json")


def test_a_mismatched_sharer_count_is_refused(parts) -> None:
    receiver, a, b = parts
    model = two_sharers(parts)
    with pytest.raises(ValueError, match="mismatched sharer count: 1 sharers given, 1 sharer tokenizers, 2 sharers in the config"):  # fmt: skip
        C2CModel(receiver, a, model.fusers, model.config)
    with pytest.raises(ValueError, match="mismatched sharer count: 2 sharers given"):
        C2CModel(receiver, [a, b], model.fusers.stacks[0], model.config)
    ids = prompt_ids(length=6)
    with pytest.raises(ValueError, match="sharer_input_ids: got 3 tensors for 2 sharers"):
        model.inputs_from_ids(ids, sharer_input_ids=[ids, ids, ids])


def test_sharers_with_other_tokenizers_need_their_own_ids() -> None:
    rt, st = bpe_tokenizer(), wordlevel_tokenizer()
    receiver, a, b = tiny_receiver(vocab_size=len(rt)), tiny_sharer(vocab_size=len(rt)), sharer_b(vocab_size=len(st))
    model = C2CModel.from_models(receiver, [a, b], fuser=FUSER, receiver_tokenizer=rt, sharer_tokenizer=[None, st])
    ids = torch.tensor([rt("Hello world")["input_ids"]])
    with pytest.raises(ValueError, match="receiver and sharer 2 tokenizers differ, so token ids alone are ambiguous"):
        model.inputs_from_ids(ids)
    plain = model.inputs_from_ids(ids, sharer_input_ids=[ids, torch.zeros_like(ids)])
    from dataclasses import replace

    with pytest.raises(ValueError, match="sharer 2's tokenizer differs from sharer 1's"):
        model.fuse(replace(plain, more_sharers=()))


def test_messages_align_each_sharer_to_the_same_receiver_tokens() -> None:
    """Sharer 1 shares the receiver's tokenizer, sharer 2 has another one and is token-aligned."""
    rt, st = bpe_tokenizer(), wordlevel_tokenizer()
    receiver, a, b = tiny_receiver(vocab_size=len(rt)), tiny_sharer(vocab_size=len(rt)), sharer_b(vocab_size=len(st))
    model = C2CModel.from_models(receiver, [b, a], fuser=FUSER, receiver_tokenizer=rt, sharer_tokenizer=[st, None])
    alone = C2CModel.from_models(receiver, b, fuser=FUSER, receiver_tokenizer=rt, sharer_tokenizer=st)
    messages = [[{"role": "user", "content": "What is the capital of France?"}], [{"role": "user", "content": "Hi"}]]
    inputs, reference = model.encode(messages), alone.encode(messages)
    assert torch.equal(inputs.input_ids, reference.input_ids) and torch.equal(
        inputs.sharer_input_ids, reference.sharer_input_ids
    )
    (second,) = inputs.more_sharers
    assert torch.equal(second.input_ids, inputs.input_ids) and torch.equal(
        second.fusion_mask, inputs.attention_mask.bool()
    )
    assert isinstance(model.generate(messages[0], max_new_tokens=3, do_sample=False), str)


# ------------------------------------------------------------------------------------------ training, CLI


def test_training_updates_both_sharers_fusers(tmp_path) -> None:
    tok = bpe_tokenizer()
    receiver, a, b = tiny_receiver(vocab_size=len(tok)), tiny_sharer(vocab_size=len(tok)), sharer_b(vocab_size=len(tok))
    model = C2CModel.from_models(
        receiver, [a, b], fuser=FUSER, receiver_tokenizer=tok, sharer_mode="sequential", seed=0
    )
    before = {k: v.clone() for k, v in model.fusers.state_dict().items()}
    conversations = [
        [{"role": "user", "content": q}, {"role": "assistant", "content": "Paris."}] for q in ("Hi?", "Where?")
    ]
    cfg = TrainConfig(
        training=TrainingOptions(max_steps=2, per_device_batch_size=2, learning_rate=1e-2, warmup_ratio=0.0,
                                 precision="fp32", num_threads=1, device="cpu"),
        output=OutputOptions(output_dir=str(tmp_path), log_steps=1, save_steps=1000, eval_steps=0),
    )  # fmt: skip
    final = train_fusers(model, conversations, None, cfg)
    changed = {k.split(".")[1] for k, v in model.fusers.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"0", "1"}
    assert json.loads((final / "c2c_config.json").read_text())["sharer_mode"] == "sequential"


def test_eval_and_inspect_take_several_sharers(tmp_path, capsys) -> None:
    from test_eval_runner import TASK

    rt, st = bpe_tokenizer(), wordlevel_tokenizer()
    built = {"recv": (tiny_receiver(vocab_size=len(rt)), rt), "a": (tiny_sharer(vocab_size=len(st)), st),
             "b": (sharer_b(vocab_size=len(rt)), rt)}  # fmt: skip
    for name, (model, tok) in built.items():
        model.generation_config.eos_token_id, model.generation_config.pad_token_id = tok.eos_token_id, tok.pad_token_id
        model.save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
    models = [load_model(tmp_path / n) for n in ("recv", "a", "b")]
    C2CModel.from_models(models[0], models[1:], fuser=FUSER, receiver_tokenizer=rt, sharer_tokenizer=[st, rt]).save_pretrained(tmp_path / "fuser")  # fmt: skip
    sharers = f"{tmp_path / 'a'},{tmp_path / 'b'}"
    assert main(["eval", "--fuser", str(tmp_path / "fuser"), "--sharer", sharers, "--task", TASK, "--modes", "c2c,sharer",
                 "--limit", "2", "--max_new_tokens", "2", "--output_dir", str(tmp_path / "run")]) == 0  # fmt: skip
    assert "| c2c | 2 |" in capsys.readouterr().out
    assert main(["inspect", "--receiver", str(tmp_path / "recv"), "--sharer", sharers, "--sharer_mode", "sequential",
                 "--hidden_dim", "16", "--intermediate_dim", "16"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "sharer 1" in out.splitlines()[1] and "sharer 2" in out.splitlines()[1]
    assert "sharers: 2, combined sequential" in out
    assert "layer map (sharer 2): terminal (3 fusers; receiver layers <- sharer 2 layers)" in out
    assert "tokenizers (receiver, sharer 1): different" in out and "tokenizers (receiver, sharer 2): identical" in out
    assert "all fusers:" in out


def test_a_recipe_trains_several_sharers(tmp_path) -> None:
    from cache2cache.training.config import check_train_config, parse_train_config
    from cache2cache.training.loop import run_training

    tok = bpe_tokenizer()
    for name, build in (("recv", tiny_receiver), ("a", tiny_sharer), ("b", sharer_b)):
        build(vocab_size=len(tok)).save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "Paris."}]}) + "\n"
                            for q in ("Hi?", "Where?", "What?", "Who?")))  # fmt: skip
    raw = {"model": {"receiver": str(tmp_path / "recv"), "sharer": str(tmp_path / "a"), "more_sharers": [str(tmp_path / "b")],
                     "sharer_mode": "sequential", "fuser": {"hidden_dim": 16, "intermediate_dim": 16}},
           "data": {"train": [{"type": "chat", "path": str(data)}]},
           "training": {"max_steps": 2, "per_device_batch_size": 2, "precision": "fp32", "device": "cpu", "num_threads": 1},
           "output": {"output_dir": str(tmp_path / "out")}}  # fmt: skip
    config, problems = parse_train_config(raw)
    assert problems == [] and check_train_config(config, raw=raw) == []
    loaded = C2CModel.from_pretrained(run_training(config))
    assert [s.config.num_hidden_layers for s in loaded.sharers] == [2, 3] and loaded.config.sharer_mode == "sequential"
    config, _ = parse_train_config({**raw, "model": {**raw["model"], "init": "random"}})
    assert any(
        "model.more_sharers: given with init 'random'" in p for p in check_train_config(config, check_files=False)
    )
