"""``manage.py tidings_relay``: publish the outbox's durable messages (tidings.outbox)."""

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tidings.outbox.relay import Relay
from tidings.server.node import get_node


class Command(BaseCommand):
    help = (
        "Publish the durable messages of the outbox, once and in order per topic; any "
        "number may run, beside the relays of the servers (TIDINGS['OUTBOX_RELAY'])."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once", action="store_true", help="Publish what is there now, then exit."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        node = get_node()
        if node.broker.url.startswith("memory:"):
            raise CommandError(
                "The memory broker reaches only its own process: the relay of the server "
                "(TIDINGS['OUTBOX_RELAY']) publishes the outbox; this command cannot."
            )
        relay = Relay(node, node.settings.outbox_poll)
        if options["once"]:
            n = relay.drain()
            self.stdout.write(f"Published {n} durable message(s).")
            return
        asyncio.run(self._run(relay))

    async def _run(self, relay: Relay) -> None:
        self.stdout.write("Relaying the outbox (Ctrl-C to stop).")
        relay.start()
        try:
            await asyncio.Event().wait()
        finally:
            await relay.stop()
