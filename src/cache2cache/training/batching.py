"""Training data, batching: the epoch's order of examples, and `TrainingExample`s padded into one
`TrainingBatch` for `C2CModel.forward`.

`epoch_order` shuffles the examples with a seed per epoch; with `group_by_length` it then sorts pools
of global batches by length, so micro-batches hold examples of similar lengths.

`collate` LEFT-pads prompts to the batch's longest prompt P and RIGHT-pads responses, so every
prompt ends at column P-1, padding never sits inside a sequence, and the batch fits
`C2CModel.forward(inputs, prompt_length=P)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..inputs import C2CInputs
from .examples import TrainingExample

IGNORE_INDEX = -100

LENGTH_POOL_STEPS = 32
"""Global batches per pool that `epoch_order(group_by_length=True)` sorts by length."""


def epoch_order(
    lengths: Sequence[int], seed: int, epoch: int, global_batch: int, *, group_by_length: bool = False
) -> list[int]:
    """The order in which an epoch reads the examples; global batch s is `order[s*G : (s+1)*G]`.

    Args:
        lengths: Each example's length in tokens.
        seed: The run's seed; with `epoch` it fixes the order (a resumed run reads the same order).
        epoch: The epoch number.
        global_batch: G, examples per optimizer step.
        group_by_length: Sort each pool of `LENGTH_POOL_STEPS` x G shuffled examples by length
            (longest first), cut it into global batches and shuffle those; a trailing partial
            batch keeps its place at the end, where the epoch drops it.

    Returns:
        A permutation of `range(len(lengths))`.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    if not group_by_length:
        return order
    full = len(order) // global_batch * global_batch
    pool = LENGTH_POOL_STEPS * global_batch
    grouped: list[int] = []
    for start in range(0, full, pool):
        members = sorted(order[start : min(start + pool, full)], key=lambda i: -lengths[i])
        batches = [members[b : b + global_batch] for b in range(0, len(members), global_batch)]
        for b in torch.randperm(len(batches), generator=generator).tolist():
            grouped += batches[b]
    return grouped + order[full:]


@dataclass
class TrainingBatch:
    """A padded batch for `C2CModel.forward`.

    Attributes:
        inputs: (B, P + R) tensors: left-padded prompts, then right-padded responses. The sharer
            columns past the prompt are padding (the sharer never reads the response).
        labels: (B, P + R) response ids; IGNORE_INDEX on the prompt and on padding.
        prompt_length: P, the columns of the prompt (the same for every row).
    """

    inputs: C2CInputs
    labels: torch.Tensor
    prompt_length: int

    @property
    def num_target_tokens(self) -> int:
        """Supervised tokens."""
        return int((self.labels != IGNORE_INDEX).sum())

    @property
    def num_tokens(self) -> int:
        """Real receiver tokens (prompt and response, padding excluded)."""
        return int(self.inputs.attention_mask.sum())

    def to(self, device: torch.device | str) -> TrainingBatch:
        """The same batch on `device`."""
        return TrainingBatch(self.inputs.to(device), self.labels.to(device), self.prompt_length)


def collate(examples: Sequence[TrainingExample], *, receiver_pad_id: int, sharer_pad_id: int) -> TrainingBatch:
    """Pad examples into one batch: prompts left-padded to the longest prompt P, responses
    right-padded to the longest response R.

    Args:
        examples: B examples.
        receiver_pad_id: Receiver padding id.
        sharer_pad_id: Sharer padding id.

    Returns:
        A `TrainingBatch` of (B, P + R) tensors; only prompt tokens can be in the fusion mask.
    """
    if not examples:
        raise ValueError("collate needs at least one example")
    p = max(len(e.prompt_ids) for e in examples)
    r = max(len(e.response_ids) for e in examples)
    shape = (len(examples), p + r)
    ids = torch.full(shape, receiver_pad_id, dtype=torch.long)
    mask = torch.zeros(shape, dtype=torch.long)
    sharer_ids = torch.full(shape, sharer_pad_id, dtype=torch.long)
    sharer_mask = torch.zeros(shape, dtype=torch.long)
    fusion = torch.zeros(shape, dtype=torch.bool)
    labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
    for b, e in enumerate(examples):
        start, n = p - len(e.prompt_ids), len(e.response_ids)
        ids[b, start:p] = torch.tensor(e.prompt_ids)
        mask[b, start:p] = torch.tensor(e.prompt_mask)
        sharer_ids[b, start:p] = torch.tensor(e.sharer_prompt_ids)
        sharer_mask[b, start:p] = torch.tensor(e.sharer_prompt_mask)
        fusion[b, start:p] = torch.tensor(e.fusion_mask, dtype=torch.bool)
        ids[b, p : p + n] = torch.tensor(e.response_ids)
        mask[b, p : p + n] = 1
        labels[b, p : p + n] = torch.tensor(e.response_ids)
    return TrainingBatch(C2CInputs(ids, mask, sharer_ids, sharer_mask, fusion), labels, p)
