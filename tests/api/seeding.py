"""Rows the API tests create directly (on a database thread) to have one of each kind."""

from __future__ import annotations

from manager.db.engine import COMPLETE, Command, CommandJob, Job, Step
from manager.db.hosts import Alert, Host, ServerProfile
from manager.domain import alerts


def host_with_finished_work(name: str) -> dict[str, int]:
    """A working host ``name``.example with an active alert and a finished command (job
    and step): finished, so the engine leaves it alone. Returns their ids."""
    profile = ServerProfile.get(ServerProfile.name == "compute_node")
    host = Host.create(fqdn=f"{name}.example", nodename=name, server_profile=profile,
                       state="working", roles=",compute,")
    alerts.raise_alert("HostContactAlert", "WARNING", "lost", "host", host.id, host.fqdn)
    command = Command.create(message=f"Set up host {host.fqdn}", complete=True)
    job = Job.create(class_name="SetupWorkerJob", state=COMPLETE, object_type="host",
                     object_id=host.id)
    CommandJob.create(command=command, job=job)
    step = Step.create(job=job, class_name="ReportInventoryStep", step_index=0,
                       step_count=1, state="success")
    return {"host": host.id, "alert": Alert.get(Alert.alert_item_id == host.id).id,
            "command": command.id, "job": job.id, "step": step.id}
