"""``blagh onion balance``: the frontend key and Onionbalance's configuration for several
source-interface machines behind one onion address (onion/balance.py, docs/scale.md).

It runs on the frontend machine (or wherever its folder is made before being copied there) and
needs no data folder: the frontend key is not the key of any `blagh serve`.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("balance")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The frontend's folder (made mode 0700): frontend.key, config.yaml and ob_config. "
    "An existing frontend.key in it is kept, and with it the address.",
)
@click.option(
    "--backend",
    "backends",
    multiple=True,
    metavar="ADDRESS.onion",
    help="A backend's onion address (each source-interface machine's own service); repeat for "
    "each, at most 8.  Run again with the new list to add or remove one.",
)
def balance(out: Path, backends: tuple[str, ...]) -> None:
    """Make the Onionbalance frontend key (once) and its config for the given backends.

    Reporters use the frontend's address; Onionbalance publishes the backends' introduction
    points under it, so a backend that goes down is left out.  Each backend's tor needs the
    printed lines and the ob_config file in its HiddenServiceDir (docs/scale.md).
    """
    from onion.balance import backend_torrc, write_balance

    made = write_balance(out, list(backends))
    verb = "Made" if made.created else "Kept"
    click.echo(f"{verb} the frontend key {out / 'frontend.key'} (mode 0600, secret: back it up).")
    click.echo(f"Frontend address: http://{made.address}.onion/")
    if made.config_file is None:
        click.echo("No backend given: no config.yaml yet. Run again with --backend for each.")
    else:
        click.echo(f"Onionbalance config for {len(made.backends)} backend(s): {made.config_file}")
        click.echo(f"Run it next to a tor with a control port: onionbalance -c {made.config_file}")
    click.echo()
    click.echo(f"On each backend: copy {made.ob_config_file} into its tor's HiddenServiceDir,")
    click.echo("run `blagh serve --tor off`, and give its tor these lines (the port: its")
    click.echo("[source_interface] listen_port), then reload tor:")
    click.echo()
    click.echo(backend_torrc("/var/lib/tor/blagh-backend", 8080), nl=False)
