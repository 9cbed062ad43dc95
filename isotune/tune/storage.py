"""Where a search's studies live: a storage URL, from --storage or ISOTUNE_STORAGE, opened as an
Optuna storage, with one-line errors that name it redacted and say what to do.

URLs: `journal:FILE` (an Optuna journal file, safe for several processes on one host or a
shared file system), or any Optuna RDB URL (`sqlite:///FILE`, `postgresql://...`). A password
need not be in the URL on the command line: libpq reads PGPASSWORD or ~/.pgpass for a
`postgresql://user@host/db` without one, and ISOTUNE_STORAGE may hold the whole URL. Every
message names the URL redacted (core.credentials).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import optuna

from isotune.core.credentials import is_redacted, redact, remember, without_password
from isotune.core.errors import BadInput, first_line
from isotune.core.files import check_writable

ENV_STORAGE = "ISOTUNE_STORAGE"  # the whole storage URL, password included, off the command line
CONNECT_TIMEOUT_S = 20


def default_storage(out: str) -> str:
    """A journal file beside the plan: plan.yaml -> plan.study.log."""
    return f"journal:{Path(out).with_suffix('.study.log')}"


def storage_url(given: str | None, default: str | None = None) -> str | None:
    """The storage a command opens: `given` (--storage, or show's argument), else the whole URL
    in ISOTUNE_STORAGE (which keeps a password off the command line and out of shell history),
    else `default`. A URL with *** for its password (as plans record one) stands for
    ISOTUNE_STORAGE's when that is the same URL redacted; open_storage refuses any other."""
    env = os.environ.get(ENV_STORAGE) or None
    if env is not None:
        remember(env)  # from here on no line this process prints can quote its password
    if given is None:
        return env or default
    remember(given)
    if is_redacted(given) and env is not None and redact(env) == redact(given):
        return env
    return given


def storage_file(url: str) -> Path | None:
    """The local file behind a journal: or sqlite:/// URL; None for a database server."""
    if url.startswith("journal:"):
        return Path(url.removeprefix("journal:"))
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    return None


def open_storage(url: str, given_as: str = "--storage"):
    """The Optuna storage behind `url`; BadInput, naming it as `given_as` and redacted, when it
    cannot be opened."""
    remember(url)
    shown, flag = redact(url), _source(url, given_as)
    if url.startswith("journal:"):
        path = storage_file(url)
        if not path.name:
            raise BadInput(f"{flag} {shown!r} names no file: use journal:PATH/TO/study.log")
        check_writable(path, flag)
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        try:
            return JournalStorage(JournalFileBackend(str(path)))
        except Exception as e:  # a corrupt journal shows up here
            raise BadInput(f"{flag} {shown} cannot be read ({redact(first_line(e))}): pick another file") from None
    if "://" in url:
        if is_redacted(url):  # a plan's URL copied back: never log in with a literal ***
            raise BadInput(f"{flag} {shown} holds *** for its password, as plans record it: {_where_password(url)}")
        try:
            # RDBStorage reads its URL as a str.format template: braces doubled stay the password's
            # own (a lone one would fail, quoting part of the password)
            template = rdb_url(url).replace("{", "{{").replace("}", "}}")
            return optuna.storages.RDBStorage(template, engine_kwargs=_engine_kwargs(url))
        except Exception as e:
            why = redact(first_line(e))
            if "Failed to import DB access module" in str(e) or isinstance(e, ImportError):
                raise BadInput(
                    f"{flag} {shown} needs a database driver that is not installed ({why}): "
                    "for PostgreSQL pip install 'isotune[postgres]' (psycopg 3)"
                ) from None
            raise BadInput(f"{flag} {shown} cannot be opened ({why}): {_fix(url, str(e))}") from None
    raise BadInput(f"{flag} {shown!r} is not a storage URL: use journal:FILE, sqlite:///FILE or another Optuna DB URL")


def _source(url: str, given_as: str) -> str:
    """What to call the storage in a message: the variable it came from, or how it was given."""
    return ENV_STORAGE if url == os.environ.get(ENV_STORAGE) else given_as


def _is_postgres(url: str) -> bool:
    return url.startswith(("postgresql:", "postgresql+", "postgres:"))


def _password_places(url: str) -> str:
    """Where a password may be given instead of in the URL on the command line."""
    if _is_postgres(url):  # libpq (under psycopg and psycopg2) reads these for a URL without one
        return f"PGPASSWORD or ~/.pgpass, or the whole URL in {ENV_STORAGE}"
    return f"the whole URL in {ENV_STORAGE}"


def _where_password(url: str) -> str:
    if _is_postgres(url):
        return f"give {without_password(url)} and the password in {_password_places(url)}"
    return f"give the whole URL, password included, in {ENV_STORAGE}"


# what a driver's error says -> the fix (libpq's words, then MySQL's); the first match wins
_FIXES = (
    (r"password authentication failed|Access denied", "check the user and the password ({places})"),
    (r"no password supplied", "the server wants a password: give it in {places}"),
    (r'role "[^"]*" does not exist', "check the user name in the URL"),
    (r'database "[^"]*" does not exist|Unknown database', "create the database or fix its name in the URL"),
    (r"could not translate host name|Name or service not known", "check the host name in the URL"),
    (r"Connection refused|timeout expired|Can't connect|timed out", "check the host and port in the URL, and that the server is running"),
)  # fmt: skip


def _fix(url: str, error: str) -> str:
    """How to fix a storage that would not open, by what its driver said."""
    for pattern, fix in _FIXES:
        if re.search(pattern, error):
            return fix.format(places=_password_places(url))
    return "check the URL and the server"


def _engine_kwargs(url: str) -> dict:
    """A PostgreSQL server that cannot be reached fails in CONNECT_TIMEOUT_S rather than the
    operating system's minutes, unless the URL or libpq's PGCONNECT_TIMEOUT says otherwise."""
    if not _is_postgres(url) or "connect_timeout" in url or os.environ.get("PGCONNECT_TIMEOUT"):
        return {}
    if not rdb_url(url).startswith(("postgresql://", "postgresql+psycopg://", "postgresql+psycopg2://")):
        return {}  # other drivers name their timeout otherwise
    return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}


def rdb_url(url: str) -> str:
    """A plain postgresql:// URL means psycopg2 to SQLAlchemy; isotune[postgres] installs psycopg 3,
    so such a URL is pointed at it when it is there (an explicit +driver is left alone)."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            try:
                import psycopg  # noqa: F401 - only whether it imports
            except ImportError:
                return url  # maybe psycopg2 is installed; if not, the error names the extra
            return "postgresql+psycopg://" + url.removeprefix(scheme)
    return url
