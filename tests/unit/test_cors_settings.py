"""FAILCAST_CORS_ORIGINS: origins as browsers send them, nothing else; `*` in development only."""

import pytest
from pydantic import ValidationError

from graph.settings import Settings, SettingsError

STRONG = "Zq3" + "".join(chr(65 + (i * 7) % 26) + str(i % 10) for i in range(24))


def _origins(value: str, **settings: str) -> list[str]:
    return Settings(cors_origins=value, database_url="sqlite://", **settings).cors_origins


def test_no_origin_is_allowed_by_default():
    assert Settings(database_url="sqlite://").cors_origins == []
    assert _origins("") == []


def test_origins_are_kept_as_browsers_send_them():
    value = " https://app.example.com, HTTPS://Admin.Example.com:443,http://localhost:5173 "
    assert _origins(value) == [
        "https://app.example.com",
        "https://admin.example.com",
        "http://localhost:5173",
    ]
    assert _origins('["http://127.0.0.1:8080", "http://[::1]:3000"]') == [
        "http://127.0.0.1:8080",
        "http://[::1]:3000",
    ]
    assert _origins("https://app.example.com:8443") == ["https://app.example.com:8443"]


@pytest.mark.parametrize(
    "value",
    [
        "app.example.com",  # no scheme
        "ftp://app.example.com",
        "https://app.example.com/",  # a path, even an empty one
        "https://app.example.com/graphql",
        "https://app.example.com?x=1",
        "https://app.example.com#top",
        "https://user@app.example.com",
        "https://*.example.com",  # no wildcards but the whole `*`
        "https://app.example.com:0",
        "https://app.example.com:70000",
        "https://app_example.com",
        "null",
    ],
)
def test_anything_but_scheme_host_port_is_refused(value):
    with pytest.raises(ValidationError, match="CORS origin"):
        _origins(f"https://ok.example.com,{value}")


def test_any_origin_is_for_development_only():
    assert _origins("*") == ["*"]
    Settings(cors_origins="*", jwt_secret=STRONG, database_url="sqlite://").check_startable()
    production = Settings(
        env="production", cors_origins="*", jwt_secret=STRONG, database_url="sqlite://"
    )
    with pytest.raises(SettingsError, match="FAILCAST_CORS_ORIGINS"):
        production.check_startable()
    listed = Settings(
        env="production",
        cors_origins="https://app.example.com",
        jwt_secret=STRONG,
        database_url="sqlite://",
    )
    listed.check_startable()
