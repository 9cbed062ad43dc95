"""The split search space: alignment-respecting stick-breaking draws, the exhaustive grid, the
local search. Pure Python."""

import random
from itertools import pairwise

import pytest

from isotune.core.chunking import ratios_of
from isotune.core.space import (
    bounds_from_cuts,
    cuts_from_ratios,
    grid,
    local_best,
    max_chunks_for,
    params_for,
    ratios_from_cuts,
)


def _replay(params: dict, seq_len: int, align: int) -> list[int]:
    return bounds_from_cuts(seq_len, [params[f"cut{i}"] for i in range(1, params["chunks"])], align)


def test_stick_breaking_round_trips():
    for ratios in ([1.0], [0.5, 0.5], [0.2, 0.3, 0.5], [0.1] * 10):
        assert ratios_from_cuts(cuts_from_ratios(ratios)) == pytest.approx(ratios)
    assert ratios_of([0, 320, 1024]) == [0.3125, 0.6875]


@pytest.mark.parametrize("seq_len,align", [(64, 16), (100, 16), (1000, 16), (1024, 16), (4096, 64), (200, 64)])
def test_every_draw_is_a_valid_aligned_split(seq_len, align):
    r = random.Random(seq_len)
    k_max = max_chunks_for(seq_len, 8, align)
    assert k_max == min(8, seq_len // align)
    for _ in range(2000):
        k = r.randint(1, k_max)
        cuts = [r.choice([0.0, 1.0, r.random()]) for _ in range(k - 1)]  # the range's ends too
        b = bounds_from_cuts(seq_len, cuts, align)
        assert b[0] == 0 and b[-1] == seq_len and len(b) == k + 1
        assert all(y - x >= align for x, y in pairwise(b)), (cuts, b)
        assert all(x % align == 0 for x in b[:-1]), b
        assert _replay(params_for(b, align), seq_len, align) == b


def test_params_replay_every_grid_point_exactly():
    for seq_len, align in ((1024, 16), (1000, 16), (4096, 64)):
        for b in grid(seq_len, 3, align):
            assert _replay(params_for(b, align), seq_len, align) == b


def test_grid_holds_every_distinct_aligned_split():
    g = grid(1024, 2, 16)
    assert [0, 1024] in g and [0, 512, 1024] in g
    assert len(g) == 1 + 19  # k=1, and k=2 at ratio steps 0.05..0.95
    g3 = grid(1024, 3, 16)
    assert len(g3) == 1 + 19 + 171 and len({tuple(b) for b in g3}) == len(g3)
    assert all(b - a >= 16 for bounds in g3 for a, b in pairwise(bounds))
    assert len(grid(64, 3, 16)) < 1 + 19 + 171  # short prompts: points collapse onto few aligned splits


def test_local_best_finds_the_minimum_of_a_smooth_cost():
    target = [0, 416, 720, 1024]

    def cost(b):
        return (len(b) - 1 != 3) * 1e6 + sum((x - y) ** 2 for x, y in zip(b, target, strict=False)) + 1.0

    assert local_best(cost, 1024, 4, 16) == target
