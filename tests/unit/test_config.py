"""Settings resolution: defaults < environment < config file < flags, and refusals."""

import pytest

from manager import config
from manager.config import ConfigError, load


def write(tmp_path, text, name="shepherd.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_defaults():
    cfg = load(environ={})
    assert cfg.port == 8443
    assert cfg.agent_port == 8444
    assert cfg.address == "0.0.0.0"
    assert cfg.http is False
    assert cfg.state_dir == config.DEFAULT_STATE_DIR
    assert cfg.database_url == ""
    assert cfg.resolved_database_url == f"sqlite:///{config.DEFAULT_STATE_DIR}/shepherd.db"
    assert cfg.values == {s.name: s.default for s in config.SETTINGS}


def test_resolved_database_url_follows_state_dir_and_keeps_an_explicit_url():
    cfg = load(environ={"SHEPHERD_STATE_DIR": "/srv/shep"})
    assert cfg.resolved_database_url == "sqlite:////srv/shep/shepherd.db"
    url = "postgresql://shep@db.example:5432/shepherd"
    assert load(environ={"SHEPHERD_DATABASE_URL": url}).resolved_database_url == url


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError):
        _ = load(environ={}).no_such_setting


def test_environment_overrides_defaults():
    cfg = load(environ={"SHEPHERD_PORT": "9443", "SHEPHERD_HTTP": "yes",
                        "SHEPHERD_AUTH_CACHE_TTL": "0.5", "SHEPHERD_LOG_LEVEL": "debug",
                        "UNRELATED": "x"})
    assert (cfg.port, cfg.http, cfg.auth_cache_ttl, cfg.log_level) == (9443, True, 0.5, "debug")
    assert cfg.agent_port == 8444


@pytest.mark.parametrize(("text", "expected"), [
    ("1", True), ("true", True), ("Yes", True), (" ON ", True),
    ("0", False), ("false", False), ("no", False), ("off", False), ("", False),
])
def test_boolean_spellings(text, expected):
    assert load(environ={"SHEPHERD_DEV": text}).dev is expected


def test_config_file_overrides_environment(tmp_path):
    path = write(tmp_path, 'port = 9000\nhttp = true\nstate_dir = "/srv/s"\n')
    cfg = load(environ={"SHEPHERD_PORT": "9443", "SHEPHERD_AGENT_PORT": "9444"},
               config_file=path)
    assert (cfg.port, cfg.http, cfg.state_dir) == (9000, True, "/srv/s")
    assert cfg.agent_port == 9444  # not in the file: the environment still applies


def test_config_file_from_shepherd_config_variable(tmp_path):
    path = write(tmp_path, "port = 9000\n")
    cfg = load(environ={"SHEPHERD_CONFIG": path, "SHEPHERD_PORT": "9443"})
    assert cfg.port == 9000


def test_explicit_config_file_wins_over_shepherd_config(tmp_path):
    env_file = write(tmp_path, "port = 1111\n", "env.toml")
    flag_file = write(tmp_path, "port = 2222\n", "flag.toml")
    assert load(environ={"SHEPHERD_CONFIG": env_file}, config_file=flag_file).port == 2222


def test_config_file_manager_table(tmp_path):
    path = write(tmp_path, '[manager]\nport = 9000\nserver_names = "a.example"\n')
    cfg = load(environ={"SHEPHERD_PORT": "9443"}, config_file=path)
    assert cfg.port == 9000
    assert cfg.server_names == "a.example"


def test_flags_override_the_file(tmp_path):
    path = write(tmp_path, "port = 9000\nagent_port = 9001\n")
    cfg = load(flags={"port": "7000", "http": True}, environ={"SHEPHERD_PORT": "9443"},
               config_file=path)
    assert (cfg.port, cfg.agent_port, cfg.http) == (7000, 9001, True)


def test_none_flags_are_ignored(tmp_path):
    path = write(tmp_path, "port = 9000\n")
    cfg = load(flags={"port": None, "agent_port": None, "dev": None},
               environ={"SHEPHERD_AGENT_PORT": "9444", "SHEPHERD_DEV": "1"}, config_file=path)
    assert (cfg.port, cfg.agent_port, cfg.dev) == (9000, 9444, True)


@pytest.mark.parametrize(("environ", "needles"), [
    ({"SHEPHERD_PORT": "abc"}, ("port", "SHEPHERD_PORT")),
    ({"SHEPHERD_PORT": "70000"}, ("port", "SHEPHERD_PORT", "65535")),
    ({"SHEPHERD_AGENT_PORT": "-1"}, ("agent_port", "SHEPHERD_AGENT_PORT", ">= 0")),
    ({"SHEPHERD_HTTP": "maybe"}, ("http", "SHEPHERD_HTTP", "maybe")),
    ({"SHEPHERD_DB_THREADS": "0"}, ("db_threads", "SHEPHERD_DB_THREADS")),
    ({"SHEPHERD_TOKEN_TTL": "59"}, ("token_ttl", "SHEPHERD_TOKEN_TTL", ">= 60")),
    ({"SHEPHERD_AUTH_CACHE_TTL": "soon"}, ("auth_cache_ttl", "SHEPHERD_AUTH_CACHE_TTL")),
])
def test_bad_environment_values(environ, needles):
    with pytest.raises(ConfigError) as info:
        load(environ=environ)
    for needle in needles:
        assert needle in str(info.value)


def test_bad_file_value_names_setting_and_file(tmp_path):
    path = write(tmp_path, 'port = "eighty"\n')
    with pytest.raises(ConfigError, match="port") as info:
        load(environ={}, config_file=path)
    assert path in str(info.value)


def test_out_of_range_file_value(tmp_path):
    path = write(tmp_path, "[manager]\nport = 70000\n")
    with pytest.raises(ConfigError, match=r"port \(from .*shepherd\.toml\): must be <= 65535"):
        load(environ={}, config_file=path)


@pytest.mark.parametrize(("flags", "pattern"), [
    ({"port": "x"}, r"port \(from --port\)"),
    ({"agent_port": 70000}, r"agent_port \(from --agent-port\): must be <= 65535"),
    ({"http": "maybe"}, r"http \(from --http\)"),
])
def test_bad_flag_values_name_the_flag(flags, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load(flags=flags, environ={})


def test_unknown_key_in_file(tmp_path):
    path = write(tmp_path, "port = 9000\nprot = 9001\n")
    with pytest.raises(ConfigError, match="unknown setting 'prot'"):
        load(environ={}, config_file=path)


def test_unknown_key_in_manager_table(tmp_path):
    path = write(tmp_path, "[manager]\nverbose = true\n")
    with pytest.raises(ConfigError, match="verbose"):
        load(environ={}, config_file=path)


def test_missing_file(tmp_path):
    path = str(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="cannot read config file") as info:
        load(environ={}, config_file=path)
    assert path in str(info.value)


def test_missing_file_named_by_shepherd_config(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(environ={"SHEPHERD_CONFIG": str(tmp_path / "absent.toml")})


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(environ={}, config_file=str(tmp_path))


def test_invalid_toml(tmp_path):
    path = write(tmp_path, "port = \n[unclosed\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(environ={}, config_file=path)


def test_non_utf8_file_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'log_level = "d\xe9bug"\n')
    with pytest.raises(ConfigError):
        load(environ={}, config_file=str(path))


@pytest.mark.parametrize(("names", "expected"), [
    ("", []),
    ("a.example", ["a.example"]),
    (" a.example , 10.0.0.1,,b.example ,", ["a.example", "10.0.0.1", "b.example"]),
])
def test_server_name_list(names, expected):
    assert load(environ={"SHEPHERD_SERVER_NAMES": names}).server_name_list() == expected


def test_setting_env_names():
    assert [s.env for s in config.SETTINGS][:2] == ["SHEPHERD_STATE_DIR", "SHEPHERD_DATABASE_URL"]
    assert all(s.env == "SHEPHERD_" + s.name.upper() for s in config.SETTINGS)


@pytest.mark.parametrize("text", ["port = true", "port = 8443.9", 'port = "1_000"',
                                  "auth_cache_ttl = nan", "manager = 5",
                                  "port = 1\n[manager]\nagent_port = 2"])
def test_file_values_int_and_float_would_bend_are_refused(tmp_path, text):
    path = tmp_path / "m.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError):
        load(config_file=str(path), environ={})


def test_unknown_flag_is_a_config_error():
    with pytest.raises(ConfigError, match="no_such"):
        load(flags={"no_such": 1}, environ={})


def test_contact_timeout_must_exceed_the_heartbeat_interval():
    with pytest.raises(ConfigError, match="contact_timeout"):
        load(flags={"heartbeat_interval": 30, "contact_timeout": 30}, environ={})
    assert load(flags={"heartbeat_interval": 1, "contact_timeout": 3}, environ={}).contact_timeout == 3
