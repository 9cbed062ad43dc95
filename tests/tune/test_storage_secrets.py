"""A database password never reaches a plan, a line isotune prints, an error or the study: a real
search on a PostgreSQL server that asks for one (scram-sha-256), with the password in the URL,
in PGPASSWORD, in a pgpass file and in ISOTUNE_STORAGE; a wrong password, a missing database and
no server are one line each, exit 2, nothing written; a plan's redacted URL given back says where
the password goes instead of logging in with ***."""

import json
import os
import signal
import subprocess
from pathlib import Path
from urllib.parse import quote

import optuna
import pytest
import torch
from fixtures.postgres import _free_port, server_bin, throwaway_cluster

from isotune.cli import main
from isotune.core.credentials import redact, without_password
from isotune.core.plan import load_plan
from isotune.tune.storage import ENV_STORAGE, open_storage, storage_url

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

# distinctive, so a hit is a leak and nothing else; '/' and '@' must be percent-encoded in a URL
PASSWORD = "s3cret/Pw@7x"
FORMS = (PASSWORD, quote(PASSWORD, safe=""), "s3cret")  # as given, as in the URL, its stem
SEARCH = ["search", "--model", "tiny", "--tp", "1", "--seq-lens", "128", "--trials", "2", "--repeats", "1"]


@pytest.fixture(autouse=True)
def _no_password_from_outside(monkeypatch, tmp_path):
    """Only what a test gives: no ISOTUNE_STORAGE, PGPASSWORD or ~/.pgpass of this machine's."""
    for name in (ENV_STORAGE, "PGPASSWORD", "PGCONNECT_TIMEOUT", "FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path.parent / "no-such-pgpass"))


@pytest.fixture(scope="module")
def pg():
    """The URL, password included, of a throwaway cluster that asks every TCP login for it."""
    if server_bin() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
    with throwaway_cluster(password=PASSWORD) as url:
        assert quote(PASSWORD, safe="") in url
        yield url


def _run(capsys, *args: str) -> tuple[int, str, str]:
    """`isotune ARGS` in this process (a tp 1 search runs its rank here): exit code, stdout, stderr."""
    capsys.readouterr()
    threads, on_term = torch.get_num_threads(), signal.getsignal(signal.SIGTERM)
    try:
        code = main(list(args))
    finally:  # what the rank set for itself, put back for the tests after this one
        torch.set_num_threads(threads)
        signal.signal(signal.SIGTERM, on_term)
    out = capsys.readouterr()
    return code, out.out, out.err


def _leaks(text: str) -> list[str]:
    return [f for f in FORMS if f in text]


def _files(folder: Path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in sorted(folder.rglob("*")) if p.is_file())


def _stored(url: str) -> str:
    """Everything isotune wrote into the studies, as optuna reads it back: names, the study's and
    every trial's user and system attributes."""
    storage = open_storage(url)
    seen = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        study_id = storage.get_study_id_from_name(study.study_name)  # optuna 5 has no Study.system_attrs
        seen += [study.study_name, study.user_attrs, storage.get_study_system_attrs(study_id)]
        seen += [(t.params, t.user_attrs, t.system_attrs) for t in study.get_trials(deepcopy=False)]
    assert seen, "no studies were written"
    return json.dumps(seen, default=str)


def _dump(url: str) -> str:
    """The whole database as pg_dump writes it (the password given as libpq reads it)."""
    env = {**os.environ, "PGPASSWORD": PASSWORD}
    r = subprocess.run(
        [str(server_bin() / "pg_dump"), without_password(url)], capture_output=True, text=True, env=env, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert "trial" in r.stdout
    return r.stdout


def _one_line_error(code: int, out: str, err: str, needle: str) -> str:
    assert code == 2, (out, err)
    line = err.strip()
    assert len(line.splitlines()) == 1 and line.startswith("error: ") and "Traceback" not in line, err
    assert needle in line, line
    assert not _leaks(out + err), err
    return line


def test_a_password_in_the_url_is_never_written_or_said(pg, tmp_path, capsys, monkeypatch):
    shown = redact(pg)
    assert shown.startswith("postgresql://isotune:***@127.0.0.1:") and shown.endswith("/postgres")
    plan_path = tmp_path / "plan.yaml"
    code, out, err = _run(capsys, *SEARCH, "--storage", pg, "-o", str(plan_path))
    assert code == 0, err
    said = out + err
    assert shown in " ".join(said.split())  # the progress names the storage, redacted
    plan = load_plan(plan_path)
    assert plan.study["storage"] == shown
    # show: the plan, and the studies by their real URL
    code, shown_plan, e1 = _run(capsys, "show", str(plan_path))
    assert code == 0, e1
    code, shown_studies, e2 = _run(capsys, "show", pg)
    assert code == 0 and "s128" in shown_studies and shown in " ".join(shown_studies.split()), e2
    said += shown_plan + e1 + shown_studies + e2
    # every byte: the printed lines, every file written, what the studies hold, the whole database
    assert _leaks(said) == [], said
    assert _leaks(_files(tmp_path)) == []
    assert _leaks(_stored(pg)) == []
    assert _leaks(_dump(pg)) == []

    # the plan's URL given back: one line saying where the password goes, not a login with ***
    for args in ([*SEARCH, "--storage", shown, "-o", str(tmp_path / "again.yaml")], ["show", shown]):
        line = _one_line_error(*_run(capsys, *args), "PGPASSWORD")
        assert without_password(pg) in line and ENV_STORAGE in line and "~/.pgpass" in line
    assert not (tmp_path / "again.yaml").exists()
    # ... and stands for ISOTUNE_STORAGE's URL, where that is the same one
    monkeypatch.setenv(ENV_STORAGE, pg)
    code, listed, err = _run(capsys, "show", shown, "--study", "128")
    assert code == 0 and "trials of " in listed and not _leaks(listed + err), err
    code, out, err = _run(capsys, *SEARCH, "--storage", shown, "-o", str(plan_path))
    assert code == 0 and "resuming study" in out and not _leaks(out + err), err

    # a plan an older isotune wrote, the password in it: show does not repeat it
    plan_path.write_text(plan_path.read_text().replace(shown, pg))
    assert pg in plan_path.read_text()
    code, out, err = _run(capsys, "show", str(plan_path))
    assert code == 0 and shown in " ".join(out.split()) and not _leaks(out + err), err


def test_the_password_from_pgpassword_pgpass_or_isotune_storage(pg, tmp_path, capsys, monkeypatch):
    bare = without_password(pg)
    assert ":" not in bare.split("//")[1].split("@")[0]
    # no password anywhere: the server asks for one, and the line says where to give it
    line = _one_line_error(*_run(capsys, *SEARCH, "--storage", bare, "-o", str(tmp_path / "p.yaml")), "PGPASSWORD")
    assert bare in line and "no password supplied" in line
    assert list(tmp_path.iterdir()) == []
    # libpq's PGPASSWORD
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    code, out, err = _run(capsys, *SEARCH, "--storage", bare, "-o", str(tmp_path / "env.yaml"), "--study-name", "env")
    assert code == 0 and not _leaks(out + err), err
    assert load_plan(tmp_path / "env.yaml").study["storage"] == bare
    monkeypatch.delenv("PGPASSWORD")
    # libpq's password file (~/.pgpass, here where PGPASSFILE says)
    port = bare.split(":")[-1].split("/")[0]
    pgpass = tmp_path.parent / f"pgpass-{tmp_path.name}"
    pgpass.write_text(f"127.0.0.1:{port}:*:isotune:{PASSWORD}\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    code, out, err = _run(capsys, *SEARCH, "--storage", bare, "-o", str(tmp_path / "pass.yaml"), "--study-name", "pp")
    pgpass.unlink()
    assert code == 0 and not _leaks(out + err), err
    monkeypatch.setenv("PGPASSFILE", str(tmp_path.parent / "no-such-pgpass"))
    # the whole URL in ISOTUNE_STORAGE, no --storage: the plan records it redacted
    monkeypatch.setenv(ENV_STORAGE, pg)
    code, out, err = _run(capsys, *SEARCH, "-o", str(tmp_path / "iso.yaml"), "--study-name", "iso")
    assert code == 0 and not _leaks(out + err), err
    assert load_plan(tmp_path / "iso.yaml").study["storage"] == redact(pg)
    assert not (tmp_path / "iso.study.log").exists()  # the studies went to the server
    # --storage wins over ISOTUNE_STORAGE
    monkeypatch.setenv(ENV_STORAGE, "postgresql://nobody:wr0ngPassw0rd@127.0.0.1:1/none")
    code, out, err = _run(capsys, *SEARCH, "--storage", pg, "-o", str(tmp_path / "flag.yaml"), "--study-name", "flag")
    assert code == 0 and not _leaks(out + err) and "wr0ngPassw0rd" not in out + err, err
    names = {s.study_name for s in optuna.get_all_study_summaries(open_storage(pg), include_best_trial=False)}
    assert {"env-s128", "pp-s128", "iso-s128", "flag-s128"} <= names
    assert _leaks(_files(tmp_path)) == [] and _leaks(_stored(pg)) == []


@pytest.mark.parametrize(
    "change,fix",
    [
        (lambda url: url.replace(quote(PASSWORD, safe=""), "wr0ngPassw0rd"), "check the user and the password"),
        (lambda url: url.replace("/postgres", "/nosuchdb"), "create the database"),
    ],
    ids=["wrong password", "missing database"],
)
def test_a_login_that_fails_is_one_line_naming_the_url_redacted(pg, tmp_path, capsys, change, fix):
    url = change(pg)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    line = _one_line_error(*_run(capsys, *SEARCH, "--storage", url, "-o", str(out_dir / "p.yaml")), fix)
    assert redact(url) in line and "wr0ngPassw0rd" not in line
    assert list(out_dir.iterdir()) == []  # no plan, no half-written file


def test_no_server_is_one_line_naming_the_url_redacted(tmp_path, capsys):
    """Needs no server: a port nothing listens on refuses the connection."""
    url = f"postgresql://bob:hunter2hunter@127.0.0.1:{_free_port()}/db"
    line = _one_line_error(*_run(capsys, *SEARCH, "--storage", url, "-o", str(tmp_path / "p.yaml")), "cannot be opened")
    assert redact(url) in line and "hunter2hunter" not in line and "check the host and port" in line
    assert list(tmp_path.iterdir()) == []
    line = _one_line_error(*_run(capsys, "show", url), "cannot be opened")
    assert "hunter2hunter" not in line


@pytest.mark.parametrize(
    "url,where",
    [
        ("postgresql://bob:***@127.0.0.1:1/db", "give postgresql://bob@127.0.0.1:1/db and the password in PGPASSWORD"),
        (
            "postgresql+psycopg2://bob@127.0.0.1:1/db?sslmode=require&password=***",
            "give postgresql+psycopg2://bob@127.0.0.1:1/db?sslmode=require and the password in PGPASSWORD or ~/.pgpass",
        ),
        ("mysql+pymysql://root:***@127.0.0.1:1/db", f"give the whole URL, password included, in {ENV_STORAGE}"),
    ],
)
def test_a_redacted_url_is_never_sent_as_a_password(tmp_path, capsys, url, where):
    """Refused before any connection: no server needed, none is tried (port 1 would refuse)."""
    line = _one_line_error(*_run(capsys, *SEARCH, "--storage", url, "-o", str(tmp_path / "p.yaml")), where)
    assert "holds *** for its password" in line and "cannot be opened" not in line


def test_the_storage_comes_from_the_flag_then_isotune_storage_then_the_default(monkeypatch):
    assert storage_url(None, "journal:p.study.log") == "journal:p.study.log"
    monkeypatch.setenv(ENV_STORAGE, "postgresql://bob:hunter2hunter@h/db")
    assert storage_url(None, "journal:p.study.log") == "postgresql://bob:hunter2hunter@h/db"
    assert storage_url("journal:x.log", "journal:p.study.log") == "journal:x.log"
    # a plan's redacted URL stands for ISOTUNE_STORAGE's when that is the same URL, not another's
    assert storage_url("postgresql://bob:***@h/db") == "postgresql://bob:hunter2hunter@h/db"
    assert storage_url("postgresql://bob:***@other/db") == "postgresql://bob:***@other/db"


def test_a_rank_error_quoting_a_url_is_redacted(capsys):
    from isotune.engine.dist import _report

    assert _report(None, 0, "OperationalError: postgresql://bob:hunter2hunter@h/db went away", 1) == 1
    assert capsys.readouterr().err.strip() == "error: OperationalError: postgresql://bob:***@h/db went away"
