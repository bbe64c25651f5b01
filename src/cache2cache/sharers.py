"""Several sharers: one receiver reading two or more sharers' caches, each through its own fusers.

`MultiFuserStack` holds one `FuserStack` per sharer and combines them in one of the reference's two
modes (docs/method.md §7), per mapped receiver layer t with clean receiver cache C_t:

    parallel     every sharer's fusers read the clean cache; the deltas are summed:
                     C_t + sum_i (fuse_i(S_i, C_t) - C_t)
    sequential   each sharer fuses into the cache the previous one produced:
                     C_t <- fuse_i(S_i, C_t) for i = 1, 2, ...

A sharer whose gate is closed adds exactly nothing in parallel mode, so parallel C2C with sharers A
and B, B closed, is single-sharer C2C with A. `fusers_for` builds the fuser module a `C2CConfig`
describes: a `FuserStack` for a pair (its state-dict keys unchanged), a `MultiFuserStack` otherwise;
`build_fusers` builds them freshly initialised from a seed.
"""

from __future__ import annotations

import typing
from collections.abc import Collection

import torch
from torch import nn

from .config import SHARER_MODES, C2CConfig
from .fuser import C2CFuser, FuserStack

KV = tuple[torch.Tensor, torch.Tensor]


class MultiFuserStack(nn.Module):
    """One `FuserStack` per sharer, in sharer order; state-dict keys `stacks.{i}.fusers.{layer}.*`.

    Args:
        stacks: The fusers of sharer 1, 2, ... (at least two).
        mode: "parallel" or "sequential".
    """

    def __init__(self, stacks: list[FuserStack], mode: str) -> None:
        super().__init__()
        if mode not in SHARER_MODES:
            raise ValueError(f"sharer_mode must be one of {', '.join(SHARER_MODES)}, got {mode!r}")
        if len(stacks) < 2:
            raise ValueError(f"a MultiFuserStack needs at least two sharers' fusers, got {len(stacks)}")
        self.stacks = nn.ModuleList(stacks)
        self.mode = mode

    @property
    def sharer_stacks(self) -> list[FuserStack]:
        """The fusers of sharer 1, 2, ..., in order."""
        return typing.cast(list[FuserStack], list(self.stacks))

    def update_temperature(self, step: int) -> None:
        """Anneal every fuser's gate temperature to optimizer step `step`."""
        for stack in self.sharer_stacks:
            stack.update_temperature(step)

    def forward(
        self,
        sharer_kv: list[list[KV]],
        receiver_kv: list[KV],
        fusion_masks: list[torch.Tensor],
        *,
        layers: Collection[int] | None = None,
        strength: float = 1.0,
    ) -> dict[int, KV]:
        """Fuse every sharer into the receiver's cache.

        Args:
            sharer_kv: Per sharer, per sharer layer `(K, V)`, each (B, Hs_i, N, Ds_i).
            receiver_kv: Per receiver layer `(K, V)`, each (B, Ht, N_l, Dt).
            fusion_masks: Per sharer, (B, N) bool: the tokens that sharer fuses.
            layers: Receiver layers to fuse; None fuses every mapped layer.
            strength: alpha, the scale of each sharer's fused delta.

        Returns:
            Receiver layer -> fused `(K, V)`, for every layer some sharer fuses.
        """
        if not len(sharer_kv) == len(fusion_masks) == len(self.stacks):
            raise ValueError(
                f"{len(self.stacks)} sharers' fusers got {len(sharer_kv)} sharer caches and {len(fusion_masks)} fusion masks"
            )
        fused: dict[int, KV] = {}
        current = list(receiver_kv)
        for stack, kv_i, mask_i in zip(self.sharer_stacks, sharer_kv, fusion_masks, strict=True):
            base = current if self.mode == "sequential" else receiver_kv
            for t, (k, v) in stack(kv_i, base, mask_i, layers=layers, strength=strength).items():
                if self.mode == "sequential":
                    current[t] = fused[t] = (k, v)
                elif t in fused:
                    (k0, v0), (kf, vf) = receiver_kv[t], fused[t]
                    fused[t] = (kf + (k - k0), vf + (v - v0))
                else:
                    fused[t] = (k, v)
        return fused


def run_fusers(
    fusers: nn.Module,
    sharer_kv: list[list[KV]],
    receiver_kv: list[KV],
    fusion_masks: list[torch.Tensor],
    *,
    layers: Collection[int] | None = None,
    strength: float = 1.0,
) -> dict[int, KV]:
    """Call a `FuserStack` (one sharer) or a `MultiFuserStack` (several), or a DDP wrapper of either,
    with per-sharer lists: sharer i's `(K, V)` per sharer layer and its (B, N) fusion mask.

    Returns:
        Receiver layer -> fused `(K, V)`, each (B, Ht, N_l, Dt).
    """
    several = len(sharer_kv) > 1
    return fusers(
        sharer_kv if several else sharer_kv[0],
        receiver_kv,
        fusion_masks if several else fusion_masks[0],
        layers=layers,
        strength=strength,
    )


def fusers_for(config: C2CConfig) -> FuserStack | MultiFuserStack:
    """The fuser module `config` describes, with freshly initialised weights (on the current device)."""
    stacks = [
        FuserStack(link.layer_map, {t: C2CFuser(**config.fuser_kwargs(i)) for t in link.layer_map})
        for i, link in enumerate(config.sharers)
    ]
    return stacks[0] if len(stacks) == 1 else MultiFuserStack(stacks, config.sharer_mode)


def build_fusers(config: C2CConfig, *, seed: int | None = None) -> FuserStack | MultiFuserStack:
    """Fresh fp32 fusers for every receiver layer in `config.layer_map` (for every sharer's, with several)."""
    if seed is None:
        return fusers_for(config)
    with torch.random.fork_rng(devices=[]):  # the caller's CPU generator is left as it was
        torch.manual_seed(seed)
        return fusers_for(config)


def fuser_modules(fusers: nn.Module) -> list[C2CFuser]:
    """Every `C2CFuser` inside `fusers` (a `FuserStack` or a `MultiFuserStack`), in order."""
    return [m for m in fusers.modules() if isinstance(m, C2CFuser)]


def sharer_names(text: str | None) -> str | list[str] | None:
    """A `--sharer` value as `load_c2c` takes it: comma-separated names (`a,b`) become a list, one per
    sharer of a multi-sharer checkpoint; a single name or None stays as it is."""
    if text is None or "," not in text:
        return text
    return [name.strip() for name in text.split(",")]
