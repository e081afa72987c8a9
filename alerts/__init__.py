"""Alerts on the live stream of readings, and the tickets (work orders) they open."""

from alerts.engine import AlertEngine, AlertTransition, fingerprint
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
    "TicketDetail",
    "TicketPage",
    "TicketRecord",
    "TicketStatus",
    "TicketStore",
    "TicketTransitionError",
    "fingerprint",
]
