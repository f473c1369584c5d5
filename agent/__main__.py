"""``shepherd-agent``: the agent's command line (registration and the run loop come with the
agents capability)."""

from __future__ import annotations

import click

from agent import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shepherd-agent")
def main() -> None:
    """The Shepherd agent, one per managed machine."""


if __name__ == "__main__":
    main()
