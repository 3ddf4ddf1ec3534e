"""The SimPy layer: agents, links, and the control tick (one process per agent, never per device)."""

from __future__ import annotations

from vpp.sim.agents import GridOperatorAgent, OperatorAgent, PlatformAgent
from vpp.sim.engine import Engine, TickOutcome
from vpp.sim.link import Link, Mailbox

__all__ = ["Engine", "TickOutcome", "GridOperatorAgent", "PlatformAgent", "OperatorAgent", "Link", "Mailbox"]
