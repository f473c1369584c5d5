"""shepherd-manager: REST APIs, the agent server and the workers, on one event loop."""

__version__ = "0.1.0"
