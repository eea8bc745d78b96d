import asyncio
from typing import Any

from django.core.management.base import BaseCommand

from tidings.pgfeed import NotifyListener, trigger_feeds
from tidings.server.node import get_node


class Command(BaseCommand):
    help = "Publish the row changes PostgreSQL triggers report (run exactly one of these)."

    def handle(self, *args: Any, **options: Any) -> None:
        if not trigger_feeds():
            self.stderr.write("No model feed uses triggers on a PostgreSQL database.")
            return
        asyncio.run(self._run())

    async def _run(self) -> None:
        await get_node().start()
        self.stdout.write("Listening for row changes (Ctrl-C to stop).")
        await NotifyListener().run()
