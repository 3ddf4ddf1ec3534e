"""The device-kind registry: one entry per kind, the only list of kinds in the code.

A kind is registered once, as a :class:`KindSpec` its module defines: the
fleet class, its scenario configuration model, the builder that turns a
configuration into a fleet, and its named parameter sets. The scenario schema,
the plant builder, the recorder's per-kind columns and ``vpp list`` all read
this registry; adding a kind is one module, its parameter set and one line
here.
"""

from __future__ import annotations

from vpp.fleets import basestation, building, ev
from vpp.fleets.base import KindSpec

__all__ = ["KindSpec", "KINDS", "get_kind"]


KINDS: dict[str, KindSpec] = {spec.name: spec for spec in (ev.SPEC, basestation.SPEC, building.SPEC)}


def get_kind(name: str) -> KindSpec:
    """The kind registered as ``name``; unknown names list the valid ones."""
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"unknown device kind {name!r}; valid: {', '.join(sorted(KINDS))}") from None
