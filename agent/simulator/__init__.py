"""Many simulated agents in one process: the real protocol and the real agent code
(``AgentConnection``, ``ActionRunner``, the action registry), each agent with its own key and
certificate, in front of a simulated hardware model instead of real disks and tools.
Later capabilities extend the model (disks, Lustre targets, BMCs, boots)."""
