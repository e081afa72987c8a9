"""Alerts on the live stream of readings, and the tickets (work orders) they open."""

from alerts.engine import AlertEngine, AlertTransition, fingerprint
from alerts.silences import Matchers, Silence, SilenceStore, silenced
from alerts.tickets import (
    AlertRecord,
    AlertState,
    TicketDetail,
    TicketPage,
    TicketRecord,
    TicketStatus,
    TicketStore,
    TicketTransitionError,
)

__all__ = [
    "AlertEngine",
    "AlertRecord",
    "AlertState",
    "AlertTransition",
    "Matchers",
    "Silence",
    "SilenceStore",
    "TicketDetail",
    "TicketPage",
    "TicketRecord",
    "TicketStatus",
    "TicketStore",
    "TicketTransitionError",
    "fingerprint",
    "silenced",
]
