"""Unit tests bind the models to their own database: no manager may be running then."""

import pytest

from tests.manager_process import RunningManager


@pytest.fixture(autouse=True)
def no_running_manager() -> None:
    """A manager left running (by another package's fixture) would work on this test's
    database through the models' process-wide proxy: its engine claims the test's jobs."""
    if RunningManager.live:
        pytest.fail(f"{len(RunningManager.live)} manager(s) still running from earlier tests")
