"""The public REST contract's client side: the HTTP client and the ``shepherd`` CLI."""

__version__ = "0.1.0"
