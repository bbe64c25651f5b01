"""Layer maps: terminal alignment with clamping, and depth-normalised alignment."""

import pytest

from cache2cache import build_layer_map, depth_map, terminal_map


def test_terminal_map_qwen3_0_6b_from_qwen2_5_0_5b():
    m = terminal_map(28, 24)
    assert [m[t] for t in range(5)] == [0] * 5
    assert all(m[t] == t - 4 for t in range(4, 28))
    assert m[27] == 23


def test_terminal_map_shallow_and_deep_sharers():
    assert [terminal_map(28, 16)[t] for t in range(13)] == [0] * 13  # Llama-3.2-1B: t=0..12 -> 0
    assert terminal_map(28, 16)[27] == 15
    assert terminal_map(28, 36) == {t: t + 8 for t in range(28)}  # Qwen3-4B


def test_depth_map_aligns_relative_depth():
    m = depth_map(5, 3)
    assert m == {0: 0, 1: 0, 2: 1, 3: 1, 4: 2}  # ties (depth .25, .75) go to the shallower layer
    assert depth_map(28, 24)[0] == 0 and depth_map(28, 24)[27] == 23
    assert depth_map(1, 4) == {0: 0}


def test_unknown_map_and_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="unknown layer map"):
        build_layer_map("nearest", 4, 4)
    with pytest.raises(ValueError, match="positive"):
        terminal_map(0, 3)
