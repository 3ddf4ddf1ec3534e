"""A workspace may take its envelope arrays from the caller: the fleet then writes its envelope there.

:meth:`vpp.dispatch.Portfolio.flexibility` relies on this to have each fleet
write straight into its slice of the portfolio's buffers. The envelope must be
the one the fleet computes in a workspace of its own, bit for bit, for every
kind.
"""

from __future__ import annotations

import numpy as np
import pytest

from vpp.build import build_plant
from vpp.dispatch import Portfolio, get_allocator
from vpp.fleets import Envelope
from vpp.scenario import parse_scenario

NAMES = ("p_min_kw", "p_max_kw", "p_default_kw")


@pytest.fixture(scope="module")
def grid(make_small_dict):
    """The network, built once (slow) and only read: each test builds its own fleets on it."""
    from vpp.build import build_grid

    return build_grid(parse_scenario(make_small_dict()))


@pytest.fixture
def fleets(small_dict, grid):
    return build_plant(parse_scenario(small_dict), grid=grid).fleets


def _evening_states(fleets, n_ticks: int = 12, dt_s: float = 300.0):
    states = [f.initial_state() for f in fleets]
    for k in range(n_ticks):
        for f, s in zip(fleets, states):
            f.step_default(s, k * dt_s, dt_s)
    t_s = n_ticks * dt_s
    for f, s in zip(fleets, states):
        f.advance(s, t_s, dt_s)
    return states, t_s


def test_workspace_out_receives_the_envelope_bit_for_bit(fleets):
    states, t_s = _evening_states(fleets)
    for f, s in zip(fleets, states):
        ref = f.flexibility(s, t_s, 300.0, work=f.new_workspace())
        big = np.full((3, f.n + 4), np.nan)  # views in the middle of larger buffers, as a portfolio's are
        out = Envelope(*(big[k, 2:-2] for k in range(3)))
        env = f.flexibility(s, t_s, 300.0, work=f.new_workspace(out=out))
        for k, name in enumerate(NAMES):
            assert np.shares_memory(getattr(env, name), big[k]), f"{f.kind}: {name} is not the caller's array"
            np.testing.assert_array_equal(getattr(env, name), getattr(ref, name), err_msg=f"{f.kind} {name}")
        assert np.isnan(big[:, :2]).all() and np.isnan(big[:, -2:]).all(), "wrote outside its slice"
        # The step accepts the envelope held in the caller's arrays.
        f.step(s, env.p_default_kw.copy(), t_s, 300.0, env)


@pytest.mark.parametrize("bad", ["shape", "dtype", "readonly"])
def test_workspace_out_must_fit(fleets, bad):
    f = fleets[0]
    arrays = [np.zeros(f.n) for _ in range(3)]
    if bad == "shape":
        arrays[1] = np.zeros(f.n + 1)
    elif bad == "dtype":
        arrays[2] = np.zeros(f.n, dtype=np.float32)
    else:
        arrays[0].flags.writeable = False
    with pytest.raises(ValueError, match="workspace out"):
        f.new_workspace(out=Envelope(*arrays))


def test_portfolio_envelope_is_written_in_place_and_equals_the_fleets(fleets):
    states, t_s = _evening_states(fleets)
    pf = Portfolio(fleets, 200, get_allocator("pro_rata"))
    env = pf.flexibility(states, t_s, 300.0)
    for f, s, (_, lo, hi), fe in zip(fleets, states, pf.slices(), pf._fleet_envs):
        ref = f.flexibility(s, t_s, 300.0, work=f.new_workspace())
        for name in NAMES:
            # The fleet's envelope is a view of the portfolio's buffer: no copy between them.
            assert np.shares_memory(getattr(fe, name), getattr(env, name))
            np.testing.assert_array_equal(getattr(env, name)[lo:hi], getattr(ref, name), err_msg=f"{f.kind} {name}")
    p_kw = pf.step(states, env.p_default_kw.copy(), t_s, 300.0)
    np.testing.assert_array_equal(p_kw, env.p_default_kw)


def test_a_portfolio_dispatched_fleet_allocates_no_workspace_of_its_own(fleets):
    """The fleet's own workspace is made on first use, which dispatch through a portfolio never is."""
    pf = Portfolio(fleets, 200, get_allocator("pro_rata"))
    states = pf.initial_states()
    for k in range(3):
        pf.advance(states, k * 300.0, 300.0)
        env = pf.flexibility(states, k * 300.0, 300.0)
        pf.step(states, env.p_default_kw.copy(), k * 300.0, 300.0)
    assert all(f._ws is None for f in fleets)


def test_a_fleet_without_its_own_workspace_yet_makes_one_on_first_use(fleets):
    """Every entry point that defaults to the fleet's own workspace creates it lazily (every kind)."""
    for f in fleets:
        for call in ("flexibility", "step_default", "run_default"):
            f._ws = None
            s = f.initial_state()
            f.advance(s, 0.0, 300.0)
            if call == "flexibility":
                f.flexibility(s, 0.0, 300.0)
            elif call == "step_default":
                f.step_default(s, 0.0, 300.0)
            else:
                f.run_default(s, 0.0, 300.0)
            assert f._ws is not None, f"{f.kind}: {call}"
