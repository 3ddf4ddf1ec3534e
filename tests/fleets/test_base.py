"""What every fleet offers (vpp/fleets/base.py): pure flexibility, the state as a value, owned work buffers.

Every kind of the registry, built from a scenario configuration by its own
builder, is checked for the contract of the module docstring:
``flexibility`` "never changes the state, so looking ahead is free of side
effects"; the state is "a value of arrays and scalars that can be copied and
compared"; an envelope lives in a workspace and "is valid until the next
``flexibility`` call on the same workspace".

Snapshots here are taken field by field with ``np.array(..., copy=True)``,
independently of :meth:`FleetState.copy`, so that a shallow ``copy`` could not
hide a mutation.
"""

from __future__ import annotations

from dataclasses import fields
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpp.fleets import KINDS, Envelope, Fleet, FleetState
from vpp.fleets.parameters import CHARGER_PARAMETERS

DURATION_S = 2 * 86400.0


def _build(kind: str, variant: str, n: int, seed: int, clock_start_h: float) -> Fleet:
    """A fleet of ``kind`` from its configuration model and registered builder."""
    spec = KINDS[kind]
    rng = np.random.default_rng(seed)
    common = {"kind": kind, "name": f"{kind}_fleet", "operator": "op", "n_devices": n}
    if kind == "ev":
        cfg = spec.config(**common, charger=variant, v2g_share=0.5, soc_v2g_min=0.2)
    elif kind == "basestation":
        cfg = spec.config(**common, soc_init=float(rng.uniform(0.1, 1.0)))
    else:
        cfg = spec.config(**common, pv_share=0.5, battery_share=0.5)
    time = SimpleNamespace(duration_s=DURATION_S, clock_start_h=clock_start_h)
    fleet = spec.build(cfg, rng, np.zeros(n, dtype=np.int64), time)
    assert isinstance(fleet, spec.fleet) and fleet.kind == kind and fleet.n == n
    return fleet


# (kind, variant): every charger parameter set for EVs, the default set otherwise.
FLEETS = [("ev", c) for c in sorted(CHARGER_PARAMETERS)] + [("basestation", ""), ("building", "")]


def _snapshot(state: FleetState) -> dict:
    return {
        f.name: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v)
        for f in fields(state)
        for v in (getattr(state, f.name),)
    }


def _matches(state: FleetState, snap: dict) -> bool:
    for name, v in snap.items():
        a = getattr(state, name)
        if isinstance(v, np.ndarray):
            if a.dtype != v.dtype or a.shape != v.shape or a.tobytes() != v.tobytes():
                return False
        elif not (a == v or (a != a and v != v)):
            return False
    return True


def _env_arrays(env: Envelope) -> tuple[np.ndarray, ...]:
    return tuple(np.array(a, copy=True) for a in (env.p_min_kw, env.p_max_kw, env.p_default_kw))


def _same_env(a: tuple[np.ndarray, ...], b) -> bool:
    b = _env_arrays(b) if isinstance(b, Envelope) else b
    return all(x.dtype == y.dtype and x.tobytes() == y.tobytes() for x, y in zip(a, b, strict=True))


def _setpoints(rng: np.random.Generator, env: Envelope) -> np.ndarray:
    """Setpoints [kW] inside and on both sides of the envelope."""
    lo, hi = env.p_min_kw, env.p_max_kw
    span = hi - lo + 1.0
    return rng.uniform(lo - span, hi + span)


def _warm_up(fleet: Fleet, state: FleetState, rng: np.random.Generator, n_ticks: int, dt_s: float) -> float:
    """Run ``n_ticks`` at arbitrary setpoints; return the start of the next tick [s]."""
    for i in range(n_ticks):
        t_s = i * dt_s
        fleet.advance(state, t_s, dt_s)
        env = fleet.flexibility(state, t_s, dt_s)
        fleet.step(state, _setpoints(rng, env), t_s, dt_s, env)
    return n_ticks * dt_s


FLEET_IDS = [f"{k}-{v}" if v else k for k, v in FLEETS]

_common = dict(
    n=st.integers(0, 8),
    seed=st.integers(0, 2**32 - 1),
    dt_s=st.sampled_from([60.0, 300.0, 900.0]),
    clock_start_h=st.floats(0.0, 23.99),
    warm_up=st.integers(0, 30),
)


@pytest.mark.parametrize("which", FLEETS, ids=FLEET_IDS)
@settings(max_examples=12, deadline=None, database=None)
@given(
    **_common,
    future=st.lists(
        st.tuples(st.floats(0.0, 2 * 86400.0), st.sampled_from([1.0, 60.0, 300.0, 900.0, 3600.0])),
        min_size=1, max_size=4,
    ),
)
def test_flexibility_is_pure_now_and_at_any_future_time(which, n, seed, dt_s, clock_start_h, warm_up, future):
    kind, variant = which
    fleet = _build(kind, variant, n, seed, clock_start_h)
    state = fleet.initial_state()
    rng = np.random.default_rng(seed)
    t_s = _warm_up(fleet, state, rng, warm_up, dt_s)
    fleet.advance(state, t_s, dt_s)
    snap, ref = _snapshot(state), state.copy()

    env = fleet.flexibility(state, t_s, dt_s)
    now = _env_arrays(env)
    assert _matches(state, snap) and state.equals(ref)
    assert np.all(env.p_min_kw <= env.p_default_kw) and np.all(env.p_default_kw <= env.p_max_kw)
    assert _same_env(now, fleet.flexibility(state, t_s, dt_s))  # twice: the same envelope
    assert _matches(state, snap)

    for offset_s, dt_f_s in future:
        t_f_s = t_s + offset_s
        first = _env_arrays(fleet.flexibility(state, t_f_s, dt_f_s))
        assert _matches(state, snap), (t_f_s, dt_f_s)
        assert _same_env(first, fleet.flexibility(state, t_f_s, dt_f_s))
        assert _matches(state, snap)

    # Looking ahead changed nothing: the envelope now is still the one computed first.
    assert _same_env(now, fleet.flexibility(state, t_s, dt_s))
    assert _matches(state, snap) and state.equals(ref)


@pytest.mark.parametrize("which", FLEETS, ids=FLEET_IDS)
@settings(max_examples=8, deadline=None, database=None)
@given(**_common, n_steps=st.integers(1, 10))
def test_state_is_a_value(which, n, seed, dt_s, clock_start_h, warm_up, n_steps):
    """Copies are independent; equal states and equal setpoints give bit-identical states; workspaces agree."""
    kind, variant = which
    fleet = _build(kind, variant, n, seed, clock_start_h)
    state = fleet.initial_state()
    rng = np.random.default_rng(seed)
    t0_s = _warm_up(fleet, state, rng, warm_up, dt_s)
    snap = _snapshot(state)

    a, b = state.copy(), state.copy()
    assert a.equals(state) and b.equals(state) and _matches(a, snap)
    for f in fields(state):
        v = getattr(state, f.name)
        if isinstance(v, np.ndarray) and v.size:
            assert not np.shares_memory(v, getattr(a, f.name)), f.name
    ws_b = fleet.new_workspace()
    for i in range(n_steps):
        t_s = t0_s + i * dt_s
        fleet.advance(a, t_s, dt_s)
        fleet.advance(b, t_s, dt_s)
        assert a.equals(b)
        env_a = fleet.flexibility(a, t_s, dt_s)
        env_b = fleet.flexibility(b, t_s, dt_s, work=ws_b)
        assert env_b.work is ws_b and env_a.work is not ws_b
        if n:
            assert not np.shares_memory(env_a.p_min_kw, env_b.p_min_kw)
        kept_a = _env_arrays(env_a)
        assert _same_env(kept_a, env_b)  # the same state in two workspaces: the same envelope
        p_set = _setpoints(rng, env_a)
        p_a = fleet.step(a, p_set.copy(), t_s, dt_s, env_a)
        p_b = fleet.step(b, p_set.copy(), t_s, dt_s, env_b)
        assert p_a is a.p_kw and p_b is b.p_kw
        assert a.equals(b) and b.equals(a)
        assert _matches(state, snap)  # stepping the copies left the original alone
    for report in (fleet.summary, fleet.tick_metrics):
        ra, rb = report(a), report(b)
        assert ra.keys() == rb.keys()
        assert all(ra[k] == rb[k] or (ra[k] != ra[k] and rb[k] != rb[k]) for k in ra), (ra, rb)

    # step_default on a copy is advance + flexibility + step at the default power.
    c, d = a.copy(), a.copy()
    t_s = t0_s + n_steps * dt_s
    fleet.step_default(c, t_s, dt_s)
    fleet.advance(d, t_s, dt_s)
    env_d = fleet.flexibility(d, t_s, dt_s, work=ws_b)
    fleet.step(d, env_d.p_default_kw.copy(), t_s, dt_s, env_d)
    assert c.equals(d)
    assert _matches(state, snap)


@pytest.mark.parametrize("which", FLEETS, ids=FLEET_IDS)
def test_envelopes_in_other_workspaces_survive_and_stale_envelopes_are_refused(which):
    kind, variant = which
    fleet = _build(kind, variant, 6, 3, 18.0)
    state = fleet.initial_state()
    _warm_up(fleet, state, np.random.default_rng(3), 5, 300.0)
    t_s, dt_s = 1500.0, 300.0
    fleet.advance(state, t_s, dt_s)
    ws = fleet.new_workspace()
    env_ws = fleet.flexibility(state, t_s, dt_s, work=ws)
    kept = _env_arrays(env_ws)
    # Calls on the fleet's own workspace (other ticks, a copy of the state) leave the other workspace alone.
    other = state.copy()
    fleet.flexibility(other, t_s + 7200.0, 60.0)
    fleet.flexibility(state, t_s + 3600.0, 900.0)
    assert _same_env(kept, env_ws)

    # An envelope only serves the state and tick it was computed for.
    with pytest.raises(ValueError, match="envelope"):
        fleet.step(other, env_ws.p_default_kw.copy(), t_s, dt_s, env_ws)
    with pytest.raises(ValueError, match="envelope"):
        fleet.step(state, env_ws.p_default_kw.copy(), t_s + dt_s, dt_s, env_ws)
    env_own = fleet.flexibility(state, t_s, dt_s)
    fleet.flexibility(state, t_s + dt_s, dt_s)  # overwrites env_own's workspace
    with pytest.raises(ValueError, match="envelope"):
        fleet.step(state, np.zeros(fleet.n), t_s, dt_s, env_own)
    hand = Envelope(*_env_arrays(env_ws))  # built by hand: no workspace behind it
    with pytest.raises(ValueError, match="envelope"):
        fleet.step(state, np.zeros(fleet.n), t_s, dt_s, hand)
    # Bad setpoints are refused before anything moves.
    snap = _snapshot(state)
    with pytest.raises(ValueError, match="NaN"):
        fleet.step(state, np.full(fleet.n, np.nan), t_s, dt_s, env_ws)
    with pytest.raises(ValueError, match="shape"):
        fleet.step(state, np.zeros(fleet.n + 1), t_s, dt_s, env_ws)
    assert _matches(state, snap)
    # The valid envelope still works, once: after the step it no longer describes the state.
    fleet.step(state, env_ws.p_default_kw.copy(), t_s, dt_s, env_ws)
    with pytest.raises(ValueError, match="envelope"):
        fleet.step(state, np.zeros(fleet.n), t_s, dt_s, env_ws)


@pytest.mark.parametrize("which", FLEETS, ids=FLEET_IDS)
def test_parameters_are_frozen(which):
    """Every public per-device parameter array (and the EV session table) is read-only."""
    kind, variant = which
    n = 5  # no taper curve has 5 knots: per-device arrays are the ones of length n
    fleet = _build(kind, variant, n, 0, 0.0)
    arrays = {k: v for k, v in vars(fleet).items() if isinstance(v, np.ndarray) and v.shape == (n,)}
    if kind == "ev":
        arrays.update({f"sessions.{f.name}": getattr(fleet.sessions, f.name) for f in fields(fleet.sessions)})
    assert arrays
    for name, a in arrays.items():
        assert not a.flags.writeable, name
        with pytest.raises(ValueError):
            a[...] = 0


def test_state_equals_is_bit_identity():
    fleet = _build("ev", "dc_fast", 3, 0, 8.0)
    s = fleet.initial_state()
    fleet.step_default(s, 0.0, 60.0)
    t = s.copy()
    assert s.equals(t)
    t.e_kwh[0] = np.nextafter(t.e_kwh[0], np.inf)  # one ulp
    assert not s.equals(t)
    t = s.copy()
    t.e_grid_kwh += 1e-300 if t.e_grid_kwh == 0.0 else t.e_grid_kwh * 1e-15
    assert not s.equals(t)
    t = s.copy()
    t.n_arrived += 1
    assert not s.equals(t)
    # NaN in the same place counts as equal.
    s.e_kwh[1] = np.nan
    assert s.equals(s.copy())
    assert not s.equals(object())


@pytest.mark.parametrize("which", FLEETS, ids=FLEET_IDS)
@settings(max_examples=10, deadline=None, database=None)
@given(**_common, n_steps=st.integers(1, 40))
def test_run_default_is_step_at_default_bit_for_bit(which, n, seed, dt_s, clock_start_h, warm_up, n_steps):
    """The twin's shortcut (Fleet.run_default: no bounds where a kind can skip them) moves a state exactly as
    flexibility + step at p_default_kw does: same powers and same state, bit for bit, tick after tick."""
    kind, variant = which
    fleet = _build(kind, variant, n, seed, clock_start_h)
    rng = np.random.default_rng(seed)
    state = fleet.initial_state()
    t0 = _warm_up(fleet, state, rng, warm_up, dt_s)
    ref, got = state.copy(), state.copy()
    ws_ref, ws_got = fleet.new_workspace(), fleet.new_workspace()
    for k in range(n_steps):
        t_s = t0 + k * dt_s
        fleet.advance(ref, t_s, dt_s)
        fleet.advance(got, t_s, dt_s)
        env = fleet.flexibility(ref, t_s, dt_s, ws_ref)
        p_ref = np.array(fleet.step(ref, env.p_default_kw, t_s, dt_s, env), copy=True)
        p_got = fleet.run_default(got, t_s, dt_s, ws_got)
        assert p_got.tobytes() == p_ref.tobytes(), (kind, k)
        assert got.equals(ref), (kind, k)
