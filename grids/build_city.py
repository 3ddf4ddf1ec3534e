"""Build ``grids/city.json``: a city-scale grid for a VPP of about 400,000 devices (~1 GW).

Design: an HV grid down to its 10 kV substation buses, with each substation's
distribution network lumped on that bus. It is shaped after a large Chinese
city such as Shenzhen (peak load about 20 GW, a 500 kV ring fed from the
provincial grid and local plants, 220 kV and 110 kV substations):

- **500 kV**: the provincial grid is the one external grid (slack) on its
  own bus, tied by double circuits of 80 km to four of the eight nodes of a
  500 kV ring (segments of 40 km, double circuits). The other four nodes
  each host a local plant of 1,500 MW (a PV bus), standing for the city's
  nuclear and gas units. Each ring node is a 500/220 kV station.
- **220 kV**: each 500 kV station feeds five 220 kV substations by radial
  overhead lines (8-25 km); 40 in all.
- **110 kV**: each 220 kV substation feeds five 110 kV substations by radial
  cables (3-10 km); 200 in all. Each has a 10 kV *substation bus*
  (``S001`` ... ``S200``) carrying its own load: 50-150 MW at power factor
  0.98 (net of its capacitor banks), 20 GW in all. These 200 buses are the
  only buses with load, so VPP devices placed with ``buses: load_buses`` land
  on them in proportion to their load.

Sizing follows one planning rule at every level: the smallest number of
units (transformers) or circuits (lines, at least two) that carries the
base-case peak flow at no more than 60 % (transformers) or 50 % (lines) of
the rating, leaving room for one unit out. Ratings and impedances, per unit
or circuit (typical catalogue values; the cable and the 220 kV conductor are
pandapower's standard types):

====================  =====================================================================
500 kV line           4-bundle of ``679-AL1/86-ST1A``: r 0.0105 ohm/km, x 0.265 ohm/km,
                      c 13.8 nF/km, 4 x 1.15 kA (4.0 GVA)
220 kV line           pandapower's ``679-AL1/86-ST1A 220.0`` (1.15 kA, 438 MVA)
110 kV cable          pandapower's ``N2XS(FL)2Y 1x300 RM/35 64/110 kV`` (0.588 kA, 112 MVA)
500/220 kV unit       1,000 MVA, 525/230 kV, uk 12 %, ukr 0.2 %, 250 kW, i0 0.05 %
220/110 kV unit       240 MVA, 220/115 kV, uk 12 %, ukr 0.25 %, 120 kW, i0 0.06 %
110/10 kV unit        63 MVA, 110/10 kV, uk 10.5 %, ukr 0.32 %, 22 kW, i0 0.04 %
====================  =====================================================================

No transformer has a tap changer (fast solvers and pandapower treat taps
differently), so nothing regulates the voltage as the load changes. The
provincial grid and the plants hold 1.01 pu, which keeps every bus within
0.95-1.05 pu from 45 % of the peak load (the night of ``residential_mv``)
up to the peak plus 1 GW of VPP load; the 10 kV buses swing by about 7 %
between those two. Parallel units and circuits are one element with
``parallel = n``.

Nothing is random: loads and lengths follow the golden-ratio sequence
``frac(i * 0.618...)``, so the build is the same on every machine. It takes
about a second::

    python grids/build_city.py            # writes grids/city.json
    python grids/build_city.py --check    # and prints the power flow at +1 GW
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandapower as pp

OUT = Path(__file__).with_name("city.json")

N_RING = 8  # 500 kV stations on the ring
N_220_PER_500 = 5  # 220 kV substations per 500 kV station
N_110_PER_220 = 5  # 110 kV substations per 220 kV substation
P_MEAN_MW = 100.0  # mean load of a 110 kV substation [MW]
POWER_FACTOR = 0.98  # of the substations' load net of their capacitor banks, lagging [-]
P_PLANT_MW = 1500.0  # each local plant [MW]
VM_SOURCE_PU = 1.01  # provincial grid and local plants [pu]
TRAFO_RATIO_MAX = 0.6  # planning rule: base-case flow over rating, transformers [-]
LINE_RATIO_MAX = 0.5  # planning rule: base-case flow over rating, lines [-]

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0

# name: (sn_mva, vn_hv_kv, vn_lv_kv, vk_percent, vkr_percent, pfe_kw, i0_percent)
TRAFO_UNITS = {
    "500/220": (1000.0, 525.0, 230.0, 12.0, 0.20, 250.0, 0.05),
    "220/110": (240.0, 220.0, 115.0, 12.0, 0.25, 120.0, 0.06),
    "110/10": (63.0, 110.0, 10.0, 10.5, 0.32, 22.0, 0.04),
}
LINE_500KV = dict(r_ohm_per_km=0.042 / 4, x_ohm_per_km=0.265, c_nf_per_km=13.8, max_i_ka=4 * 1.15)
LINE_220KV = "679-AL1/86-ST1A 220.0"
CABLE_110KV = "N2XS(FL)2Y 1x300 RM/35 64/110 kV"


def _frac(i: int) -> float:
    """The golden-ratio sequence in [0, 1): evenly spread, deterministic."""
    return (i * _GOLDEN) % 1.0


def _units(s_mva: float, unit_mva: float, ratio: float) -> int:
    return max(1, math.ceil(s_mva / (ratio * unit_mva)))


def _trafo(net, hv_bus: int, lv_bus: int, kind: str, s_mva: float, name: str) -> None:
    sn, vn_hv, vn_lv, vk, vkr, pfe, i0 = TRAFO_UNITS[kind]
    n = _units(s_mva, sn, TRAFO_RATIO_MAX)
    pp.create_transformer_from_parameters(
        net, hv_bus=hv_bus, lv_bus=lv_bus, sn_mva=sn, vn_hv_kv=vn_hv, vn_lv_kv=vn_lv, vk_percent=vk,
        vkr_percent=vkr, pfe_kw=pfe, i0_percent=i0, parallel=n, name=name,
    )


def _circuits(s_mva: float, vn_kv: float, max_i_ka: float) -> int:
    return max(2, math.ceil(s_mva / (LINE_RATIO_MAX * math.sqrt(3.0) * vn_kv * max_i_ka)))


def build() -> "pp.pandapowerNet":
    """The city grid (see the module docstring)."""
    net = pp.create_empty_network(name="city: 500/220/110 kV grid with 200 lumped 10 kV substations", f_hz=50.0)
    tan_phi = math.tan(math.acos(POWER_FACTOR))
    i_220 = pp.available_std_types(net, "line").at[LINE_220KV, "max_i_ka"]
    i_110 = pp.available_std_types(net, "line").at[CABLE_110KV, "max_i_ka"]

    # Loads first: every level is sized from what it feeds.
    n_sub = N_RING * N_220_PER_500 * N_110_PER_220
    p_sub = np.array([P_MEAN_MW * (0.5 + _frac(i + 1)) for i in range(n_sub)])
    s_sub = p_sub * math.hypot(1.0, tan_phi)

    source = pp.create_bus(net, vn_kv=500.0, name="grid-500", zone="500kV")
    pp.create_ext_grid(net, source, vm_pu=VM_SOURCE_PU, name="provincial grid")
    ring = [pp.create_bus(net, vn_kv=500.0, name=f"R{k + 1}-500", zone="500kV") for k in range(N_RING)]
    for k in range(N_RING):
        pp.create_line_from_parameters(net, ring[k], ring[(k + 1) % N_RING], length_km=40.0, parallel=2,
                                       name=f"ring {k + 1}-{(k + 1) % N_RING + 1}", **LINE_500KV)
        if k % 2 == 0:
            pp.create_line_from_parameters(net, source, ring[k], length_km=80.0, parallel=2,
                                           name=f"infeed R{k + 1}", **LINE_500KV)
        else:
            pp.create_gen(net, ring[k], p_mw=P_PLANT_MW, vm_pu=VM_SOURCE_PU, name=f"plant R{k + 1}")

    i = 0
    for k in range(N_RING):
        b220 = pp.create_bus(net, vn_kv=220.0, name=f"R{k + 1}-220", zone="500kV")
        block = slice(k * N_220_PER_500 * N_110_PER_220, (k + 1) * N_220_PER_500 * N_110_PER_220)
        _trafo(net, ring[k], b220, "500/220", s_sub[block].sum(), f"R{k + 1} 500/220")
        for j in range(N_220_PER_500):
            m = k * N_220_PER_500 + j  # 220 kV substation number, from 0
            name = f"E{m + 1:02d}"
            e220 = pp.create_bus(net, vn_kv=220.0, name=f"{name}-220", zone="220kV")
            e110 = pp.create_bus(net, vn_kv=110.0, name=f"{name}-110", zone="220kV")
            s_e = s_sub[m * N_110_PER_220:(m + 1) * N_110_PER_220].sum()
            pp.create_line(net, b220, e220, length_km=8.0 + 17.0 * _frac(1000 + m), std_type=LINE_220KV,
                           parallel=_circuits(s_e, 220.0, i_220), name=f"R{k + 1}-{name}")
            _trafo(net, e220, e110, "220/110", s_e, f"{name} 220/110")
            for _ in range(N_110_PER_220):
                name_s = f"S{i + 1:03d}"
                s110 = pp.create_bus(net, vn_kv=110.0, name=f"{name_s}-110", zone="110kV")
                s10 = pp.create_bus(net, vn_kv=10.0, name=name_s, zone="substation")
                pp.create_line(net, e110, s110, length_km=3.0 + 7.0 * _frac(2000 + i), std_type=CABLE_110KV,
                               parallel=_circuits(s_sub[i], 110.0, i_110), name=f"{name}-{name_s}")
                _trafo(net, s110, s10, "110/10", s_sub[i], f"{name_s} 110/10")
                pp.create_load(net, s10, p_mw=float(p_sub[i]), q_mvar=float(p_sub[i] * tan_phi), name=name_s)
                i += 1
    return net


def substation_buses(net) -> np.ndarray:
    """Bus labels of the 10 kV substation buses."""
    return net.bus.index[net.bus.zone == "substation"].to_numpy()


def add_vpp_load(net, extra_mw: float) -> None:
    """Add ``extra_mw`` of load at unity power factor over the substation buses, in proportion to their load."""
    subs = substation_buses(net)
    p_sub = net.load.groupby("bus").p_mw.sum().reindex(subs, fill_value=0.0).to_numpy()
    pp.create_loads(net, buses=subs, p_mw=extra_mw * p_sub / p_sub.sum(), q_mvar=0.0, name="vpp")


def check(net, extra_mw: float = 1000.0) -> dict:
    """Power flow with ``extra_mw`` more load spread over the substations in proportion to their load.

    Returns the extremes; ``net`` itself is not changed.
    """
    net = pp.from_json_string(pp.to_json(net))
    add_vpp_load(net, extra_mw)
    pp.runpp(net, numba=False)
    subs = substation_buses(net)
    is_sub = net.trafo.lv_bus.isin(subs)
    return {
        "converged": bool(net.converged),
        "n_bus": len(net.bus),
        "n_line": len(net.line),
        "n_trafo": len(net.trafo),
        "n_substations": len(subs),
        "p_load_mw": float(net.load.p_mw.sum()),
        "p_ext_grid_mw": float(net.res_ext_grid.p_mw.sum()),
        "p_gen_mw": float(net.res_gen.p_mw.sum()),
        "p_loss_mw": float(net.res_line.pl_mw.sum() + net.res_trafo.pl_mw.sum()),
        "vm_min_pu": float(net.res_bus.vm_pu.min()),
        "vm_max_pu": float(net.res_bus.vm_pu.max()),
        "line_loading_max_percent": float(net.res_line.loading_percent.max()),
        "trafo_loading_max_percent": float(net.res_trafo.loading_percent.max()),
        "substation_loading_median_percent": float(net.res_trafo.loading_percent[is_sub].median()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true", help="print the power flow with 1 GW extra load")
    args = ap.parse_args(argv)
    net = build()
    pp.to_json(net, str(args.out))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {len(net.bus)} buses, "
          f"{len(substation_buses(net))} substation buses")
    if args.check:
        for extra_mw in (0.0, 1000.0):
            print(f"-- power flow with {extra_mw:g} MW extra load")
            for k, v in check(net, extra_mw).items():
                print(f"{k:<36} {v:.4f}" if isinstance(v, float) else f"{k:<36} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
