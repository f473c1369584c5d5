"""Entry point of the ``shepherd`` command."""

from __future__ import annotations

import click

from api import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shepherd")
def main() -> None:
    """Shepherd's admin command line."""


if __name__ == "__main__":
    main()
