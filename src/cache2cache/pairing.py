"""Whether the models and tokenizers of a `C2CModel` fit its config and each other.

`sharer_lists` checks that the sharers, their tokenizers, the config and the fusers count the same
sharers; `check_models` compares the loaded receiver and sharers with the shape fingerprints the fusers were
built for; `same_vocab` decides whether a sharer reads the receiver's token ids or needs a
`TokenAligner` (`aligner_for`), and `unshared_sharer_ids` whether several sharers can read one
sharer's ids.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .config import AlignmentStrategy, C2CConfig, ModelFingerprint
from .fuser import FuserStack
from .sharers import MultiFuserStack

if TYPE_CHECKING:
    from .alignment import TokenAligner

logger = logging.getLogger(__name__)


def sharer_lists(
    sharer: PreTrainedModel | Sequence[PreTrainedModel],
    sharer_tokenizer: PreTrainedTokenizerBase | Sequence[PreTrainedTokenizerBase | None] | None,
    config: C2CConfig,
    fusers: FuserStack | MultiFuserStack,
) -> tuple[list[PreTrainedModel], list[PreTrainedTokenizerBase | None]]:
    """The sharers and one tokenizer per sharer (a single tokenizer, or None, serves every sharer).

    Raises:
        ValueError: The sharers, tokenizers, the config's sharers and the fusers' count differ.
    """
    sharers = list(sharer) if isinstance(sharer, Sequence) else [sharer]
    tokenizers = list(sharer_tokenizer) if isinstance(sharer_tokenizer, Sequence) else [sharer_tokenizer]
    if len(tokenizers) == 1 < len(sharers):
        tokenizers *= len(sharers)
    counts = {"sharers given": len(sharers), "sharer tokenizers": len(tokenizers), "sharers in the config": len(config.sharers)}  # fmt: skip
    if len(set(counts.values())) != 1 or isinstance(fusers, MultiFuserStack) != (len(sharers) > 1):
        raise ValueError(
            f"mismatched sharer count: {', '.join(f'{n} {what}' for what, n in counts.items())}, "
            f"fusers for {len(fusers.stacks) if isinstance(fusers, MultiFuserStack) else 1}. "
            "Fix: pass one sharer (and one tokenizer, or one for all) per sharer the checkpoint records, in its order"
        )
    return sharers, tokenizers


def check_models(config: C2CConfig, receiver: PreTrainedModel, sharers: Sequence[PreTrainedModel]) -> None:
    """Raise `ValueError` if the models do not match the config's fingerprints (same shapes but
    other names are only logged).

    Args:
        config: The pair's config.
        receiver: The loaded receiver.
        sharers: The loaded sharers, in the config's order.
    """
    problems = []
    several = len(sharers) > 1
    for role, model, expected in (
        ("receiver", receiver, config.receiver),
        *(
            (f"sharer {i + 1}" if several else "sharer", model, link.sharer)
            for i, (model, link) in enumerate(zip(sharers, config.sharers, strict=True))
        ),
    ):
        actual = ModelFingerprint.from_model(model)
        mismatch = expected.shape_mismatches(actual)
        if mismatch:
            problems.append(
                f"{role}: the fusers were built for {expected.describe()} but got {actual.describe()}; "
                f"differing fields (saved != loaded): {'; '.join(mismatch)}"
            )
        elif expected.name_or_path and actual.name_or_path and expected.name_or_path != actual.name_or_path:
            logger.info(
                "%s loaded from %r; fusers were trained with %r (same shapes)",
                role,
                actual.name_or_path,
                expected.name_or_path,
            )
    if problems:
        raise ValueError(
            "this C2C checkpoint does not fit the models given: "
            + "; and ".join(problems)
            + ". Fix: pass the receiver and sharer the checkpoint was trained for, or train fusers for this pair."
        )


def same_vocab(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase) -> bool:
    """True when two tokenizers map every token string to the same id."""
    return a is b or (len(a) == len(b) and a.get_vocab() == b.get_vocab())


def aligner_for(
    receiver_tokenizer: PreTrainedTokenizerBase | None,
    sharer_tokenizer: PreTrainedTokenizerBase | None,
    strategy: AlignmentStrategy,
) -> TokenAligner | None:
    """A `TokenAligner` (with `strategy`) when `sharer_tokenizer` differs from the receiver's, else None."""
    if receiver_tokenizer is None or sharer_tokenizer is None or same_vocab(receiver_tokenizer, sharer_tokenizer):
        return None
    from .alignment import TokenAligner

    return TokenAligner(receiver_tokenizer, sharer_tokenizer, strategy=strategy)


def unshared_sharer_ids(
    receiver_tokenizer: PreTrainedTokenizerBase | None, sharer_tokenizers: Sequence[PreTrainedTokenizerBase | None]
) -> str | None:
    """Why sharers past the first cannot read the first sharer's token ids (a different tokenizer),
    or None; a missing sharer tokenizer stands for the receiver's."""
    first = sharer_tokenizers[0] or receiver_tokenizer
    for i, tok in enumerate(sharer_tokenizers[1:], start=2):
        tok = tok or receiver_tokenizer
        if first is not None and tok is not None and not same_vocab(first, tok):
            return f"sharer {i}'s tokenizer differs from sharer 1's, so it cannot read sharer 1's token ids"
    return None
