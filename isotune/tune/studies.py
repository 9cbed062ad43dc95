"""Optuna storage and studies for `isotune search`: open a storage URL, open (or resume) one
study per prompt length, refuse a study made with other parameters, and fail trials whose worker
died (a SIGKILLed search leaves its running trial behind; a worker on another host is known
dead by its trial's heartbeat).

Storage URLs: `journal:FILE` (an Optuna journal file, safe for several processes on one
host or a shared file system), or any Optuna RDB URL (`sqlite:///FILE`, `postgresql://...`).
A password need not be in the URL on the command line: libpq reads PGPASSWORD or ~/.pgpass for
a `postgresql://user@host/db` without one, and ISOTUNE_STORAGE may hold the whole URL. Every
message names the URL redacted (core.credentials).
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import warnings
from collections import Counter
from datetime import datetime
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from isotune.core.credentials import is_redacted, redact, remember, without_password
from isotune.core.errors import BadInput, first_line
from isotune.core.files import check_writable
from isotune.core.heartbeat import Flatline, Heartbeat

optuna.logging.set_verbosity(optuna.logging.WARNING)  # progress and tables say it better
# TPE's `group` (conditional ratios per chunk count) is marked experimental; its warning is noise here
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

OWNER_ATTR = "owner"
CLAIM_PREFIX = "isotune_claim:"  # + "host:pid": a worker taking a queued trial, before it is named owner
BEAT_ATTR = "isotune_beat"  # beat_mark(): the count of its worker's beats, their period, its process
TRIAL_BEAT_S = float(os.environ.get("ISOTUNE_TRIAL_BEAT_S", "30"))
STALE_BEATS = 10  # beats missed before a running trial counts as its worker's death
MADE_WITH_ATTR = "isotune_settings"  # the attribute's name in storages predates the word
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
VALIDATION_ATTR = "isotune_validation"  # {key, times}: the last validation's per-repeat ms
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


def open_study(storage, name: str, attrs: dict, sampler=None, pruner=None) -> optuna.Study:
    """Create or resume study `name`; what it is made with (attrs) must match what it was made with."""
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, direction="minimize", sampler=sampler, pruner=pruner, load_if_exists=True
        )
    except Exception as e:
        raise BadInput(f"study {name} cannot be opened ({redact(first_line(e))}): check --storage") from None
    made = study.user_attrs.get(MADE_WITH_ATTR)
    if made is None:  # one attribute, one write: a concurrent worker never sees half of them
        study.set_user_attr(MADE_WITH_ATTR, attrs)
        return study
    if made.get("space") != attrs.get("space"):  # a setting no flag can match: say what to do instead
        raise BadInput(
            f"study {name} was drawn by an older isotune, whose split parameters mean other splits: "
            "give a new --study-name or --storage to start afresh"
        )
    diff = [f"{k} {made.get(k)!r} (now {v!r})" for k, v in attrs.items() if made.get(k) != v]
    if diff:
        raise BadInput(
            f"study {name} in this storage was made with {', '.join(diff)}: "
            "use the same flags to resume, or another --study-name/--storage"
        )
    return study


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_space() -> str | None:
    """This process's pid namespace ('pid:[4026531836]'), None off Linux. Containers that share a
    hostname (host networking, common for GPU boxes) each have their own: a pid seen in another
    is not a process here."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _started(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, /proc/PID/stat field 22), None where
    that cannot be read: a pid reused by a new process has another start."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])  # fields after the command name start at 3
    except (OSError, IndexError, ValueError):
        return None


def beat_mark(n: int) -> dict:
    """Beat n of this worker: its count, its period (workers may run with other periods), and
    what tells its process apart on its host (pid namespace, start time)."""
    return {"n": n, "every_s": TRIAL_BEAT_S, "pid_space": _pid_space(), "started": _started(os.getpid())}


# (study, trial id[, claimant]) -> (the beat count last seen, when it changed, on this host's
# clock): a remote worker's silence is timed here, so hosts' clocks need not agree
_SEEN: dict[tuple, tuple[int, float]] = {}


def fail_stale(study: optuna.Study) -> list[str]:
    """Mark FAIL the running trials whose worker is gone: on this host (and in this pid space),
    its process has ended or its pid now names a process started later; on another, its beat
    count has not moved for STALE_BEATS of its beats. A trial taken from
    the queue by a worker that died before naming itself is judged by its claimants (claim()):
    gone when every one is. With no worker recorded at all (an older isotune's, killed inside
    ask()), STALE_BEATS beats of wall clock after it started. Returns a line per trial failed,
    saying why. Until then a running trial holds its slot of the budget, so a dead worker's
    would hold it for good."""
    host, now, out = socket.gethostname(), time.monotonic(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        key, attrs = (study.study_name, t._trial_id), t.user_attrs  # noqa: SLF001
        claims = _claims(attrs)
        if OWNER_ATTR in attrs:
            why = _gone(key, str(attrs[OWNER_ATTR]), attrs.get(BEAT_ATTR), host, now)
        elif claims:  # taken, not yet named: dead only if whoever may have taken it is
            whys = [_gone((*key, who), who, beat, host, now) for who, beat in claims.items()]
            why = None if None in whys else "; ".join(whys)
        else:  # the writer's local time (naive): right unless worker hosts are set to other zones
            started = t.datetime_start.astimezone() if t.datetime_start else datetime.now().astimezone()
            ran = (datetime.now().astimezone() - started).total_seconds()
            why = f"it has run {ran:.0f} s with no worker recorded" if ran > STALE_BEATS * TRIAL_BEAT_S else None
        if why is not None and fail_trial(study, t._trial_id):  # noqa: SLF001
            out.append(f"trial {t.number} failed: {why}; its slot goes to a new trial")
    return out


def _claims(attrs: dict) -> dict:
    """A trial's live claims (claim()): worker "host:pid" -> its beat mark; withdrawn ones left out."""
    return {k.removeprefix(CLAIM_PREFIX): v for k, v in attrs.items() if k.startswith(CLAIM_PREFIX) and v}


def _gone(key: tuple, who: str, beat, host: str, now: float) -> str | None:
    """Why worker `who` ("host:pid") is known dead, or None while it may be alive."""
    name, _, pid = who.rpartition(":")
    mark, here = beat if isinstance(beat, dict) else {}, _pid_space()
    if name == host and pid.isdigit() and mark.get("pid_space", here) == here:
        # here the process table is the truth, not the beat (an older isotune's beat names no space)
        started = mark.get("started")
        if _alive(int(pid)) and (started is None or _started(int(pid)) in (None, started)):
            return None
        return f"its worker (pid {pid} here) is gone"
    if not isinstance(beat, dict):  # no beat (an older isotune's worker): cannot tell
        return None
    n = int(beat["n"])
    if _SEEN.get(key, (None,))[0] != n:  # a remote worker's silence is timed on this host's clock
        _SEEN[key] = (n, now)
        return None
    silent, every = now - _SEEN[key][1], float(beat["every_s"])
    if silent <= STALE_BEATS * every:
        return None
    return f"its worker ({who}) has not beaten for {silent:.0f} s (every {every:g} s while alive)"


def claim(study: optuna.Study) -> optuna.Trial:
    """study.ask(), except that a trial is never RUNNING in the storage with no worker named:
    ask() makes a trial RUNNING in one write and the owner took another, and a worker SIGKILLed
    between the two left a trial no one could tell was dead, holding its slot of the budget for
    good. A queued (WAITING) trial gets this worker's own claim key before the compare-and-set
    that takes it (a worker that loses the race withdraws its key, and never writes over the
    winner's name); the owner is written last. A new trial is written with its owner. Ctrl-C
    while taking a trial fails it, even inside a write that landed before the interrupt."""
    storage, me, first = study._storage, owner(), beat_mark(0)  # noqa: SLF001
    study._thread_local.cached_all_trials = None  # noqa: SLF001 - as ask() does: samplers see the storage afresh
    taken = trying = None
    try:
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            try:
                storage.set_trial_user_attr(t._trial_id, CLAIM_PREFIX + me, first)  # noqa: SLF001
                trying = t._trial_id  # noqa: SLF001
                if storage.set_trial_state_values(trying, TrialState.RUNNING):
                    taken = trying
                    break
                trying = None
                storage.set_trial_user_attr(t._trial_id, CLAIM_PREFIX + me, None)  # noqa: SLF001 - lost the race
            except UpdateFinishedTrialError:
                trying = None
                continue
        if taken is None:
            template = FrozenTrial(
                number=-1, trial_id=-1, state=TrialState.RUNNING, value=None, values=None,
                datetime_start=datetime.now(), datetime_complete=None, params={}, distributions={},
                user_attrs={BEAT_ATTR: first, OWNER_ATTR: me}, system_attrs={}, intermediate_values={},
            )  # fmt: skip
            taken = storage.create_new_trial(study._study_id, template_trial=template)  # noqa: SLF001
        else:
            storage.set_trial_user_attr(taken, BEAT_ATTR, first)
            storage.set_trial_user_attr(taken, OWNER_ATTR, me)  # last: until it lands the claim names this worker
        return optuna.Trial(study, taken)
    except BaseException:  # Ctrl-C while taking it: the trial is this worker's to fail
        if taken is None:  # interrupted inside a write that may have landed: whose trial is it?
            taken = _interrupted_take(study, me, trying)
        if taken is not None:
            fail_trial(study, taken)
        raise


def _interrupted_take(study: optuna.Study, me: str, trying: int | None) -> int | None:
    """The trial an interrupted claim() may have taken: one of its compare-and-set (RUNNING, no
    owner, no claim but this worker's) or a new trial written in this worker's name."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = t.user_attrs
        if t._trial_id == trying and OWNER_ATTR not in attrs and set(_claims(attrs)) == {me}:  # noqa: SLF001
            return trying
        if trying is None and attrs.get(OWNER_ATTR) == me:
            return t._trial_id  # noqa: SLF001
    return None


def fail_trial(study: optuna.Study, trial_id: int) -> bool:
    """FAIL a running trial; False if it had finished meanwhile (told, or failed by another worker)."""
    try:
        study._storage.set_trial_state_values(trial_id, TrialState.FAIL)  # noqa: SLF001 - no public API
    except UpdateFinishedTrialError:
        return False
    return True


def stamp(trial: optuna.Trial, n: int) -> None:
    """Beat n of the trial's worker, with its period (workers may be started with other periods)."""
    trial.set_user_attr(BEAT_ATTR, beat_mark(n))


class TrialBeat(Heartbeat):
    """While a trial is measured, its worker stamps it every TRIAL_BEAT_S (beat 0 is stamped as
    the trial is claimed), so workers on other hosts can tell a long trial from one whose worker
    died. A context manager: no stamp lands after it exits."""

    def __init__(self, trial: optuna.Trial):
        def beat(n: int) -> None:
            try:
                stamp(trial, n)
            except UpdateFinishedTrialError:  # another worker failed it: nothing left to stamp
                raise Flatline from None

        super().__init__(beat, TRIAL_BEAT_S)


FREE_ATTRS = ("reused", "infeasible")  # trials that cost no measurement


def counts(study: optuna.Study, trials: list | None = None) -> Counter:
    """Trials by state, plus "spent": finished trials that measured something (a draw that
    repeats an earlier split or is no valid split costs nothing, so it does not use up budget)."""
    n: Counter = Counter()
    for t in study.get_trials(deepcopy=False) if trials is None else trials:
        n[t.state] += 1
        if t.state in FINISHED and not any(t.user_attrs.get(a) for a in FREE_ATTRS):
            n["spent"] += 1
    return n


def validation_key(variants: dict, repeats: int) -> dict:
    """What a validation measured, as the storage gives it back (JSON: tuples become lists)."""
    return json.loads(json.dumps({"variants": variants, "repeats": repeats}))


def stored_validation(study: optuna.Study, key: dict) -> dict[str, list[float]] | None:
    """The per-repeat times the study stored for a validation of exactly `key`, or None."""
    got = study.user_attrs.get(VALIDATION_ATTR)
    return got["times"] if isinstance(got, dict) and got.get("key") == key else None


def store_validation(study: optuna.Study, key: dict, times: dict[str, list[float]]) -> None:
    """Kept with the study, so a finished search run again (the plan lost, a flag of the plan's
    changed) decides from these rounds instead of measuring them again."""
    study.set_user_attr(VALIDATION_ATTR, {"key": key, "times": times})
