"""The services a node runs beside itself, chosen by its settings (:attr:`Node.services`):
each is started on the node's loop and stopped with it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tidings.server.node import Node, Service


def beside(node: Node) -> dict[str, Service]:
    """What runs beside ``node``, by its settings: the admin panel's reports, the
    PostgreSQL triggers' listener, the relay of durable publishes (tidings.outbox)."""
    from tidings.panel.service import PanelService

    found: dict[str, Service] = {"panel": PanelService(node)}
    if node.settings.pg_listen:
        from tidings.pgfeed import NotifyListener

        found["pg_listener"] = NotifyListener()
    if node.settings.outbox_relay:
        from tidings.outbox.relay import Relay

        found["outbox"] = Relay(node, node.settings.outbox_poll)
    return found
