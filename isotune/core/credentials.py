"""Credentials out of what isotune shows or stores: `redact(text)` replaces the password of
every URL in `text` (`postgresql://postgres:***@127.0.0.1:55444/isox`, SQLAlchemy's style:
user, host, port and database kept), the value of every credential-bearing parameter
(`?password=***`, `sslpassword=***`, `api_key=***`, ...), and every password this process was
told of (`remember`), wherever it appears: a driver's error may quote one bare. Plans,
progress lines, errors and tables all pass storage URLs through it.

A URL recorded with `***` for its password stands for one given elsewhere (libpq's PGPASSWORD
or ~/.pgpass, or the whole URL in ISOTUNE_STORAGE): `is_redacted` tells such a URL, so it is
never sent to a server as a literal password.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

REDACTED = "***"

# parameter names (lower case, letters and digits only: api_key, API-Key and apiKey are one)
_SECRET_NAMES = {"pwd", "pass", "sig", "signature", "credential", "credentials"}
_SECRET_ENDINGS = (
    "password", "passwd", "passphrase", "secret", "token",
    "apikey", "accesskey", "secretkey", "privatekey", "accountkey",
)  # fmt: skip
# shorter remembered secrets are not scrubbed from free text: they would mangle ordinary words
# (a URL's password is redacted by its place in the URL, whatever its length)
_MIN_BARE = 4

_SCHEME = re.compile(r"[A-Za-z][\w+.-]*://")
# `name=value` anywhere: a URL's query, libpq's `password=...` conninfo, a driver's message
_PARAM = re.compile(r"""(?<![\w.-])([A-Za-z][\w.-]*)(\s*=\s*)('[^']*'|"[^"]*"|[^\s&;,'"()]*)""")
_known: set[str] = set()


def is_secret_param(name: str) -> bool:
    """Whether a URL query or conninfo parameter called `name` carries a credential."""
    n = re.sub(r"[^a-z0-9]", "", name.lower())
    return n in _SECRET_NAMES or n.endswith(_SECRET_ENDINGS)


def redact(text: str) -> str:
    """`text` with every credential it holds replaced by ***: the password of each URL in it,
    each credential parameter's value, each remembered secret. Text without any is unchanged
    (journal:FILE and sqlite:///FILE storages, for instance)."""
    out, at = [], 0
    for m in _SCHEME.finditer(text):
        if m.start() < at:
            continue  # inside the URL just redacted (a scheme in its query, say)
        end = _url_end(text, m)
        out += [text[at : m.end()], _redact_authority(text[m.end() : end])]
        at = end
    out.append(text[at:])
    text = _PARAM.sub(_redact_param, "".join(out))
    for secret in sorted(_known, key=len, reverse=True):  # the longest first: one may hold another
        text = text.replace(secret, REDACTED)
    return text


def remember(url: str) -> None:
    """Have redact() scrub `url`'s password and credential parameters from any text from now on,
    bare, as written in the URL and decoded: a driver's error quotes them in either form."""
    for secret in secrets_of(url):
        for form in (secret, unquote(secret)):
            if len(form) >= _MIN_BARE and form != REDACTED:
                _known.add(form)


def secrets_of(url: str) -> list[str]:
    """The password and credential parameter values in `url`, as written in it."""
    m = _SCHEME.match(url)
    if m is None:
        return []
    found = []
    split = _userinfo(url[m.end() :])
    if split is not None and split[1]:
        found.append(split[1])
    query = url.partition("?")[2]
    for pm in _PARAM.finditer(query):
        if is_secret_param(pm.group(1)) and pm.group(3):
            found.append(pm.group(3).strip("'\""))
    return found


def is_redacted(url: str) -> bool:
    """Whether `url` holds *** where a password goes (as plans record one): it stands for a
    password given elsewhere, never for the password itself."""
    return any(unquote(s) == REDACTED for s in secrets_of(url))


def without_password(url: str) -> str:
    """`url` with its password and credential parameters left out (the user kept): libpq then
    reads PGPASSWORD or ~/.pgpass."""
    m = _SCHEME.match(url)
    if m is None:
        return url
    split = _userinfo(url[m.end() :])
    if split is not None and split[1] is not None:
        user, _, rest = split
        url = f"{url[: m.end()]}{user}@{rest}"
    base, mark, query = url.partition("?")
    kept = [p for p in query.split("&") if p and not is_secret_param(p.partition("=")[0])]
    return base + (mark + "&".join(kept) if kept else "")


def _url_end(text: str, m: re.Match) -> int:
    """Where the URL whose scheme `m` matched ends. A text that is one URL ends with it: its
    password may hold anything SQLAlchemy reads as one (spaces, quotes). In other text a URL
    ends at whitespace or a quote."""
    if m.start() == 0:
        split = _userinfo(text[m.end() :])
        if split is not None and split[1] and not re.search(r"\s", split[2]):
            return len(text)
    cut = re.compile(r"""[\s'"]""").search(text, m.end())
    return cut.start() if cut else len(text)


def _userinfo(after_scheme: str) -> tuple[str, str | None, str] | None:
    """(user, password or None, the rest after '@') of a URL's text after `scheme://`, None
    with no user part. As SQLAlchemy reads it: the user runs to the first ':', the password to
    the next '@'; except that a host part still holding an '@' means the password held one
    unencoded, so the password runs to the host's last '@' (redacted whole, never in part)."""
    m = re.match(r"([^:/]*)(?::([^@]*))?@", after_scheme)
    if m is None:
        return None
    user, password, rest = m.group(1), m.group(2), after_scheme[m.end() :]
    host = re.match(r"[^/?]*", rest).group(0)
    if password is not None and "@" in host:
        cut = host.rindex("@")
        password, rest = f"{password}@{host[:cut]}", rest[cut + 1 :]
    return user, password, rest


def _redact_authority(after_scheme: str) -> str:
    split = _userinfo(after_scheme)
    if split is None or not split[1]:  # no password (or an empty one): nothing to hide
        return after_scheme
    user, _, rest = split
    return f"{user}:{REDACTED}@{rest}"


def _redact_param(m: re.Match) -> str:
    name, eq, value = m.groups()
    if not value or not is_secret_param(name):
        return m.group(0)
    return f"{name}{eq}{REDACTED}"
