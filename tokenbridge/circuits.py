"""What a circuit breaker reports: its states and the Transition record of one change.

upstream/breaker.py makes transitions; the runtime logs them, the store keeps the last of each
circuit (`channels check` reads it), and metrics shows the state. They share these words from here,
the lowest room, so that the store and the metrics need nothing of upstream/.
"""

from __future__ import annotations

from dataclasses import dataclass

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True, slots=True)
class Transition:
    channel: str
    model: str
    state: str
    reason: str
    retry_in_s: float  # for OPEN: the back-off before the next probe
