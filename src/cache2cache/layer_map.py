"""Layer maps: which sharer layer feeds the fuser of each receiver layer (docs/method.md §3).

- `terminal` (the paper's "terminal alignment", published `last_aligned`): align the last layers of
  both models and walk backwards; receiver layer t reads sharer layer `clamp(t + S - T, 0, S - 1)`.
  When the sharer is shallower, the first receiver layers all read sharer layer 0 (the published
  code clamps rather than leaving them unmapped).
- `depth` (the paper's "depth-normalised alignment", published `k_nearest` with k=1): place both
  stacks on [0, 1] and take the nearest sharer layer.
"""

from __future__ import annotations

from typing import Literal, get_args

LayerMapName = Literal["terminal", "depth"]
LAYER_MAPS: tuple[str, ...] = get_args(LayerMapName)


def terminal_map(num_receiver_layers: int, num_sharer_layers: int) -> dict[int, int]:
    """Terminal alignment. Qwen3-0.6B (28) <- Qwen2.5-0.5B (24): t=0..4 -> 0, then t -> t-4.

    Returns:
        Receiver layer -> sharer layer, for every receiver layer.
    """
    _check(num_receiver_layers, num_sharer_layers)
    offset = num_sharer_layers - num_receiver_layers
    return {t: min(max(t + offset, 0), num_sharer_layers - 1) for t in range(num_receiver_layers)}


def depth_map(num_receiver_layers: int, num_sharer_layers: int) -> dict[int, int]:
    """Depth-normalised alignment: receiver layer t at depth t/(T-1) reads the nearest sharer depth.

    Ties go to the shallower sharer layer. A 1-layer model sits at depth 0.

    Returns:
        Receiver layer -> sharer layer, for every receiver layer.
    """
    _check(num_receiver_layers, num_sharer_layers)

    def depth(i: int, n: int) -> float:
        return i / (n - 1) if n > 1 else 0.0

    return {
        t: min(
            range(num_sharer_layers),
            key=lambda s: (abs(depth(s, num_sharer_layers) - depth(t, num_receiver_layers)), s),
        )
        for t in range(num_receiver_layers)
    }


def build_layer_map(name: str, num_receiver_layers: int, num_sharer_layers: int) -> dict[int, int]:
    """The layer map called `name` (`"terminal"` or `"depth"`)."""
    if name == "terminal":
        return terminal_map(num_receiver_layers, num_sharer_layers)
    if name == "depth":
        return depth_map(num_receiver_layers, num_sharer_layers)
    raise ValueError(f"unknown layer map {name!r}; choose one of {', '.join(LAYER_MAPS)}")


def _check(num_receiver_layers: int, num_sharer_layers: int) -> None:
    if num_receiver_layers < 1 or num_sharer_layers < 1:
        raise ValueError(
            f"layer counts must be positive, got receiver {num_receiver_layers}, sharer {num_sharer_layers}"
        )
