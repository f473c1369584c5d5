"""The engine: actions dispatched to agents (and, with the engine capability, commands →
jobs → steps with locks). Free of HTTP and gRPC: it talks to agents through a Transport."""
