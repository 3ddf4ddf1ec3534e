"""The compiled dispatch path (vpp.dispatch.kernels_numba) agrees with the numpy path, its reference.

References: three ``np.bincount`` for the per-bus sums (the compiled pass adds
in the same order, so it must agree to the last bit), and for the split the
gather / allocator / scatter / bincount of :meth:`Portfolio._split_numpy` with
:func:`~vpp.dispatch.allocation.pro_rata` and
:func:`~vpp.dispatch.allocation.merit_order` (checked on their own in
test_allocation.py). The split sums in another order, so it agrees to
round-off: 1e-9 relative and absolute, scaled by the largest power [kW].
Shapes (0,), (1,) and (n,); whole-VPP, targeted and empty calls; several
requests in a row, both directions, beyond the room. Tests that need numba are
skipped without it; the import and switch tests run either way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpp.dispatch import Portfolio, aggregate_by_bus, get_allocator
from vpp.dispatch.aggregate import sum_by_bus
from vpp.dr import Direction, DRCall
from vpp.fleets import BaseStationFleet, Envelope

TOL = 1e-9
needs_numba = pytest.mark.skipif(
    __import__("importlib").util.find_spec("numba") is None, reason="numba is not installed"
)


def _envelope(rng: np.random.Generator, n: int, scale_kw: float = 100.0) -> Envelope:
    """Random bounds with p_min <= p_default <= p_max; some devices without room either way."""
    a, b = rng.uniform(-scale_kw, scale_kw, (2, n))
    p_min, p_max = np.minimum(a, b), np.maximum(a, b)
    p_def = p_min + rng.random(n) * (p_max - p_min)
    # Some devices sit on a bound: no room down, or no room up.
    at_min, at_max = rng.random((2, n)) < 0.1
    p_def = np.where(at_min, p_min, np.where(at_max, p_max, p_def))
    return Envelope(p_min, p_max, p_def)


def _portfolio(bus_idx: np.ndarray, n_bus: int, cost, strategy: str) -> Portfolio:
    """A one-fleet portfolio over the given buses and costs (the fleet's own physics is not used here)."""
    n = bus_idx.shape[0]
    fleet = BaseStationFleet(
        "t", bus_idx, "op", cost, p_idle_kw=2.3, p_busy_kw=3.9, p_design_kw=3.9, cap_kwh=25.0, p_batt_max_kw=5.0,
        eta=0.95, backup_h=3.0, soc_min=0.1, soc_max=1.0, soc_init=0.9, traffic_profile="bs_traffic_urban",
        traffic_scale=np.ones(n), clock_start_h=18.0,
    )
    return Portfolio([fleet], n_bus, get_allocator(strategy))


def _both_splits(pf: Portfolio, env: Envelope, requests):
    """(numpy, numba) setpoints and per-call per-bus instructions for the same requests."""
    out = []
    for use_numba in (False, True):
        pf.use_numba = use_numba
        p_kw, instructed = pf.setpoints(env, requests)
        out.append((p_kw.copy(), {k: v.copy() for k, v in instructed.items()}))
    return out


# ------------------------------------------------------------------ per-bus aggregation


@needs_numba
@settings(max_examples=60, deadline=None)
@given(n=st.sampled_from([0, 1, 2, 17, 500]), n_bus=st.integers(1, 40), seed=st.integers(0, 10**6))
def test_compiled_aggregation_equals_bincount_to_the_bit(n, n_bus, seed):
    rng = np.random.default_rng(seed)
    bus = rng.integers(0, n_bus, n)
    env = _envelope(rng, n)
    ref = aggregate_by_bus(bus, env, n_bus)
    got = aggregate_by_bus(bus, env, n_bus, use_numba=True)
    for name in ("p_default_kw", "down_kw", "up_kw"):
        assert getattr(got, name).shape == (n_bus,)
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)


@needs_numba
@settings(max_examples=60, deadline=None)
@given(n=st.sampled_from([0, 1, 2, 17, 500]), n_bus=st.integers(1, 40), seed=st.integers(0, 10**6))
def test_compiled_power_by_bus_equals_bincount_to_the_bit(n, n_bus, seed):
    """The engine's per-bus power of each fleet (plant and twin, every tick)."""
    rng = np.random.default_rng(seed)
    bus = rng.integers(0, n_bus, n)
    p_kw = rng.normal(0.0, 50.0, n)
    ref = np.bincount(bus, weights=p_kw, minlength=n_bus)
    for use_numba in (False, True):
        out = np.full(n_bus, np.nan)
        assert sum_by_bus(bus, p_kw, out, use_numba=use_numba) is out
        assert out.tobytes() == ref.tobytes(), use_numba
    with pytest.raises(IndexError):
        sum_by_bus(np.array([0, n_bus]), np.ones(2), np.zeros(n_bus), use_numba=True)


@needs_numba
@pytest.mark.parametrize("bad", [-1, 3])
def test_compiled_aggregation_rejects_a_bus_outside_the_output(bad):
    from vpp.dispatch import kernels_numba

    env = _envelope(np.random.default_rng(0), 4)
    bus = np.array([0, 1, bad, 2])
    with pytest.raises(IndexError):
        aggregate_by_bus(bus, env, 3, use_numba=True)
    # The compiled splits check too (the portfolio checks its bus indices once, when built).
    p_min, p_max = np.full(4, -1.0), np.full(4, 1.0)
    for split, args in ((kernels_numba.split_pro_rata, (np.zeros(0, np.intp), True)),
                        (kernels_numba.split_merit_order, (np.arange(4),))):
        with pytest.raises(IndexError):
            split(-1e9, np.zeros(4), p_min, p_max, bus, *args, np.zeros(3))


def test_portfolio_rejects_bus_indices_outside_the_grid():
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        _portfolio(np.array([0, 2]), 2, 0.0, "pro_rata")


# ------------------------------------------------------------------ split


@needs_numba
@settings(max_examples=150, deadline=None)
@given(
    n=st.sampled_from([0, 1, 2, 9, 300]),
    strategy=st.sampled_from(["pro_rata", "merit_order"]),
    target=st.sampled_from(["all", "all_buses_listed", "some", "none"]),
    deltas=st.lists(st.one_of(st.floats(-2e4, 2e4), st.sampled_from([0.0, -1e9, 1e9])), min_size=1, max_size=3),
    seed=st.integers(0, 10**6),
)
def test_compiled_split_equals_numpy_split(n, strategy, target, deltas, seed):
    rng = np.random.default_rng(seed)
    n_bus = 6
    bus = rng.integers(0, n_bus, n)
    cost = rng.integers(0, 4, n).astype(float)  # ties: merit order keeps device order among them
    pf = _portfolio(bus, n_bus, cost, strategy)
    env = _envelope(rng, n)
    bus_sel = {"all": None, "all_buses_listed": tuple(range(n_bus)), "some": (1, 4), "none": (5,)}[target]
    if target == "none":
        bus = np.where(bus == 5, 0, bus)
        pf = _portfolio(bus, n_bus, cost, strategy)
    requests = [(DRCall(f"c{k}", Direction.REDUCE if d < 0 else Direction.INCREASE, max(abs(d), 1e-3), 0.0, 600.0,
                        0.0, bus_idx=bus_sel), d) for k, d in enumerate(deltas)]
    (p_ref, inst_ref), (p_got, inst_got) = _both_splits(pf, env, requests)
    scale = TOL * max(1.0, float(np.abs(env.p_max_kw).max(initial=0.0)), max(abs(d) for d in deltas if abs(d) < 1e8)
                      if any(abs(d) < 1e8 for d in deltas) else 1.0)
    np.testing.assert_allclose(p_got, p_ref, rtol=TOL, atol=scale)
    assert set(inst_got) == set(inst_ref)
    for cid in inst_ref:
        assert inst_got[cid].shape == (n_bus,)
        np.testing.assert_allclose(inst_got[cid], inst_ref[cid], rtol=TOL, atol=scale * max(n, 1), err_msg=cid)
    # Both paths keep every setpoint inside the envelope and move only targeted devices.
    assert np.all(p_got >= env.p_min_kw - scale) and np.all(p_got <= env.p_max_kw + scale)
    if bus_sel is not None:
        untouched = ~np.isin(bus, bus_sel)
        np.testing.assert_array_equal(p_got[untouched], env.p_default_kw[untouched])


@needs_numba
@pytest.mark.parametrize("strategy", ["pro_rata", "merit_order"])
def test_compiled_split_at_scale(strategy):
    """10^5 devices over 100 buses, half the room requested: the two paths agree to round-off."""
    rng = np.random.default_rng(1)
    n, n_bus = 100_000, 100
    bus = rng.integers(0, n_bus, n)
    pf = _portfolio(bus, n_bus, rng.uniform(0.0, 2.0, n), strategy)
    env = _envelope(rng, n)
    room_kw = float((env.p_default_kw - env.p_min_kw).sum())
    call = DRCall("c", Direction.REDUCE, 0.5 * room_kw, 0.0, 600.0, 0.0)
    (p_ref, inst_ref), (p_got, inst_got) = _both_splits(pf, env, [(call, -0.5 * room_kw)])
    np.testing.assert_allclose(p_got, p_ref, rtol=TOL, atol=TOL * 100.0)
    np.testing.assert_allclose(inst_got["c"], inst_ref["c"], rtol=TOL, atol=TOL * room_kw)
    assert abs(inst_got["c"].sum() + 0.5 * room_kw) <= TOL * room_kw


@needs_numba
def test_any_other_allocator_is_split_by_numpy_with_numba_on():
    """A user's callable is used as given: the compiled path only stands for the two built-in strategies."""
    rng = np.random.default_rng(3)
    bus = rng.integers(0, 3, 20)
    calls = []

    def everything_from_device_0(delta_kw, room_kw, cost):
        calls.append(room_kw.shape)
        out = np.zeros_like(room_kw)
        if room_kw.size:
            out[0] = np.sign(delta_kw) * min(abs(delta_kw), room_kw[0])
        return out

    pf = _portfolio(bus, 3, 0.0, "pro_rata")
    pf.allocator = everything_from_device_0
    env = _envelope(rng, 20)
    pf.use_numba = True
    p_kw, _ = pf.setpoints(env, [(DRCall("c", Direction.REDUCE, 1.0, 0.0, 600.0, 0.0), -1.0)])
    assert calls == [(20,)]
    np.testing.assert_array_equal(p_kw[1:], env.p_default_kw[1:])


def test_whole_vpp_call_targets_every_device():
    bus = np.array([0, 1, 1, 2])
    pf = _portfolio(bus, 3, 0.0, "pro_rata")
    np.testing.assert_array_equal(pf.targets(DRCall("c", Direction.REDUCE, 1.0, 0.0, 600.0, 0.0)), np.arange(4))
    np.testing.assert_array_equal(
        pf.targets(DRCall("d", Direction.REDUCE, 1.0, 0.0, 600.0, 0.0, bus_idx=(0, 2))), [0, 3])


# ------------------------------------------------------------------ import and switch

_PROBE = """
import json, sys
import vpp.dispatch
from vpp.dispatch import Portfolio, get_allocator
pf = Portfolio([], 3, get_allocator("pro_rata"))
print(json.dumps({"use_numba": pf.use_numba, "numba_loaded": "numba" in sys.modules}))
"""


def _probe(env_extra: dict) -> dict:
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=120,
                         env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_vpp_dispatch_does_not_import_numba():
    assert _probe({"VPP_NO_NUMBA": ""})["numba_loaded"] is False


def test_vpp_no_numba_forces_numpy_dispatch():
    assert _probe({"VPP_NO_NUMBA": "1"})["use_numba"] is False
