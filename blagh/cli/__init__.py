"""The ``blagh`` command: the top layer, the one place that wires the roles together.

Each role's commands live in a module of their own (server.py, server_data.py, status.py,
backup.py, transfer.py, workstation.py, keys.py) that imports the kernel (blagh), crypto and its
role; this module only assembles them into one group (docs/architecture.md).

Every failure ends in one line on stderr, ``blagh: error: <what is wrong; what to do>``, and a
non-zero exit status.  Operators read it in a terminal or a systemd journal, where a traceback
would bury the one sentence that matters.  Usage errors follow the same rule (status 2).
"""

from __future__ import annotations

from typing import Any

import click

from blagh.cli import backup, keys, server, server_data, status, transfer, workstation
from blagh.cli.common import one_line_errors


class _BlaghGroup(click.Group):
    """The top-level group: failures while parsing or running any subcommand become one line."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with one_line_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with one_line_errors():
            return super().invoke(ctx)


@click.group(
    cls=_BlaghGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="blagh", message="%(prog)s %(version)s")
def cli() -> None:
    """Blagh: anonymous reporting of online crime.

    Reporters send text, links, photos and videos to a Tor onion service, anonymously if they
    wish, and come back with a codename to read the answer.  The server facing the internet
    holds only ciphertext: every report is encrypted to the analysts' public keys.  Analysts
    read and answer reports on an isolated workstation that holds the private keys.

    \b
    Who runs what:
      operator, on the server:      blagh init, blagh config check, blagh serve,
                                    blagh serve-pickup, blagh status, blagh onion client,
                                    blagh pickup-token, blagh export-bundle,
                                    blagh import-replies, blagh purge
      transfer station:             blagh pickup, blagh deliver
      analyst, on the workstation:  blagh keygen, blagh key show, blagh workstation,
                                    blagh verify-evidence
    """


def main() -> None:
    """The console script (``blagh``)."""
    cli(prog_name="blagh")


for command in (
    server.init,
    server.serve,
    server.onion_group,
    server.config_group,
    keys.keygen,
    keys.key,
    status.status,
    server_data.serve_pickup,
    server_data.pickup_token,
    server_data.export_bundle,
    server_data.import_replies,
    server_data.purge,
    transfer.pickup,
    transfer.deliver,
    server_data.store,
    workstation.workstation,
    backup.backup,
    backup.restore,
    workstation.verify_evidence,
):
    cli.add_command(command)
workstation.workstation.add_command(backup.workstation_backup)
workstation.workstation.add_command(backup.workstation_restore)
