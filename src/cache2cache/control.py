"""`FusionControl`: how much of C2C to apply at inference, without retraining.

Three knobs, each with the receiver alone at one end and plain C2C at the other:

    strength     alpha: every fused delta is scaled, K_fused = K_receiver + alpha * (K_c2c - K_receiver)
                 (the same for V). 0 is the receiver alone, 1 is C2C.
    layers       the receiver layers that get fused, a subset of the layer map. () is the receiver
                 alone, None (or every mapped layer) is C2C.
    proportion   p: only the last floor(p * n) of a prompt's n fusion-mask tokens are fused, per row
                 (the reference's partial fusion, `kv_cache_proportion` with order `back`, paper
                 Fig. 11). 0 is the receiver alone, 1 is C2C.

A fourth switch widens C2C instead of narrowing it:

    include_response   also fuse the last prompt token and every response token (generated, or
                       teacher-forced in training) as the receiver reads it, with the sharer running
                       over the response too (the reference's `include_response`; `response_fusion.py`).
                       `fuse_proportion` then counts the prompt's tokens only, so p = 0 fuses the
                       response alone.

A diagnostic switch asks whether the fusers use what the sharer read at each token:

    ablate_sharer      before fusion, replace the sharer's K and V at every fused token by their
                       mean over the row's fused tokens (per layer and KV head), so the fusers see
                       the sharer's average state but nothing token-specific. A fuser whose gain
                       survives this was not reading the sharer's content. `c2c eval
                       --ablate_sharer` sets it, as does any call given the control
                       (`C2CModel.fuse`, `forward`, `generate_from_inputs`); prefix reuse and
                       response fusion refuse it.

`C2CModel.generate` takes the first four as plain keyword arguments (`fusion_strength=`, `fuse_layers=`,
`fuse_proportion=`, `include_response=`) and builds the control with `FusionControl.from_kwargs`, so
a server or a CLI passes request fields straight through. The ranges are checked here once
(`valid_strength`, `valid_proportion`, `valid_layers`) for the Python API, `c2c eval` recipes and the
command-line flags alike. This module imports no torch (it only handles tensors it is given).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

STRENGTH_RANGE = "a finite number >= 0 (0: receiver alone, 1: C2C)"
PROPORTION_RANGE = "a number in [0, 1] (0: receiver alone, 1: C2C)"
LAYERS_RANGE = "receiver layer indices (integers >= 0)"


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def valid_strength(value: object) -> bool:
    """Whether `value` is a fusion strength alpha: `STRENGTH_RANGE`."""
    return _number(value) and math.isfinite(value) and value >= 0  # type: ignore[arg-type, operator]


def valid_proportion(value: object) -> bool:
    """Whether `value` is a fusion proportion p: `PROPORTION_RANGE`."""
    return _number(value) and 0 <= value <= 1  # type: ignore[operator]


def valid_layers(values: Iterable[object]) -> bool:
    """Whether every entry is a receiver layer index: `LAYERS_RANGE`."""
    return all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in values)


@dataclass(frozen=True)
class FusionControl:
    """Inference-time control of fusion; the defaults are plain C2C.

    Attributes:
        strength: alpha >= 0, the scale of every fused delta (values above 1 extrapolate).
        layers: Receiver layers to fuse (sorted, unique), or None for every mapped layer.
        proportion: p in [0, 1], the fraction of each prompt's fusion-mask tokens fused, counted
            from the end of the prompt.
        include_response: Also fuse the response tokens as the receiver reads them (and the last
            prompt token, where the fusion mask has it).
        ablate_sharer: Replace the sharer's K/V at the fused tokens by their per-row mean
            (`ablated`), a test of whether the fusers use the sharer's token-level content.

    Raises:
        ValueError: A value outside its range, naming the keyword argument and the fix.
    """

    strength: float = 1.0
    layers: tuple[int, ...] | None = None
    proportion: float = 1.0
    include_response: bool = False
    ablate_sharer: bool = False

    def __post_init__(self) -> None:
        if not valid_strength(self.strength):
            raise ValueError(f"fusion_strength must be {STRENGTH_RANGE}, got {self.strength!r}")
        if not valid_proportion(self.proportion):
            raise ValueError(f"fuse_proportion must be {PROPORTION_RANGE}, got {self.proportion!r}")
        if self.layers is not None:
            if not valid_layers(self.layers):
                raise ValueError(f"fuse_layers must be {LAYERS_RANGE}, got {list(self.layers)!r}")
            object.__setattr__(self, "layers", tuple(sorted(set(self.layers))))
        for name in ("include_response", "ablate_sharer"):
            if type(getattr(self, name)) is not bool:
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.include_response and self.ablate_sharer:
            raise ValueError(
                "ablate_sharer and include_response: the ablation averages the prompt's sharer cache, which "
                "response fusion extends token by token; use one of them"
            )

    @classmethod
    def from_kwargs(
        cls,
        fusion_strength: float = 1.0,
        fuse_layers: Iterable[int] | None = None,
        fuse_proportion: float = 1.0,
        include_response: bool = False,
    ) -> FusionControl:
        """The control that `generate`'s keyword arguments describe (None layers: every mapped layer)."""
        if isinstance(fuse_layers, (str, bytes)):
            raise ValueError(f"fuse_layers must be a list of receiver layer indices, got the string {fuse_layers!r}")
        layers = None if fuse_layers is None else tuple(fuse_layers)
        return cls(
            strength=fusion_strength, layers=layers, proportion=fuse_proportion, include_response=include_response
        )

    @property
    def fuses_nothing(self) -> bool:
        """True when the control leaves the receiver's cache as it is (so the sharer need not run)."""
        return self.strength == 0 or self.layers == () or (self.proportion == 0 and not self.include_response)

    @property
    def fuses_response(self) -> bool:
        """True when the response tokens get fused too (`include_response`, and anything to fuse)."""
        return self.include_response and not self.fuses_nothing

    def check_layers(self, fused_layers: Collection[int]) -> None:
        """Raise `ValueError` if `layers` names a receiver layer no fuser writes (`C2CConfig.fused_layers`)."""
        unknown = sorted(set(self.layers or ()) - set(fused_layers))
        if unknown:
            raise ValueError(
                f"fuse_layers {unknown} have no fuser: this checkpoint fuses receiver layers {sorted(fused_layers)}. "
                "Pick fuse_layers among those, or leave it unset for all of them."
            )

    def fusion_mask(self, fusion_mask: torch.Tensor) -> torch.Tensor:
        """`fusion_mask` restricted to the last floor(p * n) mask tokens of each row.

        Args:
            fusion_mask: (B, N) bool, the tokens C2C would fuse (left padding is never in it).

        Returns:
            (B, N) bool; `fusion_mask` itself when p == 1.
        """
        if self.proportion == 1:
            return fusion_mask
        counts = fusion_mask.sum(dim=1, keepdim=True)  # (B, 1)
        keep = (counts * self.proportion).floor().long()
        # Rank of each mask token counted from the row's end: 1 for the last mask token.
        rank_from_end = fusion_mask.flip(1).long().cumsum(1).flip(1)
        return fusion_mask & (rank_from_end <= keep)

    def ablated(
        self, sharer_kv: list[tuple[torch.Tensor, torch.Tensor]], fusion_mask: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """`sharer_kv` with each fused token's K and V replaced by their mean over the row's fused tokens.

        Args:
            sharer_kv: Per sharer layer `(K, V)`, each (B, H, N, D).
            fusion_mask: (B, N) bool, the tokens that get fused (after `fusion_mask`).

        Returns:
            The same layout; unfused tokens keep their values, and a row with no fused token is unchanged.
        """
        mask = fusion_mask[:, None, :, None]  # (B, 1, N, 1)
        count = mask.sum(dim=2, keepdim=True).clamp(min=1)  # (B, 1, 1, 1)

        def mean_over_mask(x: torch.Tensor) -> torch.Tensor:
            mean = (x.float() * mask).sum(dim=2, keepdim=True) / count  # (B, H, 1, D)
            return mean.to(x.dtype).expand_as(x).where(mask, x)

        return [(mean_over_mask(k), mean_over_mask(v)) for k, v in sharer_kv]
