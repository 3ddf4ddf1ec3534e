"""A one-way communication link: a SimPy store reached after a latency, maybe not at all."""

from __future__ import annotations

import numpy as np
import simpy

__all__ = ["Link", "Mailbox"]


class Mailbox:
    """An agent's inbox: a SimPy store of ``(t_arrival_s, message)`` that the agent empties when it acts.

    ``on_put(t_s, msg)``, if set, is called at the moment a message arrives, so
    an agent can react at the message's true time (the platform answers a
    call notice that way).
    """

    def __init__(self, env: simpy.Environment):
        self.env = env
        self.store = simpy.Store(env)
        self.on_put = None

    def put(self, msg) -> None:
        """Deliver ``msg`` now."""
        self.store.put((self.env.now, msg))
        if self.on_put is not None:
            self.on_put(self.env.now, msg)

    def drain_timed(self) -> list[tuple[float, object]]:
        """Every ``(t_arrival_s, message)`` delivered so far, oldest first; the box is left empty."""
        items = list(self.store.items)
        self.store.items.clear()
        return items

    def drain(self) -> list:
        """Every message delivered so far, oldest first; the box is left empty."""
        return [msg for _, msg in self.drain_timed()]


class Link:
    """Delivers messages into a mailbox ``latency_s`` [s] after they are sent.

    A message is lost with probability ``loss_probability``, drawn from the run's
    generator so that a seed fixes which ones. With zero latency a message is in
    the mailbox the moment it is sent.
    """

    def __init__(
        self,
        env: simpy.Environment,
        mailbox: Mailbox,
        latency_s: float = 0.0,
        loss_probability: float = 0.0,
        rng: np.random.Generator | None = None,
    ):
        self.env = env
        self.mailbox = mailbox
        self.latency_s = float(latency_s)
        self.loss_probability = float(loss_probability)
        self.rng = rng
        self.n_sent = 0
        self.n_lost = 0

    def send(self, msg) -> None:
        """Send ``msg``; it arrives after the latency unless lost."""
        self.n_sent += 1
        if self.loss_probability > 0.0 and self.rng is not None and self.rng.random() < self.loss_probability:
            self.n_lost += 1
            return
        if self.latency_s == 0.0:
            self.mailbox.put(msg)
            return
        delivery = self.env.timeout(self.latency_s, value=msg)
        delivery.callbacks.append(lambda ev: self.mailbox.put(ev.value))
