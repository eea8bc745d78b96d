"""``manage.py outbox_test``: the publishing processes of tests/test_outbox.py.

``--topic t --n 3`` publishes ``{"i": 0..2}`` to ``t`` with ``durable=True`` in one
transaction (``--plain``: without, to show what is lost; ``--autocommit``: outside any
transaction; ``--rollback``: rolled back; ``--entries``: saves of the durable feed's
model instead). ``--kill`` SIGKILLs this process right after COMMIT, in an on_commit
hook registered before tidings' own. ``--relay-and-die`` runs one relay pass and
SIGKILLs itself right after its first publish, before the pass deletes the row;
``--relay-and-freeze <pid>`` SIGSTOPs that process (a redis-server) there instead, and
prints what the pass raised.
"""

import os
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DEFAULT_DB_ALIAS, transaction

import tidings
from tests.testapp.models import Entry


def die(*args: Any) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class Rollback(Exception):
    pass


class Command(BaseCommand):
    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--topic", default="test.outbox")
        parser.add_argument("--n", type=int, default=1)
        parser.add_argument("--plain", action="store_true")
        parser.add_argument("--autocommit", action="store_true")
        parser.add_argument("--rollback", action="store_true")
        parser.add_argument("--entries", action="store_true")
        parser.add_argument("--kill", action="store_true")
        parser.add_argument("--relay-and-die", action="store_true")
        parser.add_argument("--relay-and-freeze", type=int)

    def handle(self, *args: Any, **o: Any) -> None:
        if o["relay_and_die"] or o["relay_and_freeze"]:
            from tidings.outbox.relay import relay_pass
            from tidings.server.node import get_node

            node = get_node()
            pid = o["relay_and_freeze"]
            if pid:  # right after the broker took the first row
                node.published.append(lambda *a: os.kill(pid, signal.SIGSTOP))
            else:
                node.published.append(die)
            try:
                relay_pass(node, DEFAULT_DB_ALIAS)
            except Exception as e:
                self.stdout.write(f"{type(e).__name__}: {e}")
                return
            raise AssertionError("the relay pass did not fail")

        def write() -> None:
            for i in range(o["n"]):
                if o["entries"]:
                    Entry.objects.create(text=f"entry {i}")
                else:
                    tidings.publish(o["topic"], {"i": i}, durable=not o["plain"])

        if o["autocommit"]:
            write()
            return
        try:
            with transaction.atomic():
                if o["kill"]:
                    transaction.on_commit(die)  # before any of tidings' hooks
                write()
                if o["rollback"]:
                    raise Rollback
        except Rollback:
            pass
