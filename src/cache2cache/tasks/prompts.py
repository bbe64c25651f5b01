"""The prompts of the paper's multiple-choice evaluation and of the T2T baseline, as chat messages.

- `mc_prompt`: the receiver's (and C2C's) single user turn, the reference's non-CoT
  `build_prompt` byte for byte for four options (docs/method.md §6.3). The instruction line names the letters
  of the item's own options: "A/B/C/D" for four, "A/B/C" for three, "A/B/C/D/E" for five. (The
  reference always writes "A/B/C/D", which tells a model not to pick E on a five-option ARC item.)
- `question_turn`: the receiver's question in each prompt style, shared by training and evaluation.
- `mc_training_messages`: the MMLU/OpenBookQA chat form used for training (docs/method.md §5.2), or
  the plain and listed forms (the question, with or without its lettered options; reply the gold
  option's text) that match the log-likelihood evaluation over choice texts.
- `background_prompt` / `t2t_messages`: the T2T baseline (docs/method.md §6.7). The sharer writes background
  for the question stem alone; the receiver then reads a 3-turn chat ending in `mc_prompt`.

Messages are `{"role": ..., "content": ...}` dicts for `tokenizer.apply_chat_template`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from .answers import letter

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .items import MultipleChoiceItem

Message = dict[str, str]

PromptStyle = Literal["paper", "plain", "listed"]
"""How a multiple-choice item is asked: "paper", the paper's prompt with lettered options and its
instructions; "plain", the bare question; "listed", the question and its lettered options with no
instructions (evaluation: `--prompt_style`; training: an `mc` source's `prompt_style`). Plain and
listed are answered with an option's text, so only paper prompts can be scored by letter."""

T2T_BACKGROUND_PROMPT = (
    "In one clear sentence, describe the most essential background knowledge needed to answer the "
    "question: {question}\n\nDo NOT directly solve or give answer to the question."
)
"""The sharer's stage-1 prompt in T2T; `{question}` is the question stem without options.

This is the wording of the paper's appendix (Text 3, "Prompt for Sharer model in T2T Evaluation"),
which is also the `background_prompt` of the reference's `unified_eval.yaml` plus the "Do NOT ..."
sentence its gradio demo appends after a blank line. We use it rather than the evaluator's code default
("Briefly describe the most useful background to solve the problem:\\n\\n{question}") because it is
what the paper reports: one sentence of background, and the sharer told not to answer. The paper's PDF
text does not show the whitespace between the two sentences; the blank line follows the gradio demo.
"""


def format_choices(choices: Sequence[str]) -> str:
    """The lettered option block of the reference: one `"A. {text}\\n"` line per option."""
    return "".join(f"{letter(i)}. {text}\n" for i, text in enumerate(choices))


def mc_prompt(question: str, choices: Sequence[str], *, use_template: bool = True) -> str:
    """The multiple-choice user message of the paper's evaluation (docs/method.md §6.3).

    Args:
        question: The question stem.
        choices: The option texts, lettered A, B, ... in order.
        use_template: False gives the bare `question + "\\n\\nChoices:\\n" + choices` variant.

    Returns:
        The user message text. With `use_template`, it ends in "The correct answer is" so the reply
        continues that sentence. The option block ends in a newline, so three newlines precede
        "Instructions:", as in the reference.
    """
    block = format_choices(choices)
    if not use_template:
        return question + "\n\nChoices:\n" + block
    answer_format = "/".join(letter(i) for i in range(len(choices)))
    return (
        "Accurately answer the following question:\n\n" + question + "\n\nChoices:\n" + block + "\n\nInstructions:\n"
        "- Carefully read the question and all options.\n"
        "- Select the single most correct answer.\n"
        f'- Respond ONLY in the following format: "The correct answer is {answer_format}".\n'
        "- Do not include any explanations, additional text, or punctuation besides the answer.\n\n"
        "The correct answer is"
    )


def question_turn(item: MultipleChoiceItem, style: PromptStyle) -> str:
    """The receiver's question turn in `style`, as `c2c eval --prompt_style` asks it.

    Returns:
        paper: `mc_prompt` (the paper's instructions, ending in "The correct answer is");
        plain: the bare question; listed: `"{q}\\n\\nChoices:\\nA. ...\\nB. ..."`, stripped.
    """
    if style == "paper":
        return mc_prompt(item.question, item.choices)
    if style == "listed":
        return mc_prompt(item.question, item.choices, use_template=False).strip()
    return item.question


def mc_training_messages(item: MultipleChoiceItem, style: PromptStyle = "paper") -> list[Message]:
    """The training chat for one item, in one of the prompt styles of the evaluation.

    Args:
        item: The item; its gold answer is the reply.
        style: "paper" (docs/method.md §5.2): the question and lettered options, then the gold letter.
            "plain" and "listed": `question_turn` in that style, then the gold option's text, the
            chat that `c2c eval --prompt_style plain|listed --loglik_target texts` scores.

    Returns:
        paper: `[user "Question: {q}\\n\\nChoices:\\nA. ...\\nB. ...", assistant "The correct answer is {L}."]`,
        the user text stripped as in the reference's MMLU/OpenBookQA chat datasets.
        plain, listed: `[user question_turn(item, style), assistant "{gold option text}"]`.
    """
    if style != "paper":
        return [
            {"role": "user", "content": question_turn(item, style)},
            {"role": "assistant", "content": item.choices[item.answer]},
        ]
    user = f"Question: {item.question}\n\nChoices:\n{format_choices(item.choices)}".strip()
    return [
        {"role": "user", "content": user},
        {"role": "assistant", "content": f"The correct answer is {letter(item.answer)}."},
    ]


def context_first(item: MultipleChoiceItem, prompt: list[Message]) -> list[Message]:
    """`prompt` with the item's context before it as a system turn: what the sharer reads when the
    context is for it alone (training's `sharer_context`, `c2c eval --sharer_context`); `prompt`
    unchanged when the item has no context."""
    if item.context is None:
        return prompt
    return [{"role": "system", "content": item.context}, *prompt]


def background_prompt(question: str, template: str = T2T_BACKGROUND_PROMPT) -> str:
    """The T2T sharer's stage-1 user message: `template` with `{question}` replaced by the stem.

    Raises:
        ValueError: if `template` has no `{question}` placeholder.
    """
    if "{question}" not in template:
        raise ValueError(f"the T2T background template must contain '{{question}}'; got {template!r}")
    return template.replace("{question}", question)


def background_messages(item: MultipleChoiceItem, template: str = T2T_BACKGROUND_PROMPT) -> list[Message]:
    """The T2T stage-1 chat for one item: a single user turn asking for background, no options shown."""
    return [{"role": "user", "content": background_prompt(item.question, template)}]


def t2t_messages(question_stem_prompt: str, background: str, mc_prompt: str) -> list[Message]:
    """The T2T stage-2 chat the receiver answers (docs/method.md §6.7).

    Args:
        question_stem_prompt: The stage-1 user message (`background_prompt(item.question)`).
        background: The sharer's stage-1 reply.
        mc_prompt: The full multiple-choice prompt (`mc_prompt(item.question, item.choices)`).

    Returns:
        `[user question_stem_prompt, assistant background, user mc_prompt]`.
    """
    return [
        {"role": "user", "content": question_stem_prompt},
        {"role": "assistant", "content": background},
        {"role": "user", "content": mc_prompt},
    ]
