"""Settings are read from the documented environment names and refuse unsafe production use."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from common.infra.settings import Settings

GOOD_SECRET = "x" * 40


def make(**env) -> Settings:
    return Settings(_env_file=None, **env)


def test_production_refuses_missing_secret():
    with pytest.raises(ValidationError, match="JWT_SECRET_KEY is missing"):
        make(app_env="production")


@pytest.mark.parametrize("secret", ["change-me", "super-secret", "SECRET"])
def test_production_refuses_placeholder_secret(secret):
    with pytest.raises(ValidationError, match="well-known placeholder"):
        make(app_env="production", jwt_secret_key=secret)


def test_production_refuses_short_secret():
    with pytest.raises(ValidationError, match="shorter than 32 bytes"):
        make(app_env="production", jwt_secret_key="a" * 31)


def test_production_accepts_a_long_random_secret():
    assert make(app_env="production", jwt_secret_key=GOOD_SECRET).app_env == "production"


def test_development_runs_without_secret():
    assert make(app_env="development").jwt_secret_key is None


def test_database_url_overrides_parts_and_parts_build_a_mysql_url():
    parts = make(app_env="development", db_host="db", db_port=3307, db_name="b", db_user="u",
                 db_password="p@ss word")
    assert parts.sqlalchemy_url == "mysql+pymysql://u:p%40ss%20word@db:3307/b?charset=utf8mb4"
    url = make(app_env="development", db_host="db", database_url="sqlite:///x.db")
    assert url.sqlalchemy_url == "sqlite:///x.db"


def test_without_database_settings_the_default_is_sqlite(tmp_path):
    assert make(app_env="development", data_dir=tmp_path).sqlalchemy_url == \
        f"sqlite:///{tmp_path}/bailian.db"


def test_redis_url_overrides_parts():
    parts = make(app_env="development", redis_host="cache", redis_port=6380,
                 redis_password="s3cret", redis_db=2)
    assert parts.redis_connection_url == "redis://:s3cret@cache:6380/2"
    assert parts.broker_url == parts.redis_connection_url
    url = make(app_env="development", redis_host="cache", redis_url="redis://other:1/0")
    assert url.redis_connection_url == "redis://other:1/0"


def test_dashscope_api_key_is_an_alias_of_qwen_api_key(monkeypatch):
    monkeypatch.delenv("QWEN_API_KEY", raising=False)
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-alias")
    monkeypatch.setenv("APP_ENV", "development")
    settings = Settings()
    assert settings.qwen_api_key.get_secret_value() == "sk-alias"
    assert settings.dashscope_configured


def test_environment_names_are_the_documented_ones(monkeypatch):
    env = {"APP_ENV": "development", "DB_HOST": "h", "DB_PORT": "1", "DB_NAME": "n",
           "DB_USER": "u", "DB_PASSWORD": "p", "REDIS_HOST": "r", "REDIS_PORT": "2",
           "REDIS_PASSWORD": "rp", "QWEN_API_KEY": "k", "JWT_SECRET_KEY": GOOD_SECRET,
           "LOG_LEVEL": "DEBUG", "METRICS_ENABLED": "false", "FC_QWEN_ENDPOINT": "http://q",
           "FC_WANX_ENDPOINT": "http://w", "FC_AUTH_TOKEN": "t"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = Settings()
    assert (s.db_host, s.db_port, s.db_name, s.db_user) == ("h", 1, "n", "u")
    assert s.db_password.get_secret_value() == "p"
    assert (s.redis_host, s.redis_port, s.redis_password.get_secret_value()) == ("r", 2, "rp")
    assert s.qwen_api_key.get_secret_value() == "k"
    assert (s.log_level, s.metrics_enabled) == ("DEBUG", False)
    assert (s.fc_qwen_endpoint, s.fc_wanx_endpoint) == ("http://q", "http://w")
    assert s.fc_auth_token.get_secret_value() == "t"


def test_every_allowed_model_needs_a_price():
    with pytest.raises(ValidationError, match="PRICES has no entry"):
        make(app_env="development", chat_models={"qwen-unknown": 100})


def test_time_limits_must_fit_inside_the_visibility_timeout():
    with pytest.raises(ValidationError, match="TASK_TIME_LIMIT"):
        make(app_env="development", task_time_limit=900, broker_visibility_timeout=900)


def test_env_example_documents_every_setting():
    from pathlib import Path

    documented = {line.split("=", 1)[0].lstrip("# ").strip()
                  for line in (Path(__file__).parents[2] / ".env.example").read_text().splitlines()
                  if "=" in line}
    fields = {name.upper() for name in Settings.model_fields} | {"DASHSCOPE_API_KEY"}
    assert fields <= documented, sorted(fields - documented)


def test_db_tls_modes_map_to_one_shared_context():
    import ssl

    from common.infra.db import tls_connect_args

    assert tls_connect_args("disabled") == {"ssl_disabled": True}
    assert tls_connect_args("preferred") == {}
    required = tls_connect_args("required")["ssl"]
    assert required.verify_mode == ssl.CERT_NONE and not required.check_hostname
    verify_ca = tls_connect_args("verify_ca")["ssl"]
    assert verify_ca.verify_mode == ssl.CERT_REQUIRED and not verify_ca.check_hostname
    identity = tls_connect_args("verify_identity")["ssl"]
    assert identity.verify_mode == ssl.CERT_REQUIRED and identity.check_hostname


def test_db_ssl_mode_is_validated():
    with pytest.raises(ValidationError):
        Settings(app_env="development", db_ssl_mode="sometimes")


def _env_example_values() -> dict[str, str]:
    """Every NAME=value line of .env.example, the commented-out ones included."""
    from pathlib import Path

    values = {}
    for line in (Path(__file__).parents[2] / ".env.example").read_text().splitlines():
        name, sep, value = line.lstrip("# ").partition("=")
        if sep and name.strip().isupper():
            values[name.strip()] = value.strip()
    return values


PRODUCTION = {"app_env": "production", "jwt_secret_key": GOOD_SECRET}
STRONG = "Kq7-vR2n-Yw9p-Lz4x"  # 18 characters, in no list


@pytest.mark.parametrize("setting", ["ADMIN_PASSWORD", "FLOWER_BASIC_AUTH", "DB_PASSWORD",
                                     "DATABASE_URL"])
def test_production_refuses_the_placeholders_of_env_example(setting):
    value = _env_example_values()[setting]
    extra = {"db_host": "mysql"} if setting == "DB_PASSWORD" else {}
    with pytest.raises(ValidationError, match=f"{setting} .*well-known placeholder"):
        make(**PRODUCTION, **extra, **{setting.lower(): value})


@pytest.mark.parametrize(("setting", "value", "why"), [
    ("ADMIN_PASSWORD", "x", "at least 12 characters"),
    ("ADMIN_PASSWORD", "Tr0ub4dor&3", "at least 12 characters"),
    ("ADMIN_PASSWORD", "password1234", "common or breached"),
    ("ADMIN_PASSWORD", "REPLACE_ME", "well-known placeholder"),  # deploy/k8s's placeholder
    ("FLOWER_BASIC_AUTH", "operator:short-one", "shorter than 16 characters"),
    ("FLOWER_BASIC_AUTH", f"ops:{STRONG},operator:REPLACE_ME", "well-known placeholder"),
    ("FLOWER_BASIC_AUTH", "operator", "not a list of user:password pairs"),
    ("DB_PASSWORD", "bailian-123", "shorter than 16 characters"),
    ("DATABASE_URL", "mysql+pymysql://u:tiny@db/bailian", "shorter than 16 characters"),
    ("CELERY_BROKER_URL", "amqp://bailian:change-me-rabbit@rabbitmq:5672//",
     "well-known placeholder"),
    ("REDIS_URL", "redis://:change-me@redis:6379/0", "well-known placeholder"),
    ("REDIS_PASSWORD", "change-me", "well-known placeholder"),
])
def test_production_refuses_short_and_weak_credentials(setting, value, why):
    extra = {"db_host": "mysql"} if setting == "DB_PASSWORD" else {}
    with pytest.raises(ValidationError, match=f"{setting} .*{why}"):
        make(**PRODUCTION, **extra, **{setting.lower(): value})


def test_production_accepts_strong_credentials_and_no_database_password():
    settings = make(**PRODUCTION, admin_password=STRONG, flower_basic_auth=f"operator:{STRONG}",
                    db_host="mysql", db_password=STRONG)
    assert settings.admin_password.get_secret_value() == STRONG
    # No password at all: the server authenticates otherwise (the test suite's root user).
    assert make(**PRODUCTION, database_url="mysql+pymysql://root:@127.0.0.1/x").app_env == \
        "production"


def test_development_accepts_the_placeholders():
    values = _env_example_values()
    assert make(app_env="development", admin_password=values["ADMIN_PASSWORD"],
                flower_basic_auth=values["FLOWER_BASIC_AUTH"], db_host="mysql",
                db_password=values["DB_PASSWORD"]).is_development


def test_every_example_secret_is_a_known_placeholder():
    """The list the production check uses covers what the example files ship."""
    from pathlib import Path

    from common.infra.settings import PLACEHOLDER_SECRETS

    values = _env_example_values()
    secrets = [values[name] for name in ("JWT_SECRET_KEY", "DB_PASSWORD", "ADMIN_PASSWORD",
                                         "QWEN_API_KEY", "FC_AUTH_TOKEN",
                                         "S3_SECRET_ACCESS_KEY")]
    secrets.append(values["FLOWER_BASIC_AUTH"].partition(":")[2])
    secrets.append(values["RABBITMQ_PASSWORD"])
    k8s = (Path(__file__).parents[2] / "deploy/k8s/secret.example.yaml").read_text()
    secrets += [line.split(":", 1)[1].strip().rpartition(":")[2]
                for line in k8s.splitlines() if "REPLACE_ME" in line]
    assert {s.lower() for s in secrets} <= PLACEHOLDER_SECRETS, secrets
