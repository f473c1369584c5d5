"""The API tests' manager: one per database, for this package only."""

from tests.manager_process import package_manager

manager = package_manager()
