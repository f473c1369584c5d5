"""The gRPC server agents talk to, on the manager's event loop.

Two ports, because a TLS port either requires client certificates or never asks for them:
``agent_port`` requires one (Connect: the certificate is the agent's identity) and
``registration_port`` only authenticates the server (Register: the agent has no certificate
yet). Agents learn both from ``GET /agent/``.
"""

from __future__ import annotations

import grpc

from manager.agents.servicer import AgentServicer
from manager.pki import CertificateAuthority
from protos import agent_pb2_grpc

# grpc-scale.md: BDP probing cost a third of the CPU at 10,000 streams; dead peers are found
# by server keepalive; agents send no keepalive pings of their own.
SERVER_OPTIONS = [
    ("grpc.http2.bdp_probe", 0),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 30_000),
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ("grpc.max_send_message_length", 8 * 1024 * 1024),
]


def build_server(ca: CertificateAuthority, servicer: AgentServicer, address: str,
                 agent_port: int, registration_port: int) -> tuple[grpc.aio.Server, int, int]:
    """Create (not start) the server; returns it and the two bound ports."""
    with open(ca.server_key_path, "rb") as f:
        key = f.read()
    with open(ca.server_cert_path, "rb") as f:
        chain = f.read()
    server = grpc.aio.server(options=SERVER_OPTIONS)
    agent_pb2_grpc.add_AgentServiceServicer_to_server(servicer, server)
    mutual = grpc.ssl_server_credentials([(key, chain)], root_certificates=ca.ca_pem,
                                         require_client_auth=True)
    server_only = grpc.ssl_server_credentials([(key, chain)])
    bound_agent = server.add_secure_port(f"{address}:{agent_port}", mutual)
    bound_registration = server.add_secure_port(f"{address}:{registration_port}", server_only)
    if not bound_agent or not bound_registration:
        raise OSError(f"cannot listen on {address}:{agent_port} and {address}:{registration_port}")
    return server, bound_agent, bound_registration
