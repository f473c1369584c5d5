"""The README's configuration table is the one generated from the declared settings."""

import pathlib

from manager.config import markdown_table

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def test_settings_table_matches_the_declaration():
    text = README.read_text()
    start = text.index("| Variable | Flag |")
    end = text.index("<!-- end settings-table -->")
    assert text[start:end].strip() == markdown_table()


def test_readme_has_the_two_setup_commands():
    text = README.read_text()
    assert "shepherd-manager serve" in text
    assert "bash tests/run" in text
