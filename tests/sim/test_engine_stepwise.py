"""Engine.start/advance (tick by tick) and Engine.inject (calls from outside) against Engine.run.

The reference is the ordinary in-memory run (run_scenario), where the grid
operator announces the scenario's calls itself at their notification times.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from vpp.build import build_plant
from vpp.run import prepare_run, run_scenario
from vpp.scenario import load_scenario

SCENARIO = Path(__file__).parents[1] / "protocols" / "adr-small.yaml"  # three calls: plain, extended, cancelled


def _stepwise(sc, calls, at_s):
    """Run tick by tick; inject each version of each call at the first tick boundary >= ``at_s(announce_s)``.

    What is injected is the call as known then: its first version with the later ones seen so far.
    """
    s = prepare_run(sc, local_calls=False)
    e = s.engine
    e.start(s.on_tick)
    done: dict[str, int] = {}
    while True:
        for c in calls:
            n = sum(1 for t, _ in c.versions if at_s(t) <= e.now_s)
            if n > done.get(c.call_id, 0):
                e.inject(replace(c, updates=c.updates[:n - 1]) if n > 1 else c.versions[0][1])
                done[c.call_id] = n
        if not e.advance():
            break
    return s.finish()


def _delivered(results) -> dict[str, float]:
    return {c["id"]: c["delivered_kwh"] for c in results.summary["calls"]}


@pytest.fixture(scope="module")
def scheduled():
    """The scenario and its ordinary run (read-only)."""
    sc = load_scenario(SCENARIO)
    return sc, run_scenario(sc)


def test_stepwise_run_with_injected_calls_matches_the_scheduled_run(scheduled):
    sc, ref = scheduled
    calls = build_plant(sc).calls
    # announced exactly when the scenario says (all on tick boundaries): the same run, to the last digit
    got = _stepwise(sc, calls, lambda t: t)
    assert _delivered(got) == _delivered(ref)
    assert got.timeseries["p_vpp_kw"].tolist() == ref.timeseries["p_vpp_kw"].tolist()
    assert got.timeseries["p_twin_kw"].tolist() == ref.timeseries["p_twin_kw"].tolist()
    assert got.completed and got.meta["n_ticks_done"] == sc.time.n_ticks


def test_a_call_injected_late_acts_from_its_injection_only(scheduled):
    sc, ref = scheduled
    shave = build_plant(sc).calls[0]
    start_s = shave.start_s
    # announced 30 min after its start: the platform can act only from then on
    got = _stepwise(sc, [shave], lambda t: start_s + 1800.0)
    assert 0.0 < _delivered(got)["shave"] < _delivered(ref)["shave"]
    ts = got.timeseries
    before = ts[(ts["t_s"] >= start_s) & (ts["t_s"] < start_s + 1800.0)]
    assert (before["p_vpp_kw"] == before["p_twin_kw"]).all()  # nothing moved before the call was known
    assert got.meta["n_ticks_done"] == sc.time.n_ticks
