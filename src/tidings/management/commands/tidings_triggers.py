from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from tidings import pgfeed


class Command(BaseCommand):
    help = "Install (or --remove) the PostgreSQL triggers of the model feeds with triggers = True."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--remove", action="store_true", help="drop the triggers")

    def handle(self, *args: Any, remove: bool = False, **options: Any) -> None:
        tables = pgfeed.install(remove=remove)
        if not tables:
            self.stdout.write("No model feed uses triggers on a PostgreSQL database.")
        for table in tables:
            self.stdout.write(f"{'Removed' if remove else 'Installed'} the trigger on {table}.")
