"""Fixtures for the agent's unit tests."""

import types

import pytest

from agent.state import Identity
from tests.unit.agent.tls import make_ca


@pytest.fixture(scope="session")
def pki():
    """A throwaway CA, a loopback server pair and an agent identity it issued."""
    ca = make_ca()
    server_key, server_cert = ca.key_pair("localhost", server=True)
    agent_key, agent_cert = ca.key_pair("node1.example.com")
    return types.SimpleNamespace(ca=ca, server=(server_key, server_cert),
                                 identity=Identity(agent_key, agent_cert, ca.pem))
