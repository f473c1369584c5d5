"""Stored expected output (``tests/cli/expected/``) for the CLI's tables.

``SHEPHERD_UPDATE_EXPECTED=1 pytest tests/cli`` rewrites the files from the current output;
review the diff before keeping it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

HERE = Path(__file__).parent


def sample(name: str) -> list[dict]:
    """API objects captured from a real manager (``tests/cli/samples/``)."""
    return json.loads((HERE / "samples" / name).read_text())


def check_expected(name: str, text: str) -> None:
    path = HERE / "expected" / name
    text = text if text.endswith("\n") else text + "\n"
    if os.environ.get("SHEPHERD_UPDATE_EXPECTED"):
        path.write_text(text)
    assert text == path.read_text(), f"output differs from {path}"
