"""Answer letters and extraction of the chosen option from a model's free-text reply.

`extract_choice` turns a generated reply to a multiple-choice prompt (see `prompts.py`) into a choice
index, or None when the reply gives no answer or an ambiguous one. It replaces the reference's
`extract_answer_from_content` (docs/method.md §6.5), which returns the last A-D character it can find: that
counts refusals and "A or B" as answers, reads the article "a" as choice A, ignores E-J, and picks
"B" in "The answer is A. B is wrong because...". The rules here, in order:

1. **Answer keyword.** The first phrase such as "The correct answer is", "Answer:", "Final answer",
   "it's" (as in "I think it's D"), "\\boxed{" or "答案是" that is followed by a valid letter wins, so
   later discussion of other options does not change the answer. A keyword followed by "A or B" / "A/B"
   (an echo of the instruction, or hedging) is skipped.
2. **Leading letter.** A reply that starts with a letter in choice form ("B", "B.", "B) because",
   "(b)") answers with that letter, unless the reply goes on to repeat the option list ("A. gas" on
   one line, "B. liquid" on the next): that "A" is an echo of the prompt, not a choice.
3. **Refusal.** "I cannot answer", "None of the above", "I don't know", ... give None, unless a
   choice's own text is in the reply (a choice may read "None of the above").
4. **Choice text.** With `choices` given, a reply that contains exactly one choice's text verbatim
   (case and spacing aside; a choice contained in a longer matching choice does not count) answers
   with it.
5. **Lone letter.** If exactly one distinct valid letter stands alone in the reply, it is the answer;
   several distinct letters ("A or B", "A and C are both true") are ambiguous and give None.

Letters are case-sensitive where English makes them ambiguous: a lowercase letter counts only in a
clear answer context ("Answer: (c)", "answer: c.", "b)", a reply that is just "c"), never as the
article "a"; an uppercase "I" followed by a word ("I think") is the pronoun, and an uppercase "A"
followed by a word ("A cell") is the article, unless that word is a verb or conjunction that
follows a choice letter ("A is correct", "A or B"). Letters beyond `num_choices`
are never answers. `<think>...</think>` blocks and markdown emphasis (`*`, backticks) are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MAX_CHOICES = 26
"""The most options a prompt can letter (A-Z)."""


def letter(index: int) -> str:
    """The letter that labels choice `index` (0 -> "A", 25 -> "Z").

    Raises:
        ValueError: if `index` is outside 0..25.
    """
    if not 0 <= index < MAX_CHOICES:
        raise ValueError(f"choice index {index} has no letter: choices are lettered A-Z (0..{MAX_CHOICES - 1})")
    return chr(ord("A") + index)


def letters(num_choices: int) -> list[str]:
    """The letters of `num_choices` options: `letters(4) == ["A", "B", "C", "D"]`."""
    _check_num_choices(num_choices)
    return [letter(i) for i in range(num_choices)]


def letter_index(text: str) -> int:
    """The choice index of a single letter, either case: "B" -> 1, "c" -> 2.

    Raises:
        ValueError: if `text` is not one letter A-Z (after stripping spaces).
    """
    stripped = text.strip()
    if len(stripped) != 1 or not ("A" <= stripped.upper() <= "Z"):
        raise ValueError(f"expected a single choice letter A-Z, got {text!r}")
    return ord(stripped.upper()) - ord("A")


def _check_num_choices(num_choices: int) -> None:
    if not 1 <= num_choices <= MAX_CHOICES:
        raise ValueError(f"num_choices must be between 1 and {MAX_CHOICES}, got {num_choices}")


_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL)
_MARKUP = re.compile(r"[*`]")

# Phrases after which a letter is the answer. Tried at every position of the reply; the earliest
# one followed by a valid letter wins.
_KEYWORDS = (
    r"(?:the\s+)?(?:correct|right|best|final)\s+(?:answer|option|choice)"
    r"(?:\s+(?:is|would\s+be|will\s+be|should\s+be|must\s+be))?",
    r"(?:the\s+)?answer(?:\s+(?:is|would\s+be|will\s+be|should\s+be|must\s+be))?",
    r"i\s+(?:would\s+)?(?:choose|pick|select|go\s+with)",
    r"i['’]d\s+(?:choose|pick|select|go\s+with)",
    r"it['’]s|it\s+is",
    r"\\boxed\{",
    r"正确答案(?:是|为)?|答案(?:是|为|应该是)?|选择?",
)
_KEYWORD_LETTER = re.compile(
    r"(?<![A-Za-z])(?:" + "|".join(_KEYWORDS) + r")"
    r"[\s:：\-–—=>$]*"
    r"(?:(?:probably|likely|most\s+likely|definitely|clearly|indeed)\s+)?"
    r"(?:(?:option|choice|letter)\s*)?[\s:：]*"
    r"(?P<open>[(\[{]?)\s*(?P<letter>[A-Za-z])(?![A-Za-z0-9])",
    re.IGNORECASE,
)
# "A or B", "A/B": the letter right after a keyword is a hedge or an echo of the instruction.
_ALTERNATIVE = re.compile(r"\s*[)\]}]?\s*(?:or|/)\s*[(\[]?\s*(?P<other>[A-Za-z])(?![A-Za-z0-9])", re.IGNORECASE)
_LEADING_LETTER = re.compile(
    r"\s*(?:(?P<bracketed>[(\[][A-Za-z][)\]])|(?P<letter>[A-Za-z])(?P<after>[.):\]](?![A-Za-z])|\s*$))"
)
# A reply that opens by repeating the option list: "A. gas\nB. liquid\n...".
_OPTION_LIST_ECHO = re.compile(r"\s*[(\[]?A[.):\]]\s*\S[^\n]*\n\s*[(\[]?B[.):\]]")
_REFUSAL = re.compile(
    r"\b(?:can(?:no|['’])t|can\s+not|unable\s+to|won['’]t|will\s+not)\s+"
    r"(?:answer|determine|be\s+determined|choose|select|decide|help)"
    r"|\bnone\s+of\s+the\s+(?:above|options|choices|answers)\b"
    r"|\bi\s+(?:don['’]t|do\s+not)\s+know\b"
    r"|\bno\s+(?:correct|right|valid)\s+(?:answer|option|choice)\b"
    r"|\bnot\s+enough\s+information\b",
    re.IGNORECASE,
)
# A standalone letter: not inside a word or an abbreviation ("U.S.", "D.C."), not the article "A" or
# the pronoun "I" before a word. Lowercase letters count only in brackets: "(c)".
# What may follow a lowercase letter after an answer keyword: "answer: c", "answer: c.", "answer is b)".
_LOWERCASE_LETTER_END = ("", ")", "]", "}", ".", ",", ";", ":", "!", "?", "\n")
_LONE_LETTER = re.compile(
    r"(?<![A-Za-z0-9'’.])(?:(?P<upper>[A-Z])(?![A-Za-z0-9'’])(?!\.[A-Za-z])"
    r"|\((?P<lower>[a-z])\))"
)
_ARTICLE_OR_PRONOUN = re.compile(
    r"\s+(?!(?:or|and|nor|is|was|would|should|seems|appears|looks|must|can|could|because|since)\b)[A-Za-z]"
)


def extract_choice(text: str, num_choices: int = 4, choices: Sequence[str] | None = None) -> int | None:
    """The index of the option a reply chooses, or None for no answer (see the module docstring).

    Args:
        text: The model's generated reply (the new tokens only, decoded).
        num_choices: How many options the prompt listed; letters past it are never answers.
        choices: The option texts, to recognise a reply that quotes an option instead of its letter.
            Its length must equal `num_choices`.

    Returns:
        The 0-based choice index, or None when the reply refuses, is ambiguous or names no option.

    Raises:
        ValueError: if `num_choices` is outside 1..26 or disagrees with `len(choices)`.

    Example:
        >>> extract_choice("The answer is A. B is wrong because...")
        0
        >>> extract_choice("A or B") is None
        True
    """
    _check_num_choices(num_choices)
    if choices is not None and len(choices) != num_choices:
        raise ValueError(f"num_choices={num_choices} but {len(choices)} choices were given")
    reply = _MARKUP.sub("", _THINK.sub("", text)).strip()
    if not reply:
        return None

    keyword_answer = _keyword_choice(reply, num_choices)
    if keyword_answer is not None:
        return keyword_answer
    leading_answer = None if _OPTION_LIST_ECHO.match(reply) else _leading_choice(reply, num_choices)
    if leading_answer is not None:
        return leading_answer
    text_answers = _quoted_choices(reply, choices) if choices is not None else set()
    if not text_answers and _REFUSAL.search(reply):
        return None
    if len(text_answers) == 1:
        return text_answers.pop()
    lone = {
        _index(m.group("upper") or m.group("lower"))
        for m in _LONE_LETTER.finditer(reply)
        if not (m.group("upper") in ("A", "I") and _ARTICLE_OR_PRONOUN.match(reply, m.end()))
    }
    lone = {i for i in lone if i < num_choices}
    return lone.pop() if len(lone) == 1 else None


def _index(char: str) -> int:
    return ord(char.upper()) - ord("A")


def _keyword_choice(reply: str, num_choices: int) -> int | None:
    """The letter after the earliest answer keyword that is followed by a valid, unhedged letter."""
    pos = 0
    while (match := _KEYWORD_LETTER.search(reply, pos)) is not None:
        pos = match.start() + 1
        char, end = match.group("letter"), match.end()
        index = _index(char)
        if index >= num_choices:
            continue
        if char.islower() and not (match.group("open") or reply[end : end + 1] in _LOWERCASE_LETTER_END):
            continue  # "the answer is a mammal": the article, not choice A
        if char == "I" and not match.group("open") and _ARTICLE_OR_PRONOUN.match(reply, end):
            continue  # "Answer: I think ...": the pronoun
        alternative = _ALTERNATIVE.match(reply, end)
        if alternative is not None and _index(alternative.group("other")) < num_choices:
            continue  # "The correct answer is A/B/C/D", "the answer is A or B"
        return index
    return None


def _leading_choice(reply: str, num_choices: int) -> int | None:
    """The letter a reply opens with, in choice form: "B", "B.", "B) ...", "(b) ..."."""
    match = _LEADING_LETTER.match(reply)
    if match is None:
        return None
    char = match.group("bracketed")[1] if match.group("bracketed") else match.group("letter")
    if char.islower() and match.group("after") == ":":
        return None
    index = _index(char)
    return index if index < num_choices else None


def _normalise(text: str) -> str:
    return " ".join(text.casefold().split())


def _quoted_choices(reply: str, choices: Sequence[str]) -> set[int]:
    """Indices of the choices whose text the reply contains, dropping those inside a longer match."""
    haystack = _normalise(reply)
    found: dict[int, str] = {}
    for i, choice in enumerate(choices):
        needle = _normalise(choice).strip(" .")
        if needle and re.search(r"(?<!\w)" + re.escape(needle) + r"(?!\w)", haystack):
            found[i] = needle
    return {i for i, needle in found.items() if not any(needle != o and needle in o for o in found.values())}
