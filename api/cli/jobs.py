"""``shepherd job cancel`` over ``/api/job/``.

Jobs are the units of work of commands (``shepherd command show ID`` lists them with their
steps). Cancelling one stops its running step's action on the agent; jobs waiting for it
do not run. Some jobs cannot be cancelled once planned (Force Remove); the manager says so.
"""

from __future__ import annotations

import click

from api.cli.credentials import pass_client
from api.client import Client

LIST = "/api/job/"


@click.group()
def job() -> None:
    """Jobs: the units of work of commands.

    \b
    Example:
      $ shepherd command show 12
      $ shepherd job cancel 31
    """


@job.command("cancel")
@click.argument("job_ids", metavar="ID...", nargs=-1, required=True, type=int)
@pass_client
def job_cancel(client: Client, job_ids: tuple[int, ...]) -> None:
    """Cancel jobs that have not finished.

    \b
    Example:
      $ shepherd job cancel 31 32
    """
    for job_id in job_ids:
        client.put(f"{LIST}{job_id}/", {"state": "cancelled"})
        click.echo(f"Cancelled job {job_id}.")
