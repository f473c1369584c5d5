"""Inventory: the nodes Shepherd knows (roles, groups, MACs) and how their power is switched
(power control types, devices and outlets)."""
