"""Fusion during the response (`include_response`, `response_fusion.py`).

Checked against a decode loop written here from the definition (docs/method.md §1.5), with its own
cache that swaps in the fused K/V: the receiver alone, the sharer and the fused cache advance one
token at a time. Also: a closed gate is plain generation; a left-padded batch with per-row stopping
equals each row alone; a teacher-forced pass equals the step-by-step decode; training fuses the
response and its loss reaches the fusers through response positions only when asked.
"""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from cache2cache import C2CModel, FuserConfig, FusionControl, kv
from cache2cache.cli.main import main
from cache2cache.evaluation.config import load_eval_config
from cache2cache.evaluation.runner import run_eval
from cache2cache.serving.errors import APIError
from cache2cache.serving.schema import parse_chat_request
from cache2cache.training import OutputOptions, TrainConfig, TrainingOptions, train_fusers
from cache2cache.training.batching import collate
from cache2cache.training.examples import ExampleEncoder
from cache2cache.training.loop import response_loss_sum
from conftest import SMALL_FUSER, prompt_ids
from test_eval_runner import config as eval_config
from test_eval_runner import tiny_eval_pair
from tiny import tiny_receiver, tiny_sharer
from toy_tokenizers import bpe_tokenizer, wordlevel_tokenizer

STEPS = 5
OPEN = FuserConfig(**{**SMALL_FUSER.__dict__, "gate_init": 3.0})
QUESTIONS = ["where is the fox ?", "the quick brown fox jumps over the lazy dog", "what colour is the dog ?"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def aligned_pair() -> C2CModel:
    """The tiny pair on two different toy tokenizers (BPE receiver, word-level sharer), open gates;
    weights drawn wide enough (initializer_range 0.2) that greedy answers vary from token to token."""
    rt, st = bpe_tokenizer(), wordlevel_tokenizer()
    receiver = tiny_receiver(vocab_size=len(rt), initializer_range=0.2)
    receiver.generation_config.pad_token_id = rt.pad_token_id
    return C2CModel.from_models(receiver, tiny_sharer(vocab_size=len(st), initializer_range=0.2), fuser=OPEN,
                                receiver_tokenizer=rt, sharer_tokenizer=st, seed=0).eval()  # fmt: skip


def _greedy(model: C2CModel, inputs, **kw):
    return model.generate_from_inputs(
        inputs, max_new_tokens=STEPS, do_sample=False, return_dict_in_generate=True, output_logits=True, **kw
    )


RESPONSE = FusionControl(include_response=True)


class SwapCache(DynamicCache):
    """A cache that stores the K/V in `pending[layer]` instead of what the forward computed."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pending: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def update(self, keys, values, layer_idx, *args, **kwargs):
        keys, values = self.pending.pop(layer_idx, (keys, values))
        return super().update(keys, values, layer_idx, *args, **kwargs)


def _run(model, cache, ids, mask):
    """The base model over the last ids.shape[1] tokens; returns the hidden states."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1] :]
    return model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)


def _fuse(model: C2CModel, sharer_cache, receiver_cache, start: int):
    """Every mapped layer's fuser on the tokens from `start` of both caches, layer by layer."""
    return {
        t: model.fusers.fusers[str(t)](
            tuple(x[:, :, start:] for x in kv.layers(sharer_cache)[s]),
            tuple(x[:, :, start:] for x in kv.layers(receiver_cache)[t]),
        )
        for t, s in model.config.layer_map.items()
    }


@torch.no_grad()
def decode_by_hand(model: C2CModel, inputs, steps: int = STEPS) -> tuple[list[int], list[torch.Tensor]]:
    """Greedy include_response decoding of one prompt, from the definition."""
    n = inputs.input_ids.shape[1]
    ids, mask, sids, smask, fmask = (
        x[:1] for x in (inputs.input_ids, inputs.attention_mask, inputs.sharer_input_ids,
                        inputs.sharer_attention_mask, inputs.fusion_mask)
    )  # fmt: skip
    alone, sharer = DynamicCache(), DynamicCache()
    _run(model.receiver.model, alone, ids[:, :-1], mask[:, :-1])
    _run(model.sharer.model, sharer, sids[:, :-1], smask[:, :-1])
    fused = SwapCache()
    prompt_fused = _fuse(model, sharer, alone, 0)
    keep = fmask[:, None, :-1, None]
    for layer, (k, v) in enumerate(kv.layers(alone)):
        if layer in prompt_fused:
            k, v = (torch.where(keep, f, x) for f, x in zip(prompt_fused[layer], (k, v)))
        fused.update(k, v, layer)
    token, sharer_token, fuse_it = ids[:, -1:], sids[:, -1:], bool(fmask[0, -1])
    generated, logits = [], []
    for step in range(steps):
        mask = torch.cat([mask, torch.ones(1, 1, dtype=mask.dtype)], dim=1) if step else mask
        smask = torch.cat([smask, torch.ones(1, 1, dtype=smask.dtype)], dim=1) if step else smask
        _run(model.receiver.model, alone, token, mask)
        _run(model.sharer.model, sharer, sharer_token, smask)
        if fuse_it:
            fused.pending = _fuse(model, sharer, alone, n - 1 + step)
        out = model.receiver(
            input_ids=token, attention_mask=mask, position_ids=mask.sum(-1, keepdim=True) - 1, cache=fused
        )
        logits.append(out.logits[:, -1])
        token = out.logits[:, -1:].argmax(-1)
        generated.append(int(token))
        mapped = model.aligner.align_tokens([int(token)]) if model.aligner else [int(token)]
        sharer_token, fuse_it = torch.tensor([mapped]), True
    return generated, logits


def test_closed_gate_is_plain_generation(closed_pair):
    ids = prompt_ids(2, 9, seed=3)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # a left-padded row
    inputs = closed_pair.inputs_from_ids(ids, mask)
    plain = _greedy(closed_pair, inputs, fuse=False)
    response = _greedy(closed_pair, inputs, control=RESPONSE)
    assert torch.equal(plain.sequences, response.sequences)
    for a, b in zip(plain.logits, response.logits, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("which", ["shared vocabulary", "different tokenizers"])
def test_fused_decode_equals_the_loop_written_from_the_definition(pair, aligned_pair, which):
    model = pair if which == "shared vocabulary" else aligned_pair
    inputs = model.inputs_from_ids(prompt_ids(1, 10, seed=5)) if model is pair else model.encode([[
        {"role": "user", "content": QUESTIONS[0]}]])  # fmt: skip
    tokens, logits = decode_by_hand(model, inputs)
    out = _greedy(model, inputs, control=RESPONSE)
    assert out.sequences[0, inputs.input_ids.shape[1] :].tolist() == tokens
    for a, b in zip(out.logits, logits, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    plain = _greedy(model, inputs)  # and response fusion changes the answer's logits
    assert not torch.allclose(out.logits[1], plain.logits[1], atol=1e-3)


def test_a_left_padded_batch_with_per_row_stopping_equals_each_row_alone(aligned_pair):
    model = aligned_pair
    convs = [[{"role": "user", "content": q}] for q in QUESTIONS]
    alone = [_greedy(model, model.encode([c]), control=RESPONSE) for c in convs]
    # Stop row 0 early: its second generated token becomes the end-of-sequence token of every call.
    n0 = model.encode([convs[0]]).input_ids.shape[1]
    eos = int(alone[0].sequences[0, n0 + 1])
    alone = [_greedy(model, model.encode([c]), control=RESPONSE, eos_token_id=eos) for c in convs]
    batch_inputs = model.encode(convs)
    assert len({int(m.sum()) for m in batch_inputs.attention_mask}) == 3  # three different lengths
    batch = _greedy(model, batch_inputs, control=RESPONSE, eos_token_id=eos)
    n = batch_inputs.input_ids.shape[1]
    pad = model.receiver_tokenizer.pad_token_id
    for row, single in enumerate(alone):
        mine = single.sequences[0, single.sequences.shape[1] - len(single.logits) :].tolist()
        theirs = batch.sequences[row, n:].tolist()
        assert theirs[: len(mine)] == mine
        assert all(t == pad for t in theirs[len(mine) :])  # a finished row only pads
        for step, logits in enumerate(single.logits):
            torch.testing.assert_close(batch.logits[step][row], logits[0], rtol=1e-4, atol=1e-5)
    assert len(alone[0].logits) <= 2 < max(len(single.logits) for single in alone)  # row 0 stopped first


@pytest.mark.parametrize("which", ["shared vocabulary", "different tokenizers"])
def test_teacher_forced_response_equals_the_step_by_step_decode(pair, aligned_pair, which):
    model = pair if which == "shared vocabulary" else aligned_pair
    inputs = model.inputs_from_ids(prompt_ids(2, 8, seed=6)) if model is pair else model.encode(
        [[{"role": "user", "content": q}] for q in QUESTIONS[:2]])  # fmt: skip
    n = inputs.input_ids.shape[1]
    out = _greedy(model, inputs, control=RESPONSE)
    full = out.sequences
    extended = type(
        inputs
    )(
        full,
        torch.cat([inputs.attention_mask, torch.ones_like(full[:, n:])], dim=1),
        torch.cat([inputs.sharer_input_ids, torch.zeros_like(full[:, n:])], dim=1),  # ignored past the prompt
        torch.cat([inputs.sharer_attention_mask, torch.zeros_like(full[:, n:])], dim=1),
        torch.cat([inputs.fusion_mask, torch.zeros_like(full[:, n:], dtype=torch.bool)], dim=1),
    )
    with torch.no_grad():
        logits = model(extended, n, control=RESPONSE).logits  # (B, 1 + STEPS, V): last prompt token + response
    for step, expected in enumerate(out.logits):
        torch.testing.assert_close(logits[:, step], expected, rtol=1e-4, atol=1e-5)


def test_a_sliding_window_receiver_fuses_its_response_as_it_decodes():
    receiver = tiny_receiver(use_sliding_window=True, sliding_window=4, max_window_layers=1)
    model = C2CModel.from_models(receiver, tiny_sharer(), fuser=OPEN, seed=0).eval()
    assert model.config.receiver.sliding_window == 4
    inputs = model.inputs_from_ids(prompt_ids(1, 9, seed=7))
    out = _greedy(model, inputs, control=RESPONSE)
    n = inputs.input_ids.shape[1]
    full = model.inputs_from_ids(out.sequences)
    with torch.no_grad():
        logits = model(full, n, control=RESPONSE).logits
    for step, expected in enumerate(out.logits):
        torch.testing.assert_close(logits[:, step], expected, rtol=1e-4, atol=1e-5)


def test_training_loss_reaches_the_fusers_through_the_response():
    tok = bpe_tokenizer()
    model = C2CModel.from_models(tiny_receiver(vocab_size=len(tok)), tiny_sharer(vocab_size=len(tok)),
                                 fuser=OPEN, receiver_tokenizer=tok, seed=0)  # fmt: skip
    encoder = ExampleEncoder(tok)
    examples = [encoder.encode([{"role": "user", "content": q}, {"role": "assistant", "content": "the dog"}])
                for q in QUESTIONS]  # fmt: skip
    batch = collate(examples, receiver_pad_id=tok.pad_token_id, sharer_pad_id=tok.pad_token_id)
    batch.inputs.fusion_mask.zero_()  # no prompt token is fused: only the response can carry fusion
    model.train()

    def loss_and_grads(control):
        model.fusers.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        out = model(batch.inputs, batch.prompt_length, batch.labels, control=control)
        loss = response_loss_sum(out.logits, batch.labels, batch.prompt_length)
        if loss.requires_grad:  # nothing fused: the loss does not depend on the fusers at all
            loss.backward()
        grads = [p.grad for p in model.fuser_parameters() if p.grad is not None]
        return float(loss.detach()), sum(float(g.abs().sum()) for g in grads)

    alone_loss, _ = loss_and_grads(FusionControl(strength=0.0))
    prompt_loss, prompt_grad = loss_and_grads(None)
    response_loss, response_grad = loss_and_grads(RESPONSE)
    assert prompt_loss == pytest.approx(alone_loss, rel=1e-6) and prompt_grad == 0
    assert abs(response_loss - alone_loss) > 1e-2 and response_grad > 0  # summed over ~30 tokens


def test_train_fusers_with_include_response_runs_and_learns(tmp_path):
    tok = bpe_tokenizer()
    model = C2CModel.from_models(tiny_receiver(vocab_size=len(tok), initializer_range=0.2),
                                 tiny_sharer(vocab_size=len(tok), initializer_range=0.2), fuser=OPEN,
                                 receiver_tokenizer=tok, seed=0)  # fmt: skip
    convs = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}]
             for q, a in zip(QUESTIONS, ["near the dog .", "yes .", "brown ."])]  # fmt: skip
    options = TrainingOptions(max_steps=8, per_device_batch_size=3, learning_rate=1e-2, warmup_ratio=0.0,
                              precision="fp32", num_threads=1, device="cpu", include_response=True)  # fmt: skip
    losses: list[float] = []
    config = TrainConfig(training=options, output=OutputOptions(output_dir=str(tmp_path), log_steps=1, eval_steps=0))
    train_fusers(model, convs, convs, config, on_step=lambda s, m: losses.append(m["loss"]), progress=False)
    assert len(losses) == 8 and losses[-1] < losses[0]
    assert "include_response: true" in (tmp_path / "recipe.yaml").read_text()


def test_sharer_ids_without_an_aligner_are_refused(pair):
    ids = prompt_ids(1, 6)
    inputs = pair.inputs_from_ids(ids, sharer_input_ids=(ids + 1) % 96)
    with pytest.raises(ValueError, match="no token aligner"):
        pair.generate_from_inputs(inputs, control=RESPONSE, max_new_tokens=2)
    with pytest.raises(ValueError, match="include_response must be True or False"):
        FusionControl(include_response="yes")  # type: ignore[arg-type]


def test_proportion_zero_fuses_the_response_alone(pair):
    inputs = pair.inputs_from_ids(prompt_ids(1, 8, seed=8))
    only_response = FusionControl(proportion=0.0, include_response=True)
    assert not only_response.fuses_nothing and FusionControl(proportion=0.0).fuses_nothing
    receiver = _greedy(pair, inputs, fuse=False)
    first_step_same = _greedy(pair, inputs, control=FusionControl(proportion=0.0, include_response=True))
    # The prompt is not fused and neither is its last token, so the first logits are the receiver's;
    # the next ones read fused response tokens.
    torch.testing.assert_close(first_step_same.logits[0], receiver.logits[0], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(first_step_same.logits[2], receiver.logits[2], atol=1e-3)


def test_the_switch_reaches_generate_the_cli_and_the_server(pair, generate_cli_kwargs):
    ids = prompt_ids(1, 8, seed=9)
    by_kwarg = pair.generate(input_ids=ids, include_response=True, max_new_tokens=3, do_sample=False)
    by_control = pair.generate_from_inputs(pair.inputs_from_ids(ids), control=RESPONSE, max_new_tokens=3,
                                           do_sample=False)  # fmt: skip
    assert torch.equal(by_kwarg, by_control)
    seen = generate_cli_kwargs
    assert main(["generate", "hi"]) == 0 and seen["include_response"] is False
    assert main(["generate", "hi", "--include_response"]) == 0 and seen["include_response"] is True
    body = b'{"model": "c2c", "messages": [{"role": "user", "content": "hi"}], "include_response": true}'
    assert parse_chat_request(body).control == RESPONSE
    with pytest.raises(APIError, match="only apply to model 'c2c'"):
        parse_chat_request(body.replace(b'"c2c"', b'"receiver"'))


@pytest.mark.parametrize("method", ["generate", "loglik"])
def test_eval_fuses_the_response_of_its_c2c_mode(tmp_path, method):
    model = tiny_eval_pair("aligned")
    runs = {
        flag: run_eval(eval_config(tmp_path / str(flag), modes=["c2c"], answer_method=method, limit=2, latency_items=1,
                                   include_response=flag), model=model, progress=False).records
        for flag in (False, True)
    }  # fmt: skip
    assert runs[True][0]["latency_ms"]["decode" if method == "generate" else "score"] > 0  # the timed item
    if method == "loglik":  # the scored continuation is fused too (the tiny pair's greedy answers are all empty)
        assert [r["scores"] for r in runs[True]] != [r["scores"] for r in runs[False]]
    with pytest.raises(ValueError, match="control the c2c mode only"):
        load_eval_config(None, {"task": "x.jsonl", "receiver": "r", "sharer": "s", "modes": "receiver",
                                "include_response": "true"}, check_files=False)  # fmt: skip
