"""Training data: readers for every format, ShareGPT recovery, MC conversion, encoding with one or
two tokenizers, filtering with counts, and the collator's padding (rows of a batch equal each example alone)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging

import pytest
import torch

from cache2cache import C2CModel, FuserConfig
from cache2cache.alignment import TokenAligner
from cache2cache.chat import render_chat
from cache2cache.training.batching import IGNORE_INDEX, collate
from cache2cache.training.config import DataSource
from cache2cache.training.examples import ChatDataset, ExampleEncoder
from cache2cache.training.loop import response_loss_sum
from cache2cache.training.records import (
    SampleError,
    TwoPromptConversation,
    chat_conversations,
    load_source,
    normalize_conversation,
    read_records,
    sharegpt_conversations,
    split_holdout,
)
from tiny import tiny_receiver, tiny_sharer
from toy_tokenizers import bpe_tokenizer, wordlevel_tokenizer

CONVERSATIONS = [
    [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is Paris."},
    ],
    [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello world, how are you today?"},
        {"role": "assistant", "content": "I am fine, thank you."},
        {"role": "user", "content": "Where is the nearest train station?"},
        {"role": "assistant", "content": "It is two streets away."},
    ],
    [{"role": "user", "content": "Two plus two?"}, {"role": "assistant", "content": "Two plus two is four."}],
]


def test_normalize_maps_sharegpt_roles_and_rejects_unknown_ones() -> None:
    conv = normalize_conversation([{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}])
    assert conv == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    with pytest.raises(SampleError, match="role 'robot'"):
        normalize_conversation([{"role": "robot", "content": "beep"}])


def test_every_file_format_reads_the_same_conversations(tmp_path) -> None:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [{"messages": c, "id": i} for i, c in enumerate(CONVERSATIONS)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "a.json").write_text(json.dumps(records))
    table = pa.Table.from_pylist(records)
    pq.write_table(table, tmp_path / "a.parquet")
    with pa.ipc.new_stream(str(tmp_path / "a.arrow"), table.schema) as writer:
        writer.write_table(table)
    datasets.Dataset.from_list(records).save_to_disk(str(tmp_path / "saved"))
    for name in ("a.jsonl", "a.jsonl.gz", "a.json", "a.parquet", "a.arrow", "saved"):
        assert chat_conversations(read_records(str(tmp_path / name))) == CONVERSATIONS, name


def test_missing_local_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(read_records(str(tmp_path / "nope.jsonl")))


def test_sharegpt_recovers_complete_conversations_from_a_truncated_array(tmp_path) -> None:
    rows = [
        {
            "id": "a",
            "conversations": [
                {"from": "human", "value": "q1"},
                {"from": "gpt", "value": "a1"},
                {"from": "human", "value": "dangling"},
            ],
        },
        {"id": "b", "conversations": [{"from": "human", "value": "only a question"}]},
        {
            "id": "c",
            "conversations": [
                {"from": "system", "value": "be brief"},
                {"from": "human", "value": "q2"},
                {"from": "gpt", "value": "a2"},
            ],
        },
        {"id": "d", "conversations": [{"from": "human", "value": "q3"}, {"from": "gpt", "value": "a3"}]},
    ]
    text = json.dumps(rows, indent=2)
    path = tmp_path / "sharegpt.json"
    path.write_text(text[: text.index('"q3"') + 2])  # cut inside the last conversation
    got = sharegpt_conversations(path)
    assert got == [
        [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}],
        [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "q2"},
            {"role": "assistant", "content": "a2"},
        ],
    ]
    assert sharegpt_conversations(path, limit=1) == got[:1]


def test_multiple_choice_records_become_training_chats(tmp_path) -> None:
    path = tmp_path / "mc.jsonl"
    path.write_text(json.dumps({"question": "What is 2 + 2?", "choices": ["3", "4", "5"], "answer": 1}) + "\n")
    (conv,) = load_source(DataSource(type="mc", path=str(path)))
    assert conv[0] == {"role": "user", "content": "Question: What is 2 + 2?\n\nChoices:\nA. 3\nB. 4\nC. 5"}
    assert conv[1] == {"role": "assistant", "content": "The correct answer is B."}


def test_plain_and_listed_multiple_choice_records_answer_with_the_option_text(tmp_path) -> None:
    path = tmp_path / "mc.jsonl"
    path.write_text(json.dumps({"question": "What is 2 + 2?", "choices": ["3", "4", "5"], "answer": 1}) + "\n")
    (conv,) = load_source(DataSource(type="mc", path=str(path), prompt_style="plain"))
    assert conv == [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}]
    (conv,) = load_source(DataSource(type="mc", path=str(path), prompt_style="listed"))
    assert conv == [
        {"role": "user", "content": "What is 2 + 2?\n\nChoices:\nA. 3\nB. 4\nC. 5"},
        {"role": "assistant", "content": "4"},
    ]


def test_sharer_context_puts_the_passage_in_the_sharer_prompt_alone(tmp_path) -> None:
    record = {"question": "Where is Ada?", "choices": ["Oslo", "Rome"], "answer": 1}
    path = tmp_path / "mc.jsonl"
    path.write_text(json.dumps({**record, "context": "Ada lives in Rome."}) + "\n" + json.dumps(record) + "\n")
    source = DataSource(type="mc", path=str(path), prompt_style="plain", sharer_context=True)
    with_context, plain = load_source(source)
    question = {"role": "user", "content": "Where is Ada?"}
    assert with_context == TwoPromptConversation(
        [question, {"role": "assistant", "content": "Rome"}],
        [{"role": "system", "content": "Ada lives in Rome."}, question],
    )
    assert plain == [question, {"role": "assistant", "content": "Rome"}]
    # without the option, the context is not used at all
    assert load_source(dataclasses.replace(source, sharer_context=False))[0] == plain


def test_sharer_context_on_a_task_without_contexts_is_an_error(tmp_path) -> None:
    path = tmp_path / "mc.jsonl"
    path.write_text(json.dumps({"question": "q?", "choices": ["a", "b"], "answer": 0}) + "\n")
    with pytest.raises(ValueError, match="none of its 1 items has a context"):
        load_source(DataSource(type="mc", path=str(path), sharer_context=True))


def test_shared_tokenizer_prompt_is_the_generation_prompt_and_loss_covers_the_answer_turn() -> None:
    tok = bpe_tokenizer()
    conv = CONVERSATIONS[1]
    example = ExampleEncoder(tok).encode(conv)
    instruction = render_chat(tok, conv[:-1], add_generation_prompt=True, enable_thinking=False)
    assert example.prompt_ids == tok(instruction, add_special_tokens=False)["input_ids"]
    assert example.sharer_prompt_ids == example.prompt_ids and all(example.fusion_mask)
    # the answer's content and its end-of-turn tokens, nothing of the earlier turns
    assert tok.decode(example.response_ids) == "It is two streets away.<|im_end|>\n"


def test_aligned_prompt_ends_before_the_last_message_and_fuses_only_message_tokens() -> None:
    receiver, sharer = bpe_tokenizer(), wordlevel_tokenizer()
    aligner = TokenAligner(receiver, sharer)
    conv = CONVERSATIONS[1]
    example = ExampleEncoder(receiver, aligner).encode(conv)
    seq = aligner.align_messages(conv, add_generation_prompt=False, enable_thinking=False)
    cut = seq.message_sections[-1].start
    assert len(example.prompt_ids) == len(example.sharer_prompt_ids) == len(example.fusion_mask) == cut
    fused = {i for i, f in enumerate(example.fusion_mask) if f}
    messages = {i for s in seq.message_sections[:-1] for i in range(s.start, s.end)}
    assert fused == messages
    assert example.prompt_mask[-1] == 1  # the receiver's last prompt token is a real token
    assert receiver.decode(example.response_ids).startswith("It is two streets away.")
    assert max(example.sharer_prompt_ids) < len(sharer)


def test_unusable_and_too_long_conversations_are_dropped_and_counted(caplog) -> None:
    tok = bpe_tokenizer()
    bad = [
        [{"role": "user", "content": "no answer"}],
        [{"role": "user", "content": "empty"}, {"role": "assistant", "content": "  "}],
        [
            {"role": "user", "content": "Summarize the text in one sentence, please. " * 20},
            {"role": "assistant", "content": "No."},
        ],
    ]
    with caplog.at_level(logging.INFO, logger="cache2cache.training.examples"):
        data = ChatDataset(CONVERSATIONS + bad, ExampleEncoder(tok), max_length=120, name="train")
    assert len(data) == 3
    assert data.dropped == {"no_final_assistant_turn": 1, "empty_answer": 1, "longer_than_120": 1}
    assert "kept 3 of 6" in caplog.text
    assert data.lengths == [len(data[i]) for i in range(3)]


def test_split_holdout_is_seeded_and_disjoint() -> None:
    items = [[{"role": "user", "content": str(i)}, {"role": "assistant", "content": "x"}] for i in range(20)]
    train, held = split_holdout(items, 0.25, seed=3)
    assert len(held) == 5 and len(train) == 15
    assert split_holdout(items, 0.25, seed=3) == (train, held)
    assert not any(c in train for c in held)


@pytest.mark.parametrize("aligned", [False, True], ids=["shared-tokenizer", "aligned"])
def test_collated_rows_score_like_each_example_alone(aligned: bool) -> None:
    receiver_tok = bpe_tokenizer()
    sharer_tok = wordlevel_tokenizer() if aligned else None
    model = C2CModel.from_models(
        tiny_receiver(vocab_size=len(receiver_tok)),
        tiny_sharer(vocab_size=len(sharer_tok or receiver_tok)),
        fuser=FuserConfig(hidden_dim=32, intermediate_dim=32, dropout=0.0, gate_init=3.0),
        receiver_tokenizer=receiver_tok,
        sharer_tokenizer=sharer_tok,
        seed=0,
    ).eval()
    encoder = ExampleEncoder(receiver_tok, model.aligner)
    examples = [encoder.encode(c) for c in CONVERSATIONS]
    pads = (model.aligner.receiver_pad_id, model.aligner.sharer_pad_id) if aligned else (receiver_tok.pad_token_id,) * 2
    batch = collate(examples, receiver_pad_id=pads[0], sharer_pad_id=pads[1])
    p = batch.prompt_length
    assert p == max(len(e.prompt_ids) for e in examples)
    for row, e in enumerate(examples):
        start = p - len(e.prompt_ids)
        assert batch.inputs.attention_mask[row, :start].sum() == 0  # left padding only before the prompt
        assert batch.inputs.input_ids[row, start:p].tolist() == e.prompt_ids
        assert not batch.inputs.fusion_mask[row, p:].any()  # nothing past the prompt is fused
        labels = batch.labels[row, p:][batch.labels[row, p:] != IGNORE_INDEX].tolist()
        assert labels == e.response_ids and (batch.labels[row, :p] == IGNORE_INDEX).all()
    with torch.no_grad():
        logits = model(batch.inputs, p).logits
        for row, e in enumerate(examples):
            alone = collate([e], receiver_pad_id=pads[0], sharer_pad_id=pads[1])
            expected = response_loss_sum(
                model(alone.inputs, alone.prompt_length).logits, alone.labels, alone.prompt_length
            )
            got = response_loss_sum(logits[row : row + 1], batch.labels[row : row + 1], p)
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
