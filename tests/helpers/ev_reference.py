"""A plain per-session reference for uncontrolled EV charging, shared by the fleet tests.

No numpy and no vpp: classical RK4 on ``dE/dt = eta * min(p_rated, p_accept * f(E / cap))``
with the taper ``f`` evaluated by a loop over its knots. ``tests/fleets/test_ev.py`` checks the
loop itself against a closed form and for convergence before any fleet is compared with it.
"""

from __future__ import annotations

S_PER_H = 3600.0


def taper_fraction_ref(soc: float, knot_soc, knot_frac) -> float:
    """Acceptance fraction [-]: straight lines between the knots, SoC clipped to [0, 1]."""
    s = min(max(soc, 0.0), 1.0)
    for i in range(len(knot_soc) - 1):
        if s <= knot_soc[i + 1]:
            w = (s - knot_soc[i]) / (knot_soc[i + 1] - knot_soc[i])
            return knot_frac[i] + w * (knot_frac[i + 1] - knot_frac[i])
    return knot_frac[-1]


def uncontrolled_reference_kwh(e0_kwh: float, e_need_kwh: float, cap_kwh: float, p_rated_kw: float,
                                p_accept_kw: float, eta: float, knots, stay_s: float, h_s: float = 1.0) -> float:
    """Energy [kWh, battery side] delivered to one session charging at full power from plug-in to departure.

    Classical RK4 on ``dE/dt = eta * min(p_rated, p_accept * f(E / cap))``
    [kWh/h] with steps of ``h_s`` seconds, stopped at the target
    ``e0 + need`` (the ODE is autonomous and E only rises, so charging until
    the target and then stopping delivers ``min(E(stay), target) - e0``) and
    at a full battery.
    """
    knot_soc, knot_frac = knots
    target_kwh = min(e0_kwh + e_need_kwh, cap_kwh)

    def rate_kw(e_kwh):
        return eta * min(p_rated_kw, p_accept_kw * taper_fraction_ref(e_kwh / cap_kwh, knot_soc, knot_frac))

    e_kwh, t_s = e0_kwh, 0.0
    while t_s < stay_s and e_kwh < target_kwh:
        h_h = min(h_s, stay_s - t_s) / S_PER_H
        k1 = rate_kw(e_kwh)
        k2 = rate_kw(e_kwh + 0.5 * h_h * k1)
        k3 = rate_kw(e_kwh + 0.5 * h_h * k2)
        k4 = rate_kw(e_kwh + h_h * k3)
        e_kwh += h_h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        t_s += h_s
    return min(e_kwh, target_kwh) - e0_kwh
