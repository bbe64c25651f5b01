"""Freezing the receiver and the sharers: eval mode, no gradients, and an output layer that stays fast.

C2C never trains its language models, so every receiver and sharer is frozen (`freeze`). Freezing
has a cost on the CPU that this module removes. `torch.matmul` (and so `nn.Linear`) folds a 3-D input
(B, T, H) into one (B*T, H) matrix product only when the input's strides allow a view or when the
weight needs its gradient (PyTorch's `should_fold`; pytorch/pytorch#166891, #186148). With frozen
weights, a strided input goes to a batched product over the weight broadcast B times instead, and on
a CPU that path is 50-230x slower in bf16 (4-5x in float32) for a wide output layer
(benchmarks/strided_head.py, docs/perf.md).

Hugging Face hands the output layer exactly such an input whenever it keeps the logits of the last
columns only (`logits_to_keep`: the prefill of every `generate` call keeps 1, log-likelihood scoring
keeps the continuation's): `hidden_states[:, -k:, :]` is a strided view. For Gemma-3-270M (262,144 x
640 head, bf16) that made a batch-1 `generate` of 8 tokens 5.9 s instead of 1.6 s, and scoring 4
choices 22 s instead of 0.5 s. `freeze` gives the output layer a forward pre-hook that copies such
an input into the standard layout (B*k*H values, negligible next to the product); inputs already in
that layout pass untouched.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch
from torch import nn
from transformers import PreTrainedModel

Model = TypeVar("Model", bound=PreTrainedModel)

_HOOKED = "_c2c_standard_layout_hooked"
"""Attribute marking an output layer that already has the hook (freezing twice adds it once)."""


def has_standard_layout(tensor: torch.Tensor) -> bool:
    """Whether `tensor`'s strides are exactly the row-major ones of its shape.

    Stricter than `is_contiguous()`, which ignores the strides of size-1 dimensions: a (B, 1, H)
    slice of a (B, T, H) tensor is "contiguous" yet does not fold for `matmul` when B > 1, nor when
    B == 1 (pytorch/pytorch#186148).
    """
    expected, step = [], 1
    for size in reversed(tensor.shape):
        expected.append(step)
        step *= size
    return tensor.stride() == tuple(reversed(expected))


def _standard_layout_input(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    hidden = args[0] if args else None
    if isinstance(hidden, torch.Tensor) and hidden.dim() > 2 and not has_standard_layout(hidden):
        return (hidden.clone(memory_format=torch.contiguous_format), *args[1:])
    return None


def freeze(model: Model) -> Model:
    """`model` in eval mode with `requires_grad_(False)`, its output layer fed in the standard layout.

    Idempotent; a model without an output layer (`get_output_embeddings()` is None) is only frozen.

    Returns:
        The same model object.
    """
    model.eval().requires_grad_(False)
    head = model.get_output_embeddings()
    if isinstance(head, nn.Module) and not hasattr(head, _HOOKED):
        head.register_forward_pre_hook(_standard_layout_input)
        setattr(head, _HOOKED, True)
    return model
