"""A multiple-choice item, and the error a task that cannot be loaded raises."""

from __future__ import annotations

from dataclasses import dataclass

from .answers import MAX_CHOICES, letter


class TaskError(ValueError):
    """A task name, option or data record is not usable; the message names the problem and the fix."""


@dataclass
class MultipleChoiceItem:
    """One multiple-choice question.

    Attributes:
        id: Unique within its task (the dataset's own id where it has one).
        question: The question stem, without the options.
        choices: The option texts, in prompt order (lettered A, B, ...).
        answer: The 0-based index of the gold choice.
        subject: The subject or subtask (MMLU subject, BIG-bench subtask), if any.
        category: A coarser group (MMLU: STEM, humanities, social sciences, other), if any.
        context: A passage that supports the answer (SciQ's `support`, a JSONL record's `context`),
            if the source has one. Evaluation prompts leave it out; a training source with
            `sharer_context` gives it to the sharer alone.
    """

    id: str
    question: str
    choices: list[str]
    answer: int
    subject: str | None = None
    category: str | None = None
    context: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.question, str) or not self.question.strip():
            raise TaskError(f"item {self.id!r}: 'question' must be a non-empty string, got {self.question!r}")
        if not isinstance(self.choices, list) or not all(isinstance(c, str) for c in self.choices):
            raise TaskError(f"item {self.id!r}: 'choices' must be a list of strings, got {self.choices!r}")
        if not 2 <= len(self.choices) <= MAX_CHOICES:
            raise TaskError(f"item {self.id!r}: needs 2 to {MAX_CHOICES} choices, got {len(self.choices)}")
        valid_index = isinstance(self.answer, int) and not isinstance(self.answer, bool)
        if not valid_index or not 0 <= self.answer < len(self.choices):
            raise TaskError(
                f"item {self.id!r}: 'answer' must be a choice index in 0..{len(self.choices) - 1}, got {self.answer!r}"
            )
        if self.context is not None and not isinstance(self.context, str):
            raise TaskError(f"item {self.id!r}: 'context' must be a string when given, got {self.context!r}")

    @property
    def answer_letter(self) -> str:
        """The gold choice's letter ("A", "B", ...)."""
        return letter(self.answer)
