"""A separate conversation for the sharer (`sharer_messages=`, `sharer_prompt.py`, docs/method.md §1.6).

On the tiny pair with two toy tokenizers (token-aligned) and with a shared tokenizer: the sharer's
own conversation equal to the receiver's is plain C2C exactly; a longer sharer prompt gives the
receiver filler positions that are attended and fused, a shorter one leaves the receiver's extra
tokens unfused; closed gates give the receiver alone over the same layout; a batch equals its rows.
"""

from __future__ import annotations

import pytest
import torch

from cache2cache import C2CModel, FuserConfig, FusionControl
from cache2cache.sharer_prompt import side_by_side
from cache2cache.training.batching import collate
from cache2cache.training.examples import ExampleEncoder
from cache2cache.training.records import SampleError, TwoPromptConversation, chat_conversations
from test_cli import dirs  # noqa: F401  (a module fixture)
from tiny import tiny_receiver, tiny_sharer, tokenized_pair
from toy_tokenizers import bpe_tokenizer, wordlevel_tokenizer

QUESTION = [{"role": "user", "content": "where is the fox ?"}]
CONTEXT = [{"role": "system", "content": "the quick brown fox jumps over the lazy dog ."}, *QUESTION]
SHORT = [{"role": "user", "content": "fox ?"}]
STEPS = 4


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def aligned() -> C2CModel:
    """Receiver on word-level tokens <- sharer on BPE tokens (the receiver writes visible words), open gates."""
    return tokenized_pair(wordlevel_tokenizer(), bpe_tokenizer())


@pytest.fixture(scope="module")
def shared() -> C2CModel:
    """Both models on one word-level tokenizer (no aligner), open gates."""
    tok = wordlevel_tokenizer()
    return tokenized_pair(tok, tok)


def _logits(model: C2CModel, inputs, **kw) -> torch.Tensor:
    out = model.generate_from_inputs(
        inputs, max_new_tokens=STEPS, do_sample=False, return_dict_in_generate=True, output_logits=True, **kw
    )
    return torch.stack(out.logits, dim=1)  # (B, STEPS, V)


def test_the_layout_rule_on_lists():
    # the sharer's prompt 2 longer: 2 receiver filler tokens (9), attended, fused where the sharer's mask says
    row = side_by_side(([5, 6, 7], [1, 0, 1]), ([1, 2, 3, 4, 8], [1, 1, 1, 0, 1], [False, True, True, False, True]),
                       filler_id=9, sharer_pad_id=0)  # fmt: skip
    assert (row.receiver_ids, row.receiver_mask, row.filler) == ([9, 9, 5, 6, 7], [1, 1, 1, 0, 1], 2)
    assert (row.sharer_ids, row.sharer_mask) == ([1, 2, 3, 4, 8], [1, 1, 1, 0, 1])
    assert row.fusion_mask == [False, True, True, False, True]  # column 3: the receiver's template padding
    # the sharer's prompt 2 shorter: 2 sharer pads, masked out, those receiver tokens unfused
    row = side_by_side(([1, 2, 3, 4], [1, 1, 1, 1]), ([7, 8], [1, 1], [True, True]), filler_id=9, sharer_pad_id=0)
    assert (row.receiver_ids, row.receiver_mask, row.filler) == ([1, 2, 3, 4], [1, 1, 1, 1], 0)
    assert (row.sharer_ids, row.sharer_mask, row.fusion_mask) == (
        [0, 0, 7, 8],
        [0, 0, 1, 1],
        [False, False, True, True],
    )


@pytest.mark.parametrize("which", ["aligned", "shared"])
def test_the_same_conversation_for_the_sharer_is_plain_c2c_exactly(which, request):
    model = request.getfixturevalue(which)
    batch = [QUESTION, CONTEXT, SHORT]
    plain, two = model.encode(batch), model.encode(batch, sharer_conversations=batch)
    for name in ("input_ids", "attention_mask", "sharer_input_ids", "sharer_attention_mask", "fusion_mask"):
        assert torch.equal(getattr(plain, name), getattr(two, name)), name
    assert model.generate(batch, sharer_messages=batch, max_new_tokens=STEPS, do_sample=False) == model.generate(
        batch, max_new_tokens=STEPS, do_sample=False
    )
    assert torch.equal(_logits(model, two), _logits(model, plain))


@pytest.mark.parametrize("which", ["aligned", "shared"])
def test_a_longer_sharer_prompt_gives_the_receiver_fused_filler(which, request):
    model = request.getfixturevalue(which)
    alone, plain_sharer = model.encode([QUESTION]), model.encode([CONTEXT])
    inputs = model.encode([QUESTION], sharer_conversations=[CONTEXT])
    n_r, n_s = alone.input_ids.shape[1], plain_sharer.input_ids.shape[1]
    assert n_s > n_r and inputs.input_ids.shape == (1, n_s)
    extra = n_s - n_r
    filler = model.receiver_tokenizer.pad_token_id
    # the receiver: filler (attended), then exactly its own prompt
    assert inputs.input_ids[0, :extra].tolist() == [filler] * extra
    assert inputs.attention_mask[0, :extra].tolist() == [1] * extra
    assert torch.equal(inputs.input_ids[:, extra:], alone.input_ids)
    assert torch.equal(inputs.attention_mask[:, extra:], alone.attention_mask)
    # the sharer: exactly its own prompt, with its own fusion mask (fused filler included)
    assert torch.equal(inputs.sharer_input_ids, plain_sharer.sharer_input_ids)
    assert torch.equal(inputs.sharer_attention_mask, plain_sharer.sharer_attention_mask)
    assert torch.equal(inputs.fusion_mask, plain_sharer.fusion_mask & inputs.attention_mask.bool())
    assert inputs.fusion_mask[0, :extra].any()
    # what the sharer read changes the answer's logits
    assert not torch.allclose(_logits(model, inputs), _logits(model, alone))


@pytest.mark.parametrize("which", ["aligned", "shared"])
def test_a_shorter_sharer_prompt_leaves_the_receivers_extra_tokens_unfused(which, request):
    model = request.getfixturevalue(which)
    alone, plain_sharer = model.encode([CONTEXT]), model.encode([SHORT])
    inputs = model.encode([CONTEXT], sharer_conversations=[SHORT])
    n_r, n_s = alone.input_ids.shape[1], plain_sharer.input_ids.shape[1]
    assert n_r > n_s and inputs.input_ids.shape == (1, n_r)
    extra = n_r - n_s
    assert torch.equal(inputs.input_ids, alone.input_ids) and torch.equal(inputs.attention_mask, alone.attention_mask)
    assert inputs.sharer_attention_mask[0, :extra].sum() == 0 and not inputs.fusion_mask[0, :extra].any()
    assert torch.equal(inputs.sharer_input_ids[:, extra:], plain_sharer.sharer_input_ids)
    assert torch.equal(inputs.fusion_mask[:, extra:], plain_sharer.fusion_mask & alone.attention_mask[:, extra:].bool())


def test_closed_gates_give_the_receiver_alone_over_the_same_layout():
    rt, st = wordlevel_tokenizer(), bpe_tokenizer()
    closed = FuserConfig(hidden_dim=16, intermediate_dim=16, num_layers=3, dropout=0.0, gate_init=-3.0)
    model = C2CModel.from_models(tiny_receiver(vocab_size=len(rt)), tiny_sharer(vocab_size=len(st)), fuser=closed,
                                 receiver_tokenizer=rt, sharer_tokenizer=st, seed=0).eval()  # fmt: skip
    inputs = model.encode([QUESTION, SHORT], sharer_conversations=[CONTEXT, CONTEXT])
    assert torch.equal(_logits(model, inputs), _logits(model, inputs, fuse=False))
    texts = model.generate([QUESTION], sharer_messages=[CONTEXT], max_new_tokens=STEPS, do_sample=False)
    assert texts == model.generate(
        [QUESTION], sharer_messages=[CONTEXT], fuse=False, max_new_tokens=STEPS, do_sample=False
    )


@pytest.mark.parametrize("which", ["aligned", "shared"])
def test_a_batch_equals_each_row_alone(which, request):
    model = request.getfixturevalue(which)
    receivers, sharers = [QUESTION, CONTEXT, SHORT], [CONTEXT, SHORT, QUESTION]
    batch = _logits(model, model.encode(receivers, sharer_conversations=sharers))
    for b, (r, s) in enumerate(zip(receivers, sharers)):
        row = _logits(model, model.encode([r], sharer_conversations=[s]))
        torch.testing.assert_close(batch[b : b + 1], row, atol=1e-5, rtol=1e-4)
    texts = model.generate(receivers, sharer_messages=sharers, max_new_tokens=STEPS, do_sample=False)
    assert texts == [model.generate(r, sharer_messages=s, max_new_tokens=STEPS, do_sample=False) for r, s in zip(receivers, sharers)]  # fmt: skip


@pytest.mark.parametrize("which", ["aligned", "shared"])
def test_fusion_during_the_response_reads_the_sharers_own_prompt(which, request):
    model = request.getfixturevalue(which)
    receivers, sharers = [QUESTION, CONTEXT, SHORT], [CONTEXT, SHORT, QUESTION]
    response = FusionControl(include_response=True)
    same = _logits(model, model.encode(receivers, sharer_conversations=receivers), control=response)
    assert torch.equal(same, _logits(model, model.encode(receivers), control=response))  # plain include_response
    batch = _logits(model, model.encode(receivers, sharer_conversations=sharers), control=response)
    for b, (r, s) in enumerate(zip(receivers, sharers)):
        row = _logits(model, model.encode([r], sharer_conversations=[s]), control=response)
        torch.testing.assert_close(batch[b : b + 1], row, atol=1e-5, rtol=1e-4)
    prompt_only = _logits(model, model.encode(receivers, sharer_conversations=sharers))
    assert not torch.allclose(batch, prompt_only)  # the response was fused too
    assert isinstance(model.generate(QUESTION, sharer_messages=CONTEXT, include_response=True, max_new_tokens=2), str)


def test_inputs_that_cannot_be_laid_out_are_refused(aligned):
    with pytest.raises(ValueError, match="sharer_messages needs chat messages"):
        aligned.generate(input_ids=torch.tensor([[3, 4, 5]]), sharer_messages=CONTEXT, max_new_tokens=2)
    with pytest.raises(ValueError, match="must have the shape of messages"):
        aligned.generate([QUESTION, QUESTION], sharer_messages=[CONTEXT], max_new_tokens=2)
    with pytest.raises(ValueError, match="must have the shape of messages"):
        aligned.generate(QUESTION, sharer_messages=[CONTEXT], max_new_tokens=2)
    with pytest.raises(ValueError, match="role 'robot'"):
        aligned.generate(QUESTION, sharer_messages=[{"role": "robot", "content": "hi"}], max_new_tokens=2)
    with pytest.raises(ValueError, match="one sharer conversation per receiver conversation"):
        aligned.encode([QUESTION], sharer_conversations=[CONTEXT, CONTEXT])
    with pytest.raises(ValueError, match="at least one token"):
        side_by_side(([], []), ([1], [1], [True]), filler_id=0, sharer_pad_id=0)


def test_response_fusion_still_refuses_other_sharer_ids_when_the_tokenizers_are_unknown(aligned):
    inputs = aligned.encode([QUESTION], sharer_conversations=[CONTEXT])
    bare = C2CModel(aligned.receiver, aligned.sharer, aligned.fusers, aligned.config)  # no tokenizers
    with pytest.raises(ValueError, match="no token aligner"):
        bare.generate_from_inputs(inputs, control=FusionControl(include_response=True), max_new_tokens=2)


def test_several_sharers_are_refused():
    tok = wordlevel_tokenizer()
    model = C2CModel.from_models(tiny_receiver(vocab_size=len(tok)), [tiny_sharer(vocab_size=len(tok)), tiny_sharer(vocab_size=len(tok), seed=2)],
                                 fuser=FuserConfig(hidden_dim=16, intermediate_dim=16, num_layers=3), receiver_tokenizer=tok, seed=0)  # fmt: skip
    with pytest.raises(ValueError, match="this model reads 2 sharers"):
        model.generate(QUESTION, sharer_messages=CONTEXT, max_new_tokens=2)


# ------------------------------------------------------------------------------------------ training


@pytest.mark.parametrize("which", ["aligned", "shared"])
def test_training_examples_encode_the_sharer_side_from_sharer_messages(which, request):
    model = request.getfixturevalue(which)
    encoder = ExampleEncoder(model.receiver_tokenizer, model.aligner)
    answer = {"role": "assistant", "content": "near the dog ."}
    records = [{"messages": [*QUESTION, answer], "sharer_messages": CONTEXT}, {"messages": [*QUESTION, answer]}]
    two, plain = chat_conversations(records)
    assert isinstance(two, TwoPromptConversation) and two.sharer_messages == CONTEXT and plain == [*QUESTION, answer]
    example, alone = encoder.encode(two), encoder.encode(plain)
    sharer = model.encode([CONTEXT])
    extra = len(example.prompt_ids) - len(alone.prompt_ids)
    assert extra == sharer.input_ids.shape[1] - len(alone.prompt_ids) > 0
    assert example.prompt_ids[extra:] == alone.prompt_ids and example.response_ids == alone.response_ids
    assert example.sharer_prompt_ids == sharer.sharer_input_ids[0].tolist()
    assert example.fusion_mask == sharer.fusion_mask[0].tolist()
    batch = collate([example, alone], receiver_pad_id=0, sharer_pad_id=0)
    assert batch.prompt_length == len(example.prompt_ids) and batch.inputs.fusion_mask.shape == batch.labels.shape
    # the same prompt for the sharer is the plain example (shared tokenizer: both are the generation prompt)
    if which == "shared":
        assert encoder.encode(TwoPromptConversation([*QUESTION, answer], QUESTION)) == alone
    with pytest.raises(SampleError, match="drop its final assistant turn"):
        encoder.encode(TwoPromptConversation([*QUESTION, answer], [*CONTEXT, answer]))


def test_train_fusers_runs_on_records_with_sharer_messages(tmp_path):
    from cache2cache.training import OutputOptions, TrainConfig, TrainingOptions, train_fusers

    model = tokenized_pair(wordlevel_tokenizer(), bpe_tokenizer())
    answers = ["near the dog .", "yes .", "brown ."]
    records = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
         "sharer_messages": [{"role": "system", "content": f"the answer is {a}"}, {"role": "user", "content": q}]}
        for q, a in zip(["where is the fox ?", "is the dog lazy ?", "what colour is the fox ?"], answers)
    ]  # fmt: skip
    conversations = chat_conversations(records)
    options = TrainingOptions(max_steps=6, per_device_batch_size=3, learning_rate=1e-2, warmup_ratio=0.0,
                              precision="fp32", num_threads=1, device="cpu")  # fmt: skip
    losses: list[float] = []
    config = TrainConfig(training=options, output=OutputOptions(output_dir=str(tmp_path), log_steps=1, eval_steps=0))
    before = [p.detach().clone() for p in model.fuser_parameters()]
    train_fusers(model, conversations, None, config, on_step=lambda s, m: losses.append(m["loss"]), progress=False)
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert any(not torch.equal(a, b) for a, b in zip(before, model.fuser_parameters()))


# ------------------------------------------------------------------------------------------ the CLI


def test_c2c_generate_gives_the_sharer_its_own_prompt(dirs, capsys):  # noqa: F811  (the imported fixture)
    from argparse import Namespace

    from cache2cache.cli.generate import sharer_messages
    from cache2cache.cli.main import main

    argv = ["generate", "Hello world", "--fuser", dirs["ckpt"], "--receiver", dirs["recv"], "--sharer", dirs["shr"],
            "--max_new_tokens", "5", "--sharer_system", "The sky is blue."]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    model = C2CModel.from_pretrained(dirs["ckpt"], receiver=dirs["recv"], sharer=dirs["shr"])
    question = [{"role": "user", "content": "Hello world"}]
    context = [{"role": "system", "content": "The sky is blue."}, *question]
    assert out == model.generate(question, sharer_messages=context, max_new_tokens=5, do_sample=False) + "\n"
    args = Namespace(prompt="Hello world", sharer_system=None, sharer_prompt="Bonjour")
    assert sharer_messages(args) == [{"role": "user", "content": "Bonjour"}]
    assert sharer_messages(Namespace(prompt="Hello world", sharer_system=None, sharer_prompt=None)) is None
