"""Delivery measured against the no-call twin, and shared among overlapping calls.

Per tick and bus, the plant's change against its twin is
``change = p_plant - p_twin`` [kW, load convention], per device kind. A call is
credited only with the change behind its own target buses. Where several
active calls target the same bus, that bus's change is shared among them **in
proportion to each call's instructed change at that bus** (what the operators
were told to move there); where no instruction reached the bus yet, in
proportion to each call's requested power. The shares therefore sum exactly to
the change at every targeted bus. A call's delivered power is its share
signed by its direction: ``twin - plant`` for a reduce call, ``plant - twin``
for an increase call.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bus_shares", "attribute"]


def bus_shares(
    target_mask: np.ndarray, active_fraction: np.ndarray, requested_kw: np.ndarray, instructed_bus_kw: np.ndarray
) -> np.ndarray:
    """Share of each bus's change that each call is credited with, shape ``(n_call, n_bus)``.

    ``target_mask`` (n_call, n_bus) bool; ``active_fraction`` and
    ``requested_kw`` (n_call,); ``instructed_bus_kw`` (n_call, n_bus) signed.
    Columns sum to 1 on buses targeted by at least one active call, else 0.
    """
    eligible = target_mask & (active_fraction > 0.0)[:, None]
    w = np.where(eligible, np.abs(instructed_bus_kw), 0.0)
    uninstructed = w.sum(axis=0) <= 0.0
    w[:, uninstructed] = np.where(eligible[:, uninstructed], requested_kw[:, None], 0.0)
    total = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0.0, w / total, 0.0)


def attribute(
    change_kind_bus_kw: np.ndarray,
    shares: np.ndarray,
    sign: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Delivered power per call, total and by kind [kW].

    ``change_kind_bus_kw`` (n_kind, n_bus): plant minus twin; ``shares`` from
    :func:`bus_shares`; ``sign`` (n_call,): -1 reduce, +1 increase. Returns
    ``(delivered_kw (n_call,), delivered_by_kind_kw (n_call, n_kind))``.
    """
    by_kind = shares @ change_kind_bus_kw.T  # (n_call, n_kind), signed change credited to each call
    by_kind *= sign[:, None]
    return by_kind.sum(axis=1), by_kind
