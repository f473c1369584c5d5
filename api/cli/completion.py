"""``shepherd completion bash|zsh|fish``: the shell script that completes ``shepherd``.

The script calls ``shepherd`` back with ``_SHEPHERD_COMPLETE`` set (click's protocol), so
completions follow the installed version's commands, options and context names.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL.

    \b
    Example (bash: the first line for this shell, the second for new ones):
      $ eval "$(shepherd completion bash)"
      $ shepherd completion bash > ~/.local/share/bash-completion/completions/shepherd
    Example (zsh; the directory must be on $fpath before compinit):
      $ shepherd completion zsh > ~/.zfunc/_shepherd
    """
    root = ctx.find_root()
    script = get_completion_class(shell)(root.command, {}, root.info_name or "shepherd",
                                         "_SHEPHERD_COMPLETE")
    click.echo(script.source())
