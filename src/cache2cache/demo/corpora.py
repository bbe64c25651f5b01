"""What each side of the demo reads: the sharer's and the receiver's training texts, the fuser's
training conversations and the held-out questions, all rendered from one `World`."""

from __future__ import annotations

import random

from transformers import PreTrainedTokenizerFast

from ..chat import render_chat
from .world import ATTRIBUTES, World, background_conversation, qa_conversation, reading_conversation


def sharer_texts(world: World, tokenizer: PreTrainedTokenizerFast, seed: int) -> list[str]:
    """The sharer's corpus: facts of A, B and C (single facts and whole bios), and, through its chat
    template, questions and background requests about A and C only (so its QA must generalise to B)."""
    rng = random.Random(seed)
    people_with_facts = world.fuser_train + world.held_out + world.receiver_known
    texts = [f"{tokenizer.bos_token} {p.fact(a)} {tokenizer.eos_token}" for p in people_with_facts for a in ATTRIBUTES]
    texts += [f"{tokenizer.bos_token} {p.bio()} {tokenizer.eos_token}" for p in people_with_facts]
    for p in world.fuser_train + world.receiver_known:
        for a in ATTRIBUTES:
            texts.append(render_chat(tokenizer, qa_conversation(p, a), add_generation_prompt=False))
        texts.append(
            render_chat(tokenizer, background_conversation(p, rng.choice(ATTRIBUTES)), add_generation_prompt=False)
        )
    return texts


def receiver_texts(world: World, tokenizer: PreTrainedTokenizerFast) -> list[str]:
    """The receiver's corpus: facts and questions about C (its own knowledge circuit), and reading
    practice on R (the background fact a sharer would write, then a question), in its own chat template."""
    texts = [
        f"{tokenizer.bos_token} {p.fact(a)} {tokenizer.eos_token}" for p in world.receiver_known for a in ATTRIBUTES
    ]
    for p in world.receiver_known:
        texts += [render_chat(tokenizer, qa_conversation(p, a), add_generation_prompt=False) for a in ATTRIBUTES]
    for p in world.reading:
        texts += [render_chat(tokenizer, reading_conversation(p, a), add_generation_prompt=False) for a in ATTRIBUTES]
    return texts


def receiver_vocabulary_texts(world: World) -> tuple[list[str], set[str]]:
    """Texts to build the receiver's vocabulary from, and the names kept out of it (A, B and R)."""
    texts = [p.bio() + " " + " ".join(p.question(a) for a in ATTRIBUTES) for p in world.receiver_known]
    texts += [p.background(a) for p in world.reading for a in ATTRIBUTES]
    hidden = {p.name for p in world.fuser_train + world.held_out + world.reading}
    return texts, hidden


def fuser_conversations(world: World) -> list[list[dict[str, str]]]:
    """The fuser's training set: every question about A with its answer."""
    return [qa_conversation(p, a) for p in world.fuser_train for a in ATTRIBUTES]


def held_out_questions(world: World) -> list[tuple[list[dict[str, str]], str]]:
    """Every question about B (never seen by the fuser), with its gold answer."""
    return [([qa_conversation(p, a)[0]], p.value(a)) for p in world.held_out for a in ATTRIBUTES]
