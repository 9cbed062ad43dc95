"""The split search space: stick-breaking parameters, the exhaustive grid, the local search. Pure Python."""

import pytest

from isotune.core.space import cuts_from_ratios, grid, local_best, params_for, ratios_from_cuts, ratios_of


def test_stick_breaking_round_trips_and_replays_bounds():
    for ratios in ([1.0], [0.5, 0.5], [0.2, 0.3, 0.5], [0.1] * 10):
        assert ratios_from_cuts(cuts_from_ratios(ratios)) == pytest.approx(ratios)
    p = params_for([0, 320, 1024])
    assert p["chunks"] == 2 and ratios_from_cuts([p["cut1"]]) == pytest.approx([0.3125, 0.6875])
    assert ratios_of([0, 320, 1024]) == [0.3125, 0.6875]


def test_grid_holds_every_distinct_aligned_split():
    g = grid(1024, 2, 16)
    assert [0, 1024] in g and [0, 512, 1024] in g
    assert len(g) == 1 + 19  # k=1, and k=2 at ratio steps 0.05..0.95
    g3 = grid(1024, 3, 16)
    assert len(g3) == 1 + 19 + 171 and len({tuple(b) for b in g3}) == len(g3)
    assert all(b - a >= 16 for bounds in g3 for a, b in zip(bounds, bounds[1:], strict=False))
    assert len(grid(64, 3, 16)) < 1 + 19 + 171  # short prompts: points collapse onto few aligned splits


def test_local_best_finds_the_minimum_of_a_smooth_cost():
    target = [0, 416, 720, 1024]

    def cost(b):
        return (len(b) - 1 != 3) * 1e6 + sum((x - y) ** 2 for x, y in zip(b, target, strict=False)) + 1.0

    assert local_best(cost, 1024, 4, 16) == target
