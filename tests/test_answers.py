"""`extract_choice` on replies of the kind small chat models give to the paper's prompt, and the letter helpers."""

from __future__ import annotations

import pytest

from cache2cache.tasks.answers import extract_choice, letter, letter_index, letters

CHOICES = ["Planetary density will decrease.", "Planetary years will become longer.",
           "Planetary days will become shorter.", "Planetary gravity will become stronger."]  # fmt: skip

# (reply, num_choices, choices, expected index or None)
CASES = [
    # the format the prompt asks for, and its near misses
    ("The correct answer is B.", 4, None, 1),
    ("The correct answer is B", 4, None, 1),
    (" C", 4, None, 2),
    (" D.", 4, None, 3),
    ("**C**", 4, None, 2),
    ("The correct answer is: **B) Paris**", 4, None, 1),
    ("The correct answer is:\n\nA. Planetary density will decrease.", 4, None, 0),
    ("Answer: (c)", 4, None, 2),
    ("answer: c.", 4, None, 2),
    ("(b)", 4, None, 1),
    ("a", 4, None, 0),
    ("B) because the sun is a star", 4, None, 1),
    ("C. Planetary days will become shorter.", 4, None, 2),
    ("I think it's D", 4, None, 3),
    ("I think D", 4, None, 3),
    ("Final Answer: B\nExplanation: A is a common misconception.", 4, None, 1),
    ("$\\boxed{C}$", 4, None, 2),
    ("答案是B", 4, None, 1),
    ("<think>\nA looks plausible at first.\n</think>\n\nThe correct answer is D.", 4, None, 3),
    # the first answer keyword wins over later discussion
    ("The answer is A. B is wrong because it ignores friction.", 4, None, 0),
    ("Option A is incorrect; the answer is B", 4, None, 1),
    ("Answer: I think the answer is B", 4, None, 1),
    ("It is a tough one, but the answer is probably C", 4, None, 2),
    ("B is the correct answer.", 4, None, 1),
    ("A is correct.", 4, None, 0),
    # echoes of the instruction and hedges
    ("The correct answer is A/B/C/D", 4, None, None),
    ('Respond ONLY in the format "The correct answer is A/B/C/D". The correct answer is C', 4, None, 2),
    ("A or B", 4, None, None),
    ("The answer is A or B, I am not sure.", 4, None, None),
    ("Both A and C are correct.", 4, None, None),
    # refusals and non-answers
    ("I cannot answer this question.", 4, None, None),
    ("None of the above.", 4, None, None),
    ("I don't know.", 4, None, None),
    ("There is not enough information to decide.", 4, None, None),
    ("", 4, None, None),
    # articles, pronouns and abbreviations are not letters
    ("The answer is a mammal.", 4, None, None),
    ("A cell is the basic unit of life.", 4, None, None),
    ("Washington D.C. is the capital of the U.S.", 4, None, None),
    # letters beyond D, and beyond the options shown
    ("The correct answer is E", 5, None, 4),
    ("The correct answer is E", 4, None, None),
    ("The correct answer is J.", 10, None, 9),
    ("The answer is I", 10, None, 8),
    # answering with the option's text
    ("Planetary days will become shorter.", 4, CHOICES, 2),
    ("It rotates faster, so planetary days will become shorter", 4, CHOICES, 2),
    ("Paris", 4, ["London", "Paris", "Rome", "Berlin"], 1),
    ("The answer is 4", 4, ["1", "2", "3", "4"], 3),
    ("dry palms", 4, ["dry palms", "wet palms", "palms covered with oil", "palms"], 0),
    ("None of the above", 4, ["1", "2", "3", "None of the above"], 3),
    ("London or Paris", 4, ["London", "Paris", "Rome", "Berlin"], None),
    # repeating the option list is not choosing its first option
    ("A. gas\nB. liquid\nC. solid\nD. plasma", 4, None, None),
    ("A) gas\n B) liquid", 4, ["gas", "liquid", "solid", "plasma"], None),
    ("A. gas\nB. liquid\nC. solid\nD. plasma\nAnswer: C", 4, None, 2),
    ("A. gas\nbecause it fills its container", 4, None, 0),
]


@pytest.mark.parametrize(("reply", "num_choices", "choices", "expected"), CASES)
def test_extract_choice(reply: str, num_choices: int, choices: list[str] | None, expected: int | None) -> None:
    assert extract_choice(reply, num_choices, choices) == expected


def test_extract_choice_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="between 1 and 26"):
        extract_choice("A", 27)
    with pytest.raises(ValueError, match="num_choices=4 but 3 choices"):
        extract_choice("A", 4, ["x", "y", "z"])


def test_letters() -> None:
    assert letter(0) == "A" and letter(25) == "Z"
    assert letters(5) == ["A", "B", "C", "D", "E"]
    assert letter_index("c") == 2 and letter_index(" D ") == 3
    with pytest.raises(ValueError, match="no letter"):
        letter(26)
    with pytest.raises(ValueError, match="single choice letter"):
        letter_index("AB")
