"""Generated gRPC modules for the manager–agent protocol (built from agent.proto by setup.py)."""
