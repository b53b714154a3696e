"""``opentranscribe``: register a drop, run the asset graph per batch, print a summary.

One module per command family, each a thin front end over the Dagster-free services (and,
for ``process`` and ``speakers recluster``, over runs of the code location):

- :mod:`.process`: ``process`` (register a drop, its runs, the summary); :mod:`.runs` the
  runs and their outcome; :mod:`.report` what ``process`` prints at the end.
- :mod:`.show`, :mod:`.query` (``query ...``, ``duckdb``), :mod:`.export`: reading the tables.
- :mod:`.speakers`: ``speakers list|name|recluster|split|merge|calibrate|similar``.
- :mod:`.search`: ``search``, ``reindex``; :mod:`.doctor`: ``doctor``.
- :mod:`.common`: the exit codes, the warehouse and instance a command opens, shared options.

The exit status and output are those described in :mod:`.common` and each command's module.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .common import EXIT_USAGE, child_environment, lent_to_children
from .doctor import add_doctor_command
from .export import add_export_command
from .process import add_process_command
from .query import add_query_commands
from .search import add_search_commands
from .serve import add_serve_command
from .show import add_show_command
from .speakers import add_speakers_command
from .users import add_users_command

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opentranscribe", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_process_command(sub)
    add_show_command(sub)
    add_speakers_command(sub)
    add_search_commands(sub)  # `search`, `reindex`
    add_doctor_command(sub)
    add_query_commands(sub)  # `query transcript|words|talk-time|languages`, `duckdb`
    add_export_command(sub)
    add_users_command(sub)  # `users add|list|role|passwd|remove|audit`
    add_serve_command(sub)  # the review app
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from ..storage import StorageError

    # decided before anything imports pyannote (see common.child_environment)
    with lent_to_children(child_environment(args.command, args.verbose)):
        try:
            return args.func(args)
        except StorageError as exc:  # one line, never a traceback: the message names what and where
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
