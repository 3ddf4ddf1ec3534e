"""Allocation strategies: never more than the room, totals as requested, cheapest first for merit order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vpp.dispatch.allocation import ALLOCATORS, get_allocator, merit_order, pro_rata

rooms = arrays(np.float64, st.integers(0, 40), elements=st.floats(0.0, 500.0))


@settings(max_examples=100, deadline=None)
@given(room=rooms, delta=st.floats(-5000.0, 5000.0), name=st.sampled_from(sorted(ALLOCATORS)), seed=st.integers(0, 99))
def test_allocation_bounds_and_total(room, delta, name, seed):
    cost = np.random.default_rng(seed).uniform(0.0, 3.0, size=room.shape)
    out = get_allocator(name)(delta, room, cost)
    assert out.shape == room.shape
    assert np.all(np.abs(out) <= room * (1 + 1e-12) + 1e-12)
    assert np.all(out * delta >= 0.0)  # every device moves the requested way (or not at all)
    expected = min(abs(delta), float(room.sum()))
    assert abs(abs(out.sum()) - expected) <= 1e-9 * max(1.0, expected)


def test_pro_rata_is_proportional():
    out = pro_rata(-30.0, np.array([10.0, 20.0, 30.0]), np.zeros(3))
    np.testing.assert_allclose(out, [-5.0, -10.0, -15.0])


def test_merit_order_takes_cheapest_first():
    room = np.array([10.0, 10.0, 10.0])
    cost = np.array([3.0, 1.0, 2.0])
    np.testing.assert_allclose(merit_order(15.0, room, cost), [0.0, 10.0, 5.0])


@pytest.mark.parametrize("shape", [0, 1, 7])
def test_shapes(shape):
    for fn in (pro_rata, merit_order):
        assert fn(-1.0, np.ones(shape), np.zeros(shape)).shape == (shape,)


def test_unknown_strategy_lists_valid():
    with pytest.raises(KeyError, match="valid: edf, llf, merit_order, optimal, pro_rata"):
        get_allocator("lottery")
