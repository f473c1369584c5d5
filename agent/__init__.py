"""shepherd-agent: runs on every managed machine and carries out the manager's actions."""

__version__ = "0.1.0"
