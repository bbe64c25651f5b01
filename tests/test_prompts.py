"""The evaluation, training and T2T prompts, checked character for character against docs/method.md §5.2, §6.3 and §6.7."""

from __future__ import annotations

import pytest

from cache2cache.tasks import MultipleChoiceItem
from cache2cache.tasks.prompts import (
    T2T_BACKGROUND_PROMPT,
    background_messages,
    background_prompt,
    mc_prompt,
    mc_training_messages,
    question_turn,
    t2t_messages,
)

ITEM = MultipleChoiceItem("x", "Which gas do plants absorb?", ["Oxygen", "Carbon dioxide", "Helium", "Neon"], 1)

# docs/method.md §6.3 with `{question}` and `{choices}` filled in; `{choices}` is "A. ...\n" per option, so the
# block's own newline plus the template's "\n\n" put three newlines before "Instructions:".
PAPER_PROMPT = (
    "Accurately answer the following question:\n\n"
    "Which gas do plants absorb?\n\n"
    "Choices:\n"
    "A. Oxygen\nB. Carbon dioxide\nC. Helium\nD. Neon\n"
    "\n\n"
    "Instructions:\n"
    "- Carefully read the question and all options.\n"
    "- Select the single most correct answer.\n"
    '- Respond ONLY in the following format: "The correct answer is A/B/C/D".\n'
    "- Do not include any explanations, additional text, or punctuation besides the answer.\n\n"
    "The correct answer is"
)


def test_paper_prompt_is_exact() -> None:
    assert mc_prompt(ITEM.question, ITEM.choices) == PAPER_PROMPT
    assert question_turn(ITEM, "paper") == PAPER_PROMPT


def test_prompt_without_template() -> None:
    expected = "Which gas do plants absorb?\n\nChoices:\nA. Oxygen\nB. Carbon dioxide\nC. Helium\nD. Neon\n"
    assert mc_prompt(ITEM.question, ITEM.choices, use_template=False) == expected


@pytest.mark.parametrize(("choices", "letters"), [(["p", "q", "r"], "A/B/C"), (list("vwxyz"), "A/B/C/D/E")])
def test_letters_follow_the_number_of_choices(choices: list[str], letters: str) -> None:
    prompt = mc_prompt("Q?", choices)
    assert f'"The correct answer is {letters}"' in prompt
    assert prompt.count("\n" + letters[-1] + ". ") == 1 and f"{letters[-1]}. {choices[-1]}\n" in prompt


def test_training_messages_follow_spec_5_2() -> None:
    assert mc_training_messages(ITEM) == [
        {"role": "user", "content": "Question: Which gas do plants absorb?\n\nChoices:\nA. Oxygen\nB. Carbon dioxide\nC. Helium\nD. Neon"},
        {"role": "assistant", "content": "The correct answer is B."},
    ]  # fmt: skip


def test_plain_training_messages_are_the_chat_that_plain_loglik_scores() -> None:
    # The bare question as the user turn (what `c2c eval --prompt_style plain` sends) and the gold
    # option's text as the reply (what `--loglik_target texts` scores for the right choice).
    assert mc_training_messages(ITEM, "plain") == [
        {"role": "user", "content": "Which gas do plants absorb?"},
        {"role": "assistant", "content": "Carbon dioxide"},
    ]


def test_listed_training_messages_show_the_options_and_reply_with_the_gold_text() -> None:
    # The question and lettered options without the paper's instructions, as `c2c eval --prompt_style
    # listed` asks it, and the gold option's text as the reply, as `--loglik_target texts` scores it.
    listed = "Which gas do plants absorb?\n\nChoices:\nA. Oxygen\nB. Carbon dioxide\nC. Helium\nD. Neon"
    assert question_turn(ITEM, "listed") == listed
    assert mc_training_messages(ITEM, "listed") == [
        {"role": "user", "content": listed},
        {"role": "assistant", "content": "Carbon dioxide"},
    ]


def test_the_plain_question_turn_is_the_bare_question() -> None:
    assert question_turn(ITEM, "plain") == ITEM.question


def test_t2t_prompts() -> None:
    stage1 = background_prompt(ITEM.question)
    assert stage1 == (
        "In one clear sentence, describe the most essential background knowledge needed to answer the question: "
        "Which gas do plants absorb?\n\nDo NOT directly solve or give answer to the question."
    )
    assert "Oxygen" not in stage1  # the sharer sees the stem only
    assert background_messages(ITEM) == [{"role": "user", "content": stage1}]
    assert background_prompt("Q?", "Context for {question}") == "Context for Q?"
    with pytest.raises(ValueError, match="must contain '\\{question\\}'"):
        background_prompt("Q?", "no placeholder")
    assert "{question}" in T2T_BACKGROUND_PROMPT
    assert t2t_messages(stage1, "Plants take in CO2.", PAPER_PROMPT) == [
        {"role": "user", "content": stage1},
        {"role": "assistant", "content": "Plants take in CO2."},
        {"role": "user", "content": PAPER_PROMPT},
    ]


def test_braces_in_questions_are_kept_verbatim() -> None:
    question = "In Python, what does {x} == {'x'} print? {question}"
    assert question in mc_prompt(question, ["True", "False"])
    assert question in background_prompt(question)
