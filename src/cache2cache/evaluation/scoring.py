"""Log-likelihood of continuations after a prompt, for the loglik answer method and lm-eval.

C2C scores a continuation the way it generates (docs/method.md §6.4 logits mode and §1): the
prompt minus its last token is prefilled and fused, then ONE receiver pass runs [last prompt token +
continuation] over the fused cache (`C2CModel.forward`). Continuation tokens are never fused. Rows are
left-padded prompts (as `C2CModel.encode` gives them) followed by right-padded continuations, so every
prompt ends in the same column P - 1 and logits column j predicts continuation token j.

    inputs = model.encode(conversations)                                  # (B, P)
    batch = append_continuations(inputs, rows=[0, 0, 1], continuations=[[5], [7, 8], [5]], pad_id=0)
    logits = model.forward(batch, P, enabled=True).logits                 # (3, T + 1, V)
    logprobs = continuation_logprobs(logits, [[5], [7, 8], [5]])          # per-token log-probs

`ChoiceScorer` ranks multiple-choice options this way (the loglik answer method of `c2c eval`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .. import kv
from ..inputs import C2CInputs, distinct_index
from ..tasks.answers import letters


def append_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    rows: Sequence[int],
    continuations: Sequence[Sequence[int]],
    pad_id: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of a left-padded batch, each followed by its continuation, right-padded.

    Args:
        input_ids: (B, P) prompts.
        attention_mask: (B, P).
        rows: For each output row, the prompt row it extends (prompts may repeat).
        continuations: One token list per output row (may be empty).
        pad_id: Id for the right padding (masked out).

    Returns:
        `(ids, mask)`, each (R, P + T) with T the longest continuation.
    """
    index = torch.tensor(list(rows), dtype=torch.long, device=input_ids.device)
    width = max((len(c) for c in continuations), default=0)
    tail = torch.full((len(rows), width), pad_id, dtype=input_ids.dtype, device=input_ids.device)
    tail_mask = torch.zeros((len(rows), width), dtype=attention_mask.dtype, device=input_ids.device)
    for r, tokens in enumerate(continuations):
        tail[r, : len(tokens)] = torch.tensor(list(tokens), dtype=input_ids.dtype)
        tail_mask[r, : len(tokens)] = 1
    return torch.cat([input_ids[index], tail], dim=1), torch.cat([attention_mask[index], tail_mask], dim=1)


def append_continuations(
    inputs: C2CInputs, rows: Sequence[int], continuations: Sequence[Sequence[int]], pad_id: int
) -> C2CInputs:
    """`C2CInputs` rows extended with receiver continuations (see `append_tokens`).

    The sharer side gets masked padding over the continuation and the fusion mask is False there: a
    continuation is read by the receiver alone, over the fused prompt cache.

    Returns:
        (R, P + T) inputs for `C2CModel.forward(batch, prompt_length=P)`.
    """
    ids, mask = append_tokens(inputs.input_ids, inputs.attention_mask, rows, continuations, pad_id)
    width = ids.shape[1] - inputs.input_ids.shape[1]
    index = torch.tensor(list(rows), dtype=torch.long, device=ids.device)

    def extend(tensor: torch.Tensor) -> torch.Tensor:
        return torch.cat([tensor[index], tensor.new_zeros((len(rows), width))], dim=1)

    return replace(
        inputs,
        input_ids=ids,
        attention_mask=mask,
        sharer_input_ids=extend(inputs.sharer_input_ids),
        sharer_attention_mask=extend(inputs.sharer_attention_mask),
        fusion_mask=extend(inputs.fusion_mask),
        more_sharers=tuple(
            replace(
                m,
                input_ids=extend(m.input_ids),
                attention_mask=extend(m.attention_mask),
                fusion_mask=extend(m.fusion_mask),
            )
            for m in inputs.more_sharers
        ),
    )


def continuation_logits(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_length: int
) -> torch.Tensor:
    """A plain causal LM's logits over the continuations of `append_tokens` rows, the way
    `C2CModel.forward` gives the receiver's: each distinct prompt minus its last token is prefilled
    once, through the base model alone, and one pass over [last prompt token + continuation] reads it.

    Args:
        model: A causal LM (the sharer).
        input_ids: (R, P + T) left-padded prompts, which may repeat, and right-padded continuations.
        attention_mask: (R, P + T).
        prompt_length: P, the columns of the prompt.

    Returns:
        (R, T + 1, V) logits on columns `P - 1 ..`.
    """
    if not 2 <= prompt_length <= input_ids.shape[1]:
        raise ValueError(f"prompt_length must be in [2, {input_ids.shape[1]}], got {prompt_length}")
    start = prompt_length - 1
    found = distinct_index(torch.cat([input_ids[:, :start], attention_mask[:, :start].long()], dim=1))
    first, inverse = found or (torch.arange(len(input_ids), device=input_ids.device), None)
    cache = kv.prefill(model, input_ids[first, :start], attention_mask[first, :start])
    if inverse is not None:
        cache.batch_select_indices(inverse)
    return model(
        input_ids=input_ids[:, start:],
        attention_mask=attention_mask,
        position_ids=kv.positions(attention_mask)[:, start:],
        use_cache=True,
        **{kv.cache_kwarg(model): cache},
    ).logits


def continuation_logprobs(logits: torch.Tensor, continuations: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """Per-token log-probabilities of each row's continuation.

    Args:
        logits: (R, T + 1, V) logits over columns P-1 .. P+T-1 (column j predicts continuation token j).
        continuations: R token lists.

    Returns:
        R float32 tensors, row r of shape (len(continuations[r]),).
    """
    out = []
    for r, tokens in enumerate(continuations):
        length = len(tokens)
        logprobs = torch.log_softmax(logits[r, :length].float(), dim=-1)
        target = torch.tensor(list(tokens), dtype=torch.long, device=logits.device)
        out.append(logprobs[torch.arange(length, device=logits.device), target])
    return out


def greedy_flags(logits: torch.Tensor, continuations: Sequence[Sequence[int]]) -> list[bool]:
    """Whether each continuation is the greedy (argmax) choice at every one of its tokens."""
    flags = []
    for r, tokens in enumerate(continuations):
        predicted = logits[r, : len(tokens)].argmax(dim=-1).tolist()
        flags.append(predicted == list(tokens))
    return flags


def next_token_logprobs(logits: torch.Tensor, positions: Sequence[int]) -> torch.Tensor:
    """(R, V) float32 log-probabilities of the token after column `positions[r]` of each row."""
    index = torch.tensor(list(positions), dtype=torch.long, device=logits.device)
    picked = logits[torch.arange(logits.shape[0], device=logits.device), index]
    return torch.log_softmax(picked.float(), dim=-1)


def split_continuation(tokenizer: PreTrainedTokenizerBase, context: str, continuation: str) -> list[int]:
    """The tokens of `continuation` as they come after `context` (no special tokens).

    The two are tokenized together and the context's tokens cut off, as lm-eval does, so word
    boundaries tokenize naturally (" Paris" after "is" is one token for BPE vocabularies); when the
    joint tokenization does not start with the context's tokens, the continuation is tokenized alone.
    """
    context_ids = tokenizer.encode(context, add_special_tokens=False) if context else []
    whole = tokenizer.encode(context + continuation, add_special_tokens=False)
    if whole[: len(context_ids)] == context_ids:
        return whole[len(context_ids) :]
    return tokenizer.encode(continuation, add_special_tokens=False)


@dataclass
class ScoringPlan:
    """The rows a batch of items is scored with.

    Attributes:
        rows: For each scored row, the prompt row it extends.
        tails: For each scored row, its tokens after the prompt: the response prefix, then (unless
            the row reads letters as the next token) one choice's continuation.
        reads: Per item, `(first row, letter ids)` when the letters are read from one next-token
            distribution, or `(first row, None)` when each choice has its own row.
        prefix_length: Tokens of the response prefix at the start of every tail.
    """

    rows: list[int]
    tails: list[list[int]]
    reads: list[tuple[int, list[int] | None]]
    prefix_length: int


class ChoiceScorer:
    """Ranks choices by log-likelihood after a prompt and a response prefix (docs/method.md §6.4 logits mode).

    Letters that are single, distinct tokens (" A", " B", ... in real vocabularies) are read from one
    row per item: the next-token distribution after the prefix, as the reference does. Otherwise
    (choice texts, or letters a toy vocabulary splits) each choice is its own row, scored by the sum
    of its tokens' log-probabilities (lm-eval's `acc`, no length normalisation).

    Args:
        response_prefix: Text after the generation prompt, before the scored choice ("" for none).
        target: "letters" (score " A", " B", ...) or "texts" (score each choice's text).
        rows_per_pass: Most rows per forward pass.
    """

    def __init__(self, response_prefix: str, target: Literal["letters", "texts"], rows_per_pass: int) -> None:
        self.prefix = response_prefix
        self.target = target
        self.rows_per_pass = rows_per_pass
        # Keyed by the tokenizer object itself (hashed by identity), not by id(): a freed tokenizer's
        # id can be reused by another one.
        self._letters: dict[tuple[PreTrainedTokenizerBase, str, int], list[list[int]]] = {}

    def _continuations(self, tok: PreTrainedTokenizerBase, delimiter: str, choices: Sequence[str]) -> list[list[int]]:
        if self.target == "texts":
            return [split_continuation(tok, self.prefix, delimiter + choice) for choice in choices]
        key = (tok, delimiter, len(choices))
        if key not in self._letters:
            self._letters[key] = [split_continuation(tok, self.prefix, delimiter + L) for L in letters(len(choices))]
        return self._letters[key]

    def plan(
        self, tok: PreTrainedTokenizerBase, prompts: Sequence[str], choices: Sequence[Sequence[str]]
    ) -> ScoringPlan:
        """The scored rows for B items.

        Args:
            tok: The scoring model's tokenizer.
            prompts: B rendered prompts (to know whether a space separates them from what follows).
            choices: B lists of option texts.
        """
        prefix_ids = tok.encode(self.prefix, add_special_tokens=False) if self.prefix else []
        plan = ScoringPlan([], [], [], len(prefix_ids))
        for b, (prompt, options) in enumerate(zip(prompts, choices, strict=True)):
            context = prompt + self.prefix
            continuations = self._continuations(tok, "" if not context or context[-1].isspace() else " ", options)
            firsts = [c[0] for c in continuations if len(c) == 1]
            if self.target == "letters" and len(set(firsts)) == len(continuations):
                plan.reads.append((len(plan.rows), firsts))
                plan.rows.append(b)
                plan.tails.append(list(prefix_ids))
                continue
            plan.reads.append((len(plan.rows), None))
            for continuation in continuations:
                plan.rows.append(b)
                plan.tails.append(list(prefix_ids) + continuation)
        return plan

    def score(
        self,
        plan: ScoringPlan,
        forward: Callable[[list[int], list[list[int]]], torch.Tensor],
        num_choices: Sequence[int],
    ) -> list[list[float]]:
        """Each item's choice scores.

        Args:
            plan: From `plan`.
            forward: `(rows, tails) -> (R, T + 1, V)` logits over columns P-1 .. (see the module
                docstring); called on chunks of at most `rows_per_pass` rows.
            num_choices: Options per item.

        Returns:
            Per item, one log-probability per choice (-inf for a choice with no tokens).
        """
        wanted = {first: ids for first, ids in plan.reads if ids is not None}
        values: list[list[float] | float] = []
        for start in range(0, len(plan.rows), self.rows_per_pass):
            tails = plan.tails[start : start + self.rows_per_pass]
            logits = forward(plan.rows[start : start + self.rows_per_pass], tails)
            for i, tail in enumerate(tails):
                if start + i in wanted:  # the letters as the next token
                    values.append(next_token_logprobs(logits[i : i + 1], [len(tail)])[0][wanted[start + i]].tolist())
                else:  # one choice: its summed log-probability
                    per_token = continuation_logprobs(logits[i : i + 1], [tail])[0][plan.prefix_length :]
                    values.append(float(per_token.sum()) if len(per_token) else float("-inf"))
        return [
            values[first] if ids is not None else values[first : first + n]  # type: ignore[misc]
            for (first, ids), n in zip(plan.reads, num_choices, strict=True)
        ]
