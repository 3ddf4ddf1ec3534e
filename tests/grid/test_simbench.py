"""SimBench codes through the optional extra (skipped where `vpp[simbench]` is not installed)."""

from __future__ import annotations

import pytest

from vpp.grid.networks import load_network, simbench_available


def test_missing_extra_is_a_clear_error():
    if simbench_available():
        pytest.skip("simbench is installed here")
    with pytest.raises(ImportError, match=r"pip install 'vpp\[simbench\]'"):
        load_network("1-MV-urban--0-sw", "simbench")


def test_simbench_run(small_dict):
    pytest.importorskip("simbench")
    from vpp.run import run_scenario
    from vpp.scenario import parse_scenario

    small_dict["grid"] = {"network": "1-MV-urban--0-sw", "source": "simbench"}
    small_dict["time"]["duration_s"] = 5400
    res = run_scenario(parse_scenario(small_dict))
    assert res.summary["grid"]["power_flows_not_converged"] == 0
    assert 0.9 < res.summary["grid"]["vm_min_pu"] < 1.0
