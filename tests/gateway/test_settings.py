from pathlib import Path

import pytest

from gateway.errors import ConfigurationError
from gateway.settings import Settings


def test_defaults_use_sqlite_in_data_dir() -> None:
    s = Settings.from_env({})
    assert s.data_dir == Path("./var")
    assert s.resolved_database_url.startswith("sqlite+aiosqlite:///")
    assert s.resolved_database_url.endswith("var/gateway.db")


def test_values_are_parsed_from_gateway_variables() -> None:
    s = Settings.from_env(
        {
            "GATEWAY_DATA_DIR": "/tmp/x",
            "GATEWAY_PORT": "9000",
            "GATEWAY_LOAD_MODEL": "false",
            "GATEWAY_DATABASE_URL": "postgresql+asyncpg://u@h/db",
            "OTHER": "ignored",
        }
    )
    assert s.data_dir == Path("/tmp/x") and s.port == 9000 and s.load_model is False
    assert s.resolved_database_url == "postgresql+asyncpg://u@h/db"


@pytest.mark.parametrize(("name", "value"), [("GATEWAY_PORT", "eighty"), ("GATEWAY_LOAD_MODEL", "perhaps")])
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({name: value})


def test_overrides_ignore_none() -> None:
    s = Settings.from_env({"GATEWAY_PORT": "9000"}).with_overrides(port=None, host="0.0.0.0")
    assert s.port == 9000 and s.host == "0.0.0.0"


def test_outage_settings() -> None:
    settings = Settings.from_env({})
    assert (settings.redis_failure, settings.stale_if_error_s) == ("closed", 60)
    env = {"GATEWAY_REDIS_FAILURE": "OPEN", "GATEWAY_STALE_IF_ERROR_S": "0"}
    assert (Settings.from_env(env).redis_failure, Settings.from_env(env).stale_if_error_s) == ("open", 0)
    with pytest.raises(ConfigurationError, match="GATEWAY_REDIS_FAILURE"):
        Settings.from_env({"GATEWAY_REDIS_FAILURE": "sometimes"})
    with pytest.raises(ConfigurationError, match="GATEWAY_STALE_IF_ERROR_S"):
        Settings.from_env({"GATEWAY_STALE_IF_ERROR_S": "-1"})
