"""The compiled EV envelope (vpp.fleets.kernels_numba) agrees with the numpy envelope, its reference.

Reference: :meth:`vpp.fleets.ev.EVFleet._envelope_numpy`, itself checked
against closed-form and RK4 references in test_ev.py and test_taper.py. Both
paths compute the same closed-form taper walk, so they must agree to round-off
(1e-9 relative and absolute) for every charger kind, state and tick length.
The tests that need numba are skipped without it; the import and switch tests
run either way.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from vpp.fleets import EVFleet, EVState, SessionTable, draw_sessions
from vpp.fleets.parameters import CHARGER_PARAMETERS

TOL = 1e-9  # relative and absolute [kW]
CHARGERS = tuple(CHARGER_PARAMETERS)  # ac_pile, dc_fast, supercharger, ebike_cabinet

needs_numba = pytest.mark.skipif(
    __import__("importlib").util.find_spec("numba") is None, reason="numba is not installed"
)


def _fleet(charger: str, n: int, seed: int, t_end_s: float = 8 * 3600.0, clock_start_h: float = 16.0,
           v2g_share: float = 0.4) -> EVFleet:
    rng = np.random.default_rng(seed)
    params = CHARGER_PARAMETERS[charger]
    p_rated_kw = np.full(n, params.p_rated_kw)
    sessions = draw_sessions(rng, params, p_rated_kw, t_end_s, clock_start_h)
    return EVFleet(charger, np.zeros(n, dtype=np.int64), "op", 0.0, p_rated_kw, params.eta, rng.random(n) < v2g_share,
                   0.3, sessions, params.taper_soc, params.taper_frac)


def _both(fleet: EVFleet, s: EVState, t_s: float, dt_s: float):
    """(numpy, numba) envelopes of the same state and tick, in two workspaces."""
    out = []
    for use_numba in (False, True):
        fleet.use_numba = use_numba
        out.append(fleet.flexibility(s, t_s, dt_s, work=fleet.new_workspace()))
    return out


def _assert_agree(ref, got, where: str) -> None:
    for name in ("p_min_kw", "p_max_kw", "p_default_kw"):
        np.testing.assert_allclose(getattr(got, name), getattr(ref, name), rtol=TOL, atol=TOL, err_msg=f"{name} {where}")


@needs_numba
@pytest.mark.parametrize("charger", CHARGERS)
@pytest.mark.parametrize("dt_s", [60.0, 300.0, 900.0])
def test_numba_envelope_equals_numpy_envelope_along_random_runs(charger, dt_s):
    """Drive a fleet with its default and with random setpoints; compare the two envelopes every tick."""
    rng = np.random.default_rng(7)
    fleet = _fleet(charger, 400, seed=11)
    s = fleet.initial_state()
    n_ticks = int(8 * 3600.0 / dt_s)
    n_tapered = 0
    for k in range(n_ticks):
        t_s = k * dt_s
        fleet.advance(s, t_s, dt_s)
        before = s.copy()
        ref, got = _both(fleet, s, t_s, dt_s)
        assert s.equals(before), "the compiled envelope changed the state"
        _assert_agree(ref, got, f"{charger} tick {k}")
        n_tapered += int((s.plugged & (s.e_kwh > 0.55 * s.cap_kwh)).sum())
        # Random setpoints below, inside and above the envelope on odd ticks; the default on even ones.
        if k % 2:
            p_set = rng.uniform(got.p_min_kw - 5.0, got.p_max_kw + 5.0)
        else:
            p_set = got.p_default_kw
        fleet.step(s, p_set, t_s, dt_s, got)
    assert n_tapered > 0, "the run never reached the tapered part of the curve"


@needs_numba
@pytest.mark.parametrize("charger", CHARGERS)
def test_numba_envelope_equals_numpy_envelope_on_arbitrary_states(charger):
    """States no run would reach in order: energies outside [0, cap], targets below the energy, departures
    inside the tick, zero acceptance, arrivals after the tick start, unplugged devices with stale values."""
    rng = np.random.default_rng(3)
    n = 5000
    params = CHARGER_PARAMETERS[charger]
    fleet = EVFleet(charger, np.zeros(n, dtype=np.int64), "op", 0.0, rng.choice([params.p_rated_kw, 0.5], n),
                    params.eta, rng.random(n) < 0.5, 0.3, SessionTable.from_dense(*(np.full((n, 1), np.inf),) * 6),
                    params.taper_soc, params.taper_frac)
    cap = rng.uniform(5.0, 120.0, n)
    soc = rng.choice([rng.uniform(-0.1, 1.1), 0.0, 0.55, 0.8, 1.0], n) + rng.uniform(-1e-3, 1e-3, n) * (rng.random(n) < 0.3)
    soc = np.where(rng.random(n) < 0.3, rng.uniform(-0.1, 1.1, n), soc)
    tgt = np.clip(soc + rng.uniform(-0.2, 0.9, n), 0.0, 1.0)
    t_s, dt_s = 3600.0, 300.0
    s = fleet.initial_state()
    s.plugged[:] = rng.random(n) < 0.85
    s.cap_kwh[:] = cap
    s.e_kwh[:] = soc * cap
    s.e_target_kwh[:] = tgt * cap
    s.p_accept_kw[:] = rng.choice([0.0, 0.3, 1.0, 3.0], n) * params.p_rated_kw * rng.uniform(0.5, 1.5, n)
    s.t_arrival_s[:] = t_s + rng.choice([-1e4, 0.0, 120.0], n)
    s.t_departure_s[:] = t_s + rng.choice([60.0, 300.0, 900.0, 3600.0, 36000.0], n) * rng.uniform(0.5, 2.0, n)
    before = s.copy()
    ref, got = _both(fleet, s, t_s, dt_s)
    assert s.equals(before)
    _assert_agree(ref, got, charger)
    assert (got.p_min_kw < 0.0).any() and (got.p_min_kw > 0.0).any()  # V2G and must-charge both exercised


@needs_numba
@pytest.mark.parametrize("n", [0, 1, 37])
def test_numba_envelope_shapes(n):
    fleet = _fleet("dc_fast", n, seed=5)
    s = fleet.initial_state()
    for k in range(40):
        t_s = k * 300.0
        fleet.advance(s, t_s, 300.0)
        ref, got = _both(fleet, s, t_s, 300.0)
        for name in ("p_min_kw", "p_max_kw", "p_default_kw"):
            assert getattr(got, name).shape == (n,)
        _assert_agree(ref, got, f"n={n} tick {k}")
        fleet.step(s, got.p_default_kw, t_s, 300.0, got)


@needs_numba
def test_numba_run_equals_numpy_run():
    """Whole runs on each path end in states that agree to round-off (the paths never drift apart)."""
    finals = []
    for use_numba in (False, True):
        fleet = _fleet("ac_pile", 300, seed=2)
        fleet.use_numba = use_numba
        s = fleet.initial_state()
        for k in range(96):
            fleet.step_default(s, k * 300.0, 300.0)
        finals.append(s)
    np.testing.assert_allclose(finals[1].e_kwh, finals[0].e_kwh, rtol=TOL, atol=TOL)
    assert finals[1].n_unmet == finals[0].n_unmet


@needs_numba
@pytest.mark.parametrize("charger", CHARGERS)
@pytest.mark.parametrize("dt_s", [60.0, 900.0])
def test_numba_advance_and_integrate_equal_numpy_under_random_setpoints(charger, dt_s):
    """``ev_advance`` / ``ev_integrate`` against ``_advance_numpy`` / ``_integrate_numpy``, tick by tick.

    Random setpoints inside the envelope (V2G discharge included); sessions too short for their need leave
    unmet even at full power, so every branch of the departure accounting runs. States must match after every tick (pointers and flags
    exactly, energies to round-off) and so must the scalar accounting.
    """
    rng = np.random.default_rng(11)
    fleet = _fleet(charger, 150, seed=5, t_end_s=10 * 3600.0)
    states = [fleet.initial_state(), fleet.initial_state()]
    works = [fleet.new_workspace(), fleet.new_workspace()]
    n_unmet_seen = 0
    for i in range(int(10 * 3600.0 / dt_s)):
        t_s = i * dt_s
        u = rng.random(fleet.n)
        for use_numba, s, ws in zip((False, True), states, works):
            fleet.use_numba = use_numba
            fleet.advance(s, t_s, dt_s)
            env = fleet.flexibility(s, t_s, dt_s, work=ws)
            fleet.step(s, env.p_min_kw + u * (env.p_max_kw - env.p_min_kw), t_s, dt_s, env)
        ref, got = states
        np.testing.assert_array_equal(got.k, ref.k)
        np.testing.assert_array_equal(got.plugged, ref.plugged)
        for name in ("e_kwh", "e_target_kwh", "cap_kwh", "p_accept_kw", "t_arrival_s", "t_departure_s", "t_next_s",
                     "p_kw"):
            np.testing.assert_allclose(getattr(got, name), getattr(ref, name), rtol=TOL, atol=TOL, err_msg=name)
        for name in ("n_departed", "n_unmet", "n_arrived"):
            assert getattr(got, name) == getattr(ref, name), name
        for name in ("e_grid_kwh", "e_to_vehicles_kwh", "e_loss_kwh", "e_unmet_kwh"):
            assert getattr(got, name) == pytest.approx(getattr(ref, name), rel=TOL, abs=1e-6), name
        n_unmet_seen = ref.n_unmet
    assert states[0].n_departed > 50 and states[0].n_arrived > 100  # the run exercised arrivals and departures
    if charger == "ac_pile":
        assert n_unmet_seen > 0  # both departure branches ran


_PROBE = """
import json, sys
import vpp.fleets
from vpp.fleets import kernels
print(json.dumps({"available": kernels.NUMBA_AVAILABLE, "numba_loaded": "numba" in sys.modules}))
"""


def _probe(env_extra: dict) -> dict:
    import os

    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=120,
                         env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_vpp_fleets_does_not_import_numba():
    """numba is imported (and the kernel compiled) on the first compiled call, never on import."""
    assert _probe({"VPP_NO_NUMBA": ""})["numba_loaded"] is False


def test_vpp_no_numba_forces_numpy():
    assert _probe({"VPP_NO_NUMBA": "1"})["available"] is False
