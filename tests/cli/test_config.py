"""The contexts file (TOML written by hand, read by tomllib) and ``--expiry`` durations."""

import datetime
import stat
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.cli import config
from api.cli.durations import parse_duration

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


@given(name=TEXT.filter(bool), url=TEXT, username=TEXT, token=TEXT, insecure=st.booleans())
def test_any_strings_survive_the_round_trip(name, url, username, token, insecure):
    cfg = config.Config(name, {name: config.Context(url, username, token, "/x/ca.pem", insecure)})
    assert tomllib.loads(config.dumps(cfg)) == {"current_context": name, "contexts": {name: {
        "url": url, "username": username, "token": token, "ca_file": "/x/ca.pem",
        "insecure": insecure}}}


def test_save_and_load(tmp_path):
    path = tmp_path / "shepherd" / "config.toml"
    cfg = config.Config("lab", {"lab": config.Context("https://a:8443", "admin", "shp_1"),
                                'q"uote\\d': config.Context("https://b", insecure=True)})
    config.save(cfg, path)
    assert config.load(path) == cfg
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]  # no temporary left


def test_a_missing_file_is_an_empty_config(tmp_path):
    assert config.load(tmp_path / "none.toml") == config.Config()


@pytest.mark.parametrize("text", [
    "current_context = [", "contexts = 3", "[contexts.a]\nuser = 'x'",
    "[contexts.a]\nurl = 'https://a'\ninsecure = 'yes'", b"\xff\xfe".decode("latin-1")])
def test_bad_files_are_config_errors(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="latin-1")
    with pytest.raises(config.ConfigError):
        config.load(path)


def test_xdg_config_home_is_honoured():
    assert str(config.config_path({"XDG_CONFIG_HOME": "/srv/cfg"})) == "/srv/cfg/shepherd/config.toml"
    assert config.config_dir({"XDG_CONFIG_HOME": "relative"}).parts[-2:] == (".config", "shepherd")


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("10m", 600), ("2h", 7200), ("7d", 604800), ("1h30m", 5400), (" 2H ", 7200)])
def test_durations(text, seconds):
    assert parse_duration(text) == datetime.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "10", "5x", "1.5h", "0s", "-1h", "h", "99999d"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match=r"duration|longer"):
        parse_duration(text)
