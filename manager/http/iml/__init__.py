"""The IML family (``/api/``): a declarative resource layer and the resources built on it."""
