"""Credentials out of storage URLs and any text isotune shows: each storage kind isotune accepts,
redacted as SQLAlchemy reads it (user, host, port and database kept), and nothing else touched."""

import pytest
from sqlalchemy.engine import make_url

from isotune.core import credentials
from isotune.core.credentials import is_redacted, is_secret_param, redact, remember, secrets_of, without_password

# (url, redacted): one per kind of URL with a password that --storage accepts
WITH_PASSWORD = [
    ("postgresql://postgres:s3cret@127.0.0.1:55444/isox", "postgresql://postgres:***@127.0.0.1:55444/isox"),
    ("postgresql+psycopg2://bob:s3cret@db.example.com/optuna", "postgresql+psycopg2://bob:***@db.example.com/optuna"),
    ("postgresql+psycopg://bob:s3cret@db.example.com:5433/optuna", "postgresql+psycopg://bob:***@db.example.com:5433/optuna"),
    ("postgres://bob:s3cret@h/db", "postgres://bob:***@h/db"),
    ("mysql://root:s3cret@localhost/optuna", "mysql://root:***@localhost/optuna"),
    ("mysql+pymysql://root:s3cret@localhost:3306/optuna?charset=utf8mb4",
     "mysql+pymysql://root:***@localhost:3306/optuna?charset=utf8mb4"),
    ("mysql+mysqldb://root:s3cret@10.0.0.5/optuna", "mysql+mysqldb://root:***@10.0.0.5/optuna"),
    ("oracle+oracledb://scott:s3cret@dbhost:1521/?service_name=orclpdb",
     "oracle+oracledb://scott:***@dbhost:1521/?service_name=orclpdb"),
    # percent-encoded, and the characters a password holds unencoded as SQLAlchemy reads them
    ("postgresql://bob:p%40ss%2Fw0rd@h:5432/db", "postgresql://bob:***@h:5432/db"),
    ("postgresql://bob:a:b/c?d@h:5432/db", "postgresql://bob:***@h:5432/db"),
    ("postgresql://bob:p q'r\"s@h/db", "postgresql://bob:***@h/db"),
    ("postgresql://bob:s3cret@[::1]:5432/db", "postgresql://bob:***@[::1]:5432/db"),
]  # fmt: skip


@pytest.mark.parametrize(
    "url,shown", WITH_PASSWORD, ids=[u.split(":")[0] + str(i) for i, (u, _) in enumerate(WITH_PASSWORD)]
)
def test_a_url_password_is_redacted_and_the_rest_kept(url, shown):
    assert redact(url) == shown
    assert is_redacted(shown) and not is_redacted(url)
    real, kept = make_url(url), make_url(shown)  # the same URL to SQLAlchemy, but for the password
    assert real.password and real.password not in shown
    assert (kept.username, kept.host, kept.port, kept.database, kept.password) == (
        real.username, real.host, real.port, real.database, "***",
    )  # fmt: skip
    assert redact(shown) == shown  # redacting twice changes nothing


def test_the_style_is_sqlalchemys():
    for url, shown in WITH_PASSWORD[:8]:
        assert make_url(url).render_as_string(hide_password=True) == shown


def test_a_password_holding_an_at_sign_unencoded_is_hidden_whole():
    """SQLAlchemy ends the password at the first '@'; a user who meant 'pa@ss' must not see 'ss'."""
    assert redact("postgresql://bob:pa@ss@host:5/db") == "postgresql://bob:***@host:5/db"


def test_libpq_multi_host_urls_too():
    assert redact("postgresql://bob:s3cret@h1:5432,h2:5432/db") == "postgresql://bob:***@h1:5432,h2:5432/db"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///plan.study.db",
        "sqlite:////abs/path/to/s.db",
        "sqlite:///:memory:",
        "sqlite:////tmp/odd:name@x.db",  # after '///' no user part, whatever the file's name holds
        "journal:plan.study.log",
        "journal:/tmp/runs/a@b:c/study.log",
        "journal:/tmp/token/study.log",
        "postgresql://bob@127.0.0.1:5432/db",  # the password comes from PGPASSWORD or ~/.pgpass
        "postgresql://127.0.0.1/db",
        "postgresql://[::1]:5432/db",
        "postgresql://bob:@h/db",  # an empty password: nothing to hide
        "postgresql://bob@h/db?sslmode=require&connect_timeout=5&application_name=isotune",
    ],
)
def test_urls_without_a_password_pass_through_unchanged(url):
    assert redact(url) == url and not is_redacted(url) and secrets_of(url) == []


@pytest.mark.parametrize(
    "name",
    ["password", "PASSWORD", "passwd", "pwd", "sslpassword", "secret", "token", "access_key", "api_key", "Api-Key",
     "apiKey", "client_secret", "aws_secret_access_key", "access_token", "auth_token", "sslpassphrase", "sig"],
)  # fmt: skip
def test_credential_parameters_are_redacted_case_insensitively(name):
    url = f"postgresql://bob@h:5432/db?sslmode=require&{name}=s3cret&connect_timeout=5"
    assert is_secret_param(name)
    assert redact(url) == f"postgresql://bob@h:5432/db?sslmode=require&{name}=***&connect_timeout=5"
    assert is_redacted(redact(url)) and secrets_of(url) == ["s3cret"]


@pytest.mark.parametrize(
    "name", ["sslmode", "sslkey", "sslrootcert", "user", "host", "tokens", "max_tokens", "keepalives"]
)
def test_other_parameters_are_kept(name):
    assert not is_secret_param(name)
    assert redact(f"x=1 {name}=value") == f"x=1 {name}=value"


def test_both_at_once_and_in_mysql():
    url = "mysql+pymysql://root:s3cret@db/optuna?ssl_key=/k.pem&password=other1"
    assert redact(url) == "mysql+pymysql://root:***@db/optuna?ssl_key=/k.pem&password=***"
    assert secrets_of(url) == ["s3cret", "other1"]


def test_urls_inside_text_are_redacted_where_they_stand():
    line = (
        "error: --storage 'postgresql://bob:s3cret@127.0.0.1:1/db' cannot be opened (OperationalError: "
        "connection failed: host=127.0.0.1 user=bob password=hunter22 dbname=db), see mysql://a:b@c/d."
    )
    assert redact(line) == (
        "error: --storage 'postgresql://bob:***@127.0.0.1:1/db' cannot be opened (OperationalError: "
        "connection failed: host=127.0.0.1 user=bob password=*** dbname=db), see mysql://a:***@c/d."
    )
    text = "wrote plan.yaml; 512 tokens: study stopped after 3 of 10 trials (user@example.com: done)"
    assert redact(text) == text


def test_a_remembered_password_is_scrubbed_bare_and_decoded(monkeypatch):
    monkeypatch.setattr(credentials, "_known", set())
    remember("postgresql://bob:p%40ssw0rd@h/db?sslpassword=k3yphrase")
    said = "FATAL: password p@ssw0rd (p%40ssw0rd) rejected; key k3yphrase"
    assert redact(said) == "FATAL: password *** (***) rejected; key ***"
    remember("postgresql://bob:ab@h/db")  # too short to scrub from free text: it would mangle words
    assert redact("about tables") == "about tables"
    assert redact("postgresql://bob:ab@h/db") == "postgresql://bob:***@h/db"  # in its URL it still goes


def test_without_password_keeps_the_user():
    assert (
        without_password("postgresql://postgres:***@127.0.0.1:55444/isox")
        == "postgresql://postgres@127.0.0.1:55444/isox"
    )
    assert without_password("postgresql://bob@h/db") == "postgresql://bob@h/db"
    assert without_password("journal:x.log") == "journal:x.log"
    assert (
        without_password("postgresql://bob@h/db?password=***&sslmode=require")
        == "postgresql://bob@h/db?sslmode=require"
    )
    assert without_password("postgresql://bob@h/db?password=***") == "postgresql://bob@h/db"
