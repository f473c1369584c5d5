"""Declared agent settings: defaults and bounds."""

import pytest

from agent.config import AgentConfig, ConfigError, describe


def test_defaults_match_the_design():
    config = AgentConfig()
    assert config.state_dir == "/var/lib/shepherd-agent"
    assert config.max_actions == 8
    assert (config.backoff_min_s, config.backoff_max_s) == (1.0, 60.0)
    assert config.heartbeat_jitter == 0.2


@pytest.mark.parametrize("bad", [{"max_actions": 0}, {"heartbeat_jitter": 0.9},
                                 {"backoff_min_s": 10, "backoff_max_s": 5}])
def test_out_of_range_values_are_refused(bad):
    with pytest.raises(ConfigError):
        AgentConfig(**bad)


def test_every_setting_has_help():
    assert all(help_text for _, _, help_text in describe())
