"""Operability: the audit log, Prometheus metrics, health checks and secret redaction — fed
by every API family and the engine, knowing none of their handlers."""
