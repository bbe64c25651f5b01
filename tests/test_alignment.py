"""Tests for cross-tokenizer token alignment (alignment.py) on the toy BPE and WordLevel tokenizers."""

from __future__ import annotations

import random
import types

import pytest
import torch

from cache2cache.alignment import AlignedSequence, AlignmentError, AlignmentFidelity, TokenAligner
from cache2cache.chat import render_chat, render_plain
from toy_tokenizers import CORPUS, bpe_tokenizer, no_template_tokenizer, wordlevel_tokenizer

CHAT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
    {"role": "user", "content": "Two plus two is four, and three times three is nine?"},
]
PAIRS = {
    "bpe->wordlevel": (bpe_tokenizer, wordlevel_tokenizer),
    "wordlevel->bpe": (wordlevel_tokenizer, bpe_tokenizer),
    "bpe->no_template": (bpe_tokenizer, no_template_tokenizer),
}


@pytest.fixture(params=list(PAIRS), ids=list(PAIRS))
def aligner(request: pytest.FixtureRequest) -> TokenAligner:
    receiver, sharer = PAIRS[request.param]
    return TokenAligner(receiver(), sharer())


def _lengths_equal(seq: AlignedSequence) -> None:
    n = len(seq.receiver_ids)
    lengths = {name: len(getattr(seq, name)) for name in ("receiver_mask", "sharer_ids", "sharer_mask", "fusion_mask")}
    assert set(lengths.values()) == {n}, (n, lengths)


def _squash(text: str) -> str:
    return "".join(text.split())


def test_equal_lengths_and_alternating_sections(aligner: TokenAligner) -> None:
    seq = aligner.align_messages(CHAT)
    _lengths_equal(seq)
    assert len(seq.sections) == 2 * len(CHAT) + 1
    assert [s.kind for s in seq.sections] == ["template", "message"] * len(CHAT) + ["template"]
    assert [s.message_index for s in seq.message_sections] == list(range(len(CHAT)))
    assert seq.sections[0].start == 0 and seq.sections[-1].end == len(seq)
    assert all(a.end == b.start for a, b in zip(seq.sections, seq.sections[1:]))


def test_message_spans_decode_to_message_text(aligner: TokenAligner) -> None:
    """The receiver's message section decodes to the message (whitespace aside: WordLevel drops it)."""
    seq = aligner.align_messages(CHAT)
    for section in seq.message_sections:
        decoded = aligner.receiver_tokenizer.decode(seq.receiver_ids[section.start : section.end])
        assert _squash(decoded) == _squash(CHAT[section.message_index]["content"])


def test_fusion_mask_is_exactly_message_tokens(aligner: TokenAligner) -> None:
    seq = aligner.align_messages(CHAT)
    expected = [False] * len(seq)
    for section in seq.message_sections:
        expected[section.start : section.end] = [True] * (section.end - section.start)
    assert seq.fusion_mask == expected
    assert any(seq.fusion_mask)
    # message tokens are never padding on either side
    assert all(r == s == 1 for r, s, f in zip(seq.receiver_mask, seq.sharer_mask, seq.fusion_mask) if f)


def test_template_pads_are_masked(aligner: TokenAligner) -> None:
    seq = aligner.align_messages(CHAT)
    for side in ("receiver", "sharer"):
        ids, mask = getattr(seq, f"{side}_ids"), getattr(seq, f"{side}_mask")
        pad = getattr(aligner, f"{side}_pad_id")
        for section in seq.sections:
            part = mask[section.start : section.end]
            if section.kind == "message":
                assert all(part)
            else:  # this side's padding first, so the section ends on a real token
                real = sum(part)
                assert part == [0] * (len(part) - real) + [1] * real
                assert ids[section.start : section.end - real] == [pad] * (len(part) - real)
        # native template tokens are kept: the unmasked template tokens are the side's own rendering
        native = [i for i, m, f in zip(ids, mask, seq.fusion_mask) if m and not f]
        text = seq.receiver_text if side == "receiver" else seq.sharer_text
        tok = getattr(aligner, f"{side}_tokenizer")
        assert set(native) <= set(tok(text, add_special_tokens=False)["input_ids"])
    # the two templates differ in length, so at least one side was padded somewhere
    assert 0 in seq.receiver_mask or 0 in seq.sharer_mask


def test_first_and_longest_differ() -> None:
    """'You' is one WordLevel token; the toy BPE splits it into 'Y' + 'ou'."""
    receiver, sharer = wordlevel_tokenizer(), bpe_tokenizer()
    (you,) = receiver.encode("You", add_special_tokens=False)
    pieces = sharer.encode("You", add_special_tokens=False)
    assert [sharer.decode([p]) for p in pieces] == ["Y", "ou"]
    assert TokenAligner(receiver, sharer, strategy="first").align_tokens([you]) == [pieces[0]]
    assert TokenAligner(receiver, sharer, strategy="longest").align_tokens([you]) == [pieces[1]]


def test_longest_prefers_first_on_ties() -> None:
    receiver, sharer = wordlevel_tokenizer(), bpe_tokenizer()
    aligner = TokenAligner(receiver, sharer, strategy="longest")
    for token, token_id in receiver.get_vocab().items():
        pieces = sharer.encode(token, add_special_tokens=False)
        if len(pieces) < 2 or token_id in receiver.all_special_ids:
            continue
        lengths = [len(sharer.decode([p])) for p in pieces]
        assert aligner.align_tokens([token_id]) == [pieces[lengths.index(max(lengths))]], token


def test_special_tokens_map_by_role_then_string() -> None:
    receiver, sharer = bpe_tokenizer(), wordlevel_tokenizer()
    aligner = TokenAligner(receiver, sharer)
    ids = [receiver.eos_token_id, receiver.bos_token_id, receiver.unk_token_id, receiver.pad_token_id]
    assert aligner.align_tokens(ids) == [
        sharer.eos_token_id,
        sharer.bos_token_id,
        sharer.unk_token_id,
        sharer.pad_token_id,
    ]
    # <|im_start|> has no role and no WordLevel string: the sharer's unk
    assert aligner.align_tokens(receiver.convert_tokens_to_ids(["<|im_start|>"])) == [sharer.unk_token_id]


def test_text_without_sharer_tokens_maps_to_unk() -> None:
    receiver, sharer = bpe_tokenizer(), wordlevel_tokenizer()
    space = receiver.encode("a  b", add_special_tokens=False)[1]  # a whitespace-only BPE token
    assert receiver.decode([space]).strip() == ""
    assert TokenAligner(receiver, sharer).align_tokens([space]) == [sharer.unk_token_id]


def test_align_tokens_memoises_per_token_text() -> None:
    aligner = TokenAligner(wordlevel_tokenizer(), bpe_tokenizer())
    ids = aligner.receiver_tokenizer.encode("the capital of France", add_special_tokens=False)
    first = aligner.align_tokens(ids)
    assert set(aligner._text_map) == {aligner.receiver_tokenizer.decode([i]) for i in ids}
    assert aligner.align_tokens(list(reversed(ids))) == list(reversed(first))


def test_same_vocabulary_maps_identically() -> None:
    receiver, sharer = bpe_tokenizer(), no_template_tokenizer()
    aligner = TokenAligner(receiver, sharer)
    ids = receiver.encode("Hello world, 😀!", add_special_tokens=False)
    assert aligner.align_tokens(ids) == ids
    seq = aligner.align_messages(CHAT)
    assert all(s.round_trip_ok for s in seq.message_sections)


def test_round_trip_holds_for_longest_on_one_to_one_tokens() -> None:
    """WordLevel -> BPE: each of these words is a single toy-BPE token, so nothing is lost."""
    receiver, sharer = wordlevel_tokenizer(), bpe_tokenizer()
    content = "How are A, B, C?"
    for word in ("How", "are", "A", ",", "B", "C", "?"):
        assert len(sharer.encode(word, add_special_tokens=False)) == 1, word
    aligner = TokenAligner(receiver, sharer, strategy="longest")
    seq = aligner.align_messages([{"role": "user", "content": content}])
    (section,) = seq.message_sections
    assert section.round_trip_ok is True
    decoded = sharer.decode(seq.sharer_ids[section.start : section.end])
    assert _squash(decoded) == _squash(content)
    # a word the sharer splits cannot survive a 1:1 mapping, and the check says so
    lossy = aligner.align_messages([{"role": "user", "content": "You are a helpful assistant."}])
    assert lossy.message_sections[0].round_trip_ok is False


def test_fidelity_counts_native_and_lossy_conversations() -> None:
    """`fidelity` tells a sharer that reads its own tokens from one that reads a re-cut or lossy text."""
    sharer = bpe_tokenizer()
    sharer.add_tokens(["zqzq"])  # a vocabulary unequal to the receiver's, so the 1:1 mapping runs
    same_cuts = TokenAligner(bpe_tokenizer(), sharer)
    assert not same_cuts._identity
    fid = same_cuts.fidelity([CHAT, [CHAT[1]]])
    words = sum(len(sharer.encode(m["content"], add_special_tokens=False)) for m in [*CHAT, CHAT[1]])
    assert fid == AlignmentFidelity(2, words, words, native_conversations=2, lossy_conversations=0)

    receiver, sharer = wordlevel_tokenizer(), bpe_tokenizer()
    texts = ["How are A, B, C?", "You are a helpful assistant."]  # re-cut but whole; loses characters
    fid = TokenAligner(receiver, sharer).fidelity([[{"role": "user", "content": t}] for t in texts])
    assert fid == AlignmentFidelity(
        conversations=2,
        message_tokens=sum(len(receiver.encode(t, add_special_tokens=False)) for t in texts),
        native_tokens=sum(len(sharer.encode(t, add_special_tokens=False)) for t in texts),
        native_conversations=0,
        lossy_conversations=1,
    )


def test_batch_equals_single_examples() -> None:
    aligner = TokenAligner(bpe_tokenizer(), wordlevel_tokenizer())
    conversations = [CHAT, CHAT[1:2], [{"role": "user", "content": "Hello world, how are you today?"}]]
    batch = aligner.align_batch(conversations)
    b, n = len(conversations), max(len(aligner.align_messages(c)) for c in conversations)
    for name in ("receiver_input_ids", "receiver_attention_mask", "sharer_input_ids", "sharer_attention_mask"):
        tensor = getattr(batch, name)
        assert tensor.shape == (b, n) and tensor.dtype == torch.long, (name, tensor.shape, tensor.dtype)
    assert batch.fusion_mask.shape == (b, n) and batch.fusion_mask.dtype == torch.bool
    for row, conversation in enumerate(conversations):
        single = aligner.align_messages(conversation)
        pad = batch.left_padding[row]
        assert pad == n - len(single)
        assert batch.receiver_input_ids[row, pad:].tolist() == single.receiver_ids
        assert batch.receiver_attention_mask[row, pad:].tolist() == single.receiver_mask
        assert batch.sharer_input_ids[row, pad:].tolist() == single.sharer_ids
        assert batch.sharer_attention_mask[row, pad:].tolist() == single.sharer_mask
        assert batch.fusion_mask[row, pad:].tolist() == single.fusion_mask
        # left padding only: masked and unfused, with each side's pad id
        assert batch.receiver_attention_mask[row, :pad].sum() == 0 and batch.sharer_attention_mask[row, :pad].sum() == 0
        assert not batch.fusion_mask[row, :pad].any()
        assert (batch.receiver_input_ids[row, :pad] == aligner.receiver_pad_id).all()
        assert (batch.sharer_input_ids[row, :pad] == aligner.sharer_pad_id).all()
    assert min(batch.left_padding) == 0


def test_conversations_are_memoised_and_copies_are_independent() -> None:
    aligner = TokenAligner(bpe_tokenizer(), wordlevel_tokenizer())
    seq = aligner.align_messages(CHAT)
    seq.receiver_ids.append(-1)
    again = aligner.align_messages([dict(m) for m in CHAT])
    assert len(aligner._sequences) == 1
    assert again.receiver_ids == seq.receiver_ids[:-1]
    aligner.align_messages(CHAT, add_generation_prompt=False)
    assert len(aligner._sequences) == 2


def test_plain_text_fallback() -> None:
    messages = CHAT[:2]
    assert render_plain(messages) == (
        "system: You are a helpful assistant.\nuser: What is the capital of France?\nassistant:"
    )
    assert render_plain(messages, add_generation_prompt=False).endswith("France?\n")
    assert render_chat(no_template_tokenizer(), messages) == render_plain(messages)
    aligner = TokenAligner(wordlevel_tokenizer(), no_template_tokenizer())
    seq = aligner.align_messages(messages)
    _lengths_equal(seq)
    assert seq.sharer_text == render_plain(messages)
    # the sharer's last template section is its plain generation prompt
    last = seq.sections[-1]
    tail = [i for i, m in zip(seq.sharer_ids[last.start : last.end], seq.sharer_mask[last.start : last.end]) if m]
    assert aligner.sharer_tokenizer.decode(tail).endswith("assistant:")


def test_enable_thinking_reaches_only_templates_that_read_it() -> None:
    aligner = TokenAligner(bpe_tokenizer(), wordlevel_tokenizer())
    seq = aligner.align_messages(CHAT[:2], enable_thinking=False)
    assert seq.receiver_text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert seq.sharer_text.endswith("[assistant]")
    assert aligner.align_messages(CHAT[:2]).receiver_text.endswith("<|im_start|>assistant\n")


def test_last_assistant_message_is_findable_for_training() -> None:
    aligner = TokenAligner(wordlevel_tokenizer(), bpe_tokenizer())
    seq = aligner.align_messages(CHAT[:3], add_generation_prompt=False)
    last = seq.message_sections[-1]
    assert last.message_index == 2 and CHAT[last.message_index]["role"] == "assistant"
    assert seq.sections[-1].kind == "template" and seq.sections[-1].start == last.end
    decoded = aligner.receiver_tokenizer.decode(seq.receiver_ids[last.start : last.end])
    assert _squash(decoded) == _squash(CHAT[2]["content"])


def test_unicode_and_emoji_do_not_crash(aligner: TokenAligner) -> None:
    messages = [
        {"role": "user", "content": "Héllo wörld 😀👍🏽 — 你好, ça va? ∑x² ✓"},
        {"role": "assistant", "content": "🙂"},
        {"role": "user", "content": ""},
    ]
    seq = aligner.align_messages(messages)
    _lengths_equal(seq)
    assert len(seq.message_sections) == 3
    assert seq.message_sections[2].start == seq.message_sections[2].end  # empty content, empty section
    assert len(aligner.preview(messages)) == len(seq)


def test_trimming_template_is_located_by_anchors() -> None:
    """The WordLevel template trims content, so the exact path fails; the content 'user' also occurs
    in the role header before it, and the anchored search must pick the message, not the header."""
    aligner = TokenAligner(bpe_tokenizer(), wordlevel_tokenizer())
    messages = [{"role": "user", "content": " user "}, {"role": "assistant", "content": "  user"}]
    seq = aligner.align_messages(messages)
    assert "[user] user </s>" in seq.sharer_text
    for section in seq.message_sections:
        assert aligner.receiver_tokenizer.decode(seq.receiver_ids[section.start : section.end]).strip() == "user"
    # the sharer's template sections are exactly its role headers, so its messages were cut correctly
    sharer = aligner.sharer_tokenizer
    for section, header in zip(seq.sections[::2], ("<s>[user]", "</s>\n[assistant]", "</s>\n[assistant]")):
        real = sum(seq.sharer_mask[section.start : section.end])
        assert seq.sharer_ids[section.end - real : section.end] == sharer.encode(header, add_special_tokens=False)


@pytest.mark.parametrize("seed", range(5))
def test_random_conversations_keep_the_invariants(aligner: TokenAligner, seed: int) -> None:
    """Random word salad with odd spacing, punctuation, role names and special-token strings."""
    rng = random.Random(seed)
    words = " ".join(CORPUS).split() + ["user", "assistant", "<|im_end|>", "</s>", "😀", "\n", "  ", "[", "]"]
    roles = ["system", "user", "assistant"]
    messages = [
        {"role": rng.choice(roles), "content": " ".join(rng.choices(words, k=rng.randint(0, 12)))}
        for _ in range(rng.randint(1, 5))
    ]
    seq = aligner.align_messages(messages, add_generation_prompt=rng.random() < 0.5)
    _lengths_equal(seq)
    assert [s.message_index for s in seq.message_sections] == list(range(len(messages)))
    assert sum(seq.fusion_mask) == sum(s.end - s.start for s in seq.message_sections)


def test_preview_rows() -> None:
    aligner = TokenAligner(wordlevel_tokenizer(), bpe_tokenizer())
    messages = [{"role": "user", "content": "Hello world"}]
    rows = aligner.preview(messages)
    seq = aligner.align_messages(messages)
    assert [f for _, _, f in rows] == seq.fusion_mask
    assert rows[0] == ("<s>", "<|im_start|>", False)
    fused = [(r, s) for r, s, f in rows if f]
    assert [r for r, _ in fused] == ["Hello", "world"]
    assert all(s and s in r for r, s in fused)  # the longest BPE piece of each word
    assert any(r == "" or s == "" for r, s, _ in rows)  # template padding shows as empty


def test_mismatched_sections_give_a_clear_error() -> None:
    """A sharer template that drops the system prompt cannot be cut into the same sections."""
    sharer = wordlevel_tokenizer()
    sharer.chat_template = (
        "{% for m in messages %}{% if m['role'] != 'system' %}[{{ m['role'] }}] {{ m['content'] }}\n"
        "{% endif %}{% endfor %}"
    )
    aligner = TokenAligner(bpe_tokenizer(), sharer)
    expected = r"message 0 \(role 'system'.*sharer's rendered prompt.*same template/message sections.*Fix"
    with pytest.raises(AlignmentError, match=expected):
        aligner.align_messages(CHAT)
    aligner.align_messages(CHAT[1:])  # without the system message it aligns


def test_template_errors_name_the_side() -> None:
    sharer = wordlevel_tokenizer()
    sharer.chat_template = "{{ raise_exception('no system role') if messages[0]['role'] == 'system' else '' }}x"
    with pytest.raises(AlignmentError, match="sharer's chat template failed to render.*no system role"):
        TokenAligner(bpe_tokenizer(), sharer).align_messages(CHAT)


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"strategy must be one of \('first', 'longest'\), got 'prefix'"):
        TokenAligner(bpe_tokenizer(), wordlevel_tokenizer(), strategy="prefix")  # type: ignore[arg-type]
    slow = types.SimpleNamespace(is_fast=False)
    with pytest.raises(ValueError, match="sharer tokenizer .* not a fast tokenizer.*use_fast=True"):
        TokenAligner(bpe_tokenizer(), slow)  # type: ignore[arg-type]
    aligner = TokenAligner(bpe_tokenizer(), wordlevel_tokenizer())
    with pytest.raises(TypeError, match="message 1 must be a mapping with string 'role' and 'content'"):
        aligner.align_messages([CHAT[0], {"role": "user", "content": None}])
    with pytest.raises(ValueError, match="at least one conversation"):
        aligner.align_batch([])


def test_generation_prompt_ends_on_a_real_receiver_token() -> None:
    """The receiver runs the last prompt token over the fused cache: it must not be padding."""
    for receiver, sharer in ((bpe_tokenizer(), wordlevel_tokenizer()), (wordlevel_tokenizer(), bpe_tokenizer())):
        seq = TokenAligner(receiver, sharer).align_messages(CHAT[:1])
        assert seq.receiver_mask[-1] == 1 and seq.sharer_mask[-1] == 1


def test_words_unknown_to_the_receiver_reach_the_sharer_by_their_text() -> None:
    """A receiver `<unk>` maps through the text it covers, so the sharer still sees the word."""
    receiver, sharer = wordlevel_tokenizer(), bpe_tokenizer()
    aligner = TokenAligner(receiver, sharer)
    seq = aligner.align_messages([{"role": "user", "content": "zorbo"}])
    (section,) = seq.message_sections
    assert receiver.convert_ids_to_tokens(seq.receiver_ids[section.start : section.end]) == ["<unk>"]
    mapped = sharer.decode(seq.sharer_ids[section.start : section.end])
    assert mapped and mapped in "zorbo" and mapped != sharer.unk_token
