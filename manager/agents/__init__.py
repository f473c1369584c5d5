"""The agent side of the manager: gRPC servicer, the registry of connected agents, presence."""
