"""Units and the sign convention of `vpp`, stated once.

Time
    ``t_s``: float seconds since the scenario start; ``dt_s``: the control tick
    length [s]. Clock-time profiles (traffic, weather, arrivals) take the hour of
    day ``hod_h`` in [0, 24), derived from ``t_s`` and the scenario's
    ``clock_start_h``.
Power
    kW inside fleets and dispatch (``p_kw``); MW at the grid boundary
    (``p_mw``, pandapower's unit).
Energy
    kWh (``e_kwh``). State of charge ``soc`` is a fraction in [0, 1].
Sign
    pandapower's load convention: consumption is positive, generation and
    battery discharge are negative. A DR call that *reduces* load asks for the
    plant's power to go *down* relative to its default (no-call) power.
"""

from __future__ import annotations

S_PER_H: float = 3600.0
"""Seconds per hour [s/h]."""

KW_PER_MW: float = 1000.0
"""Kilowatts per megawatt [kW/MW]."""

H_PER_DAY: float = 24.0
"""Hours per day [h/day]."""


def hour_of_day(t_s, clock_start_h: float):
    """Clock hour of day [h] in [0, 24) at scenario time ``t_s`` [s].

    Works on scalars and arrays alike.
    """
    return (clock_start_h + t_s / S_PER_H) % H_PER_DAY
