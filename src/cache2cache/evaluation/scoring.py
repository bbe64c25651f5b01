"""Log-likelihood of continuations after a prompt, for the loglik answer method and lm-eval.

C2C scores a continuation the way it generates (SPEC §6.4 logits mode, DESIGN "data flow"): the
prompt minus its last token is prefilled and fused, then ONE receiver pass runs [last prompt token +
continuation] over the fused cache (`C2CModel.forward`). Continuation tokens are never fused. Rows are
left-padded prompts (as `C2CModel.encode` gives them) followed by right-padded continuations, so every
prompt ends in the same column P - 1 and logits column j predicts continuation token j.

    inputs = model.encode(conversations)                                  # (B, P)
    batch = append_continuations(inputs, rows=[0, 0, 1], continuations=[[5], [7, 8], [5]], pad_id=0)
    logits = model.forward(batch, P, enabled=True).logits                 # (3, T + 1, V)
    logprobs = continuation_logprobs(logits, [[5], [7, 8], [5]])          # per-token log-probs
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from transformers import PreTrainedTokenizerBase

from ..model import C2CInputs


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
    )


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
