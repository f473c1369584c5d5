"""JSON response bodies, encoded by orjson (a 1,000-host list is 2 MB; the standard
library takes ~8× longer, on the event loop)."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(doc: Any) -> bytes:
    """Compact UTF-8 JSON. What orjson refuses (an integer beyond 64 bits, a key that is
    not a string) falls back to the standard library, so every document still encodes."""
    try:
        return orjson.dumps(doc)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(doc, separators=(",", ":")).encode()
