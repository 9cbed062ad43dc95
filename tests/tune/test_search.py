"""`isotune search` end to end: model and measured objectives, resuming, concurrent workers on one
storage, SIGINT/SIGKILL mid-search, and `run`/`bench`/`show` with the plan it writes."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from types import SimpleNamespace

import optuna
import pytest
import torch
from conftest import CLI, ROOT
from fixtures.postgres import server_bin, throwaway_cluster
from optuna.trial import TrialState

from isotune.cli import main
from isotune.commands.run.command import prepare_run
from isotune.core.chunking import chunk_bounds
from isotune.core.cost import simulate
from isotune.core.decide import MODEL_TIE
from isotune.core.plan import load_plan, save_plan
from isotune.core.profile import load_profile
from isotune.core.spec import load_spec
from isotune.core.target import TargetFlags
from isotune.tune import search as search_mod
from isotune.tune import studies
from isotune.tune import trials as trials_mod
from isotune.tune.storage import open_storage
from isotune.tune.studies import counts

# the search module silences this warning of TPE's `group`; pytest would show it again
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

PROFILE = str(ROOT / "profiles" / "small-l2-tp2-bf16-cpu-gloo-shaped1gbit.yaml")


def _study(storage: str, name: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=open_storage(storage))
    except KeyError:  # not created yet
        return None


def _states(study: optuna.Study | None) -> Counter:
    return Counter(t.state for t in study.get_trials(deepcopy=False)) if study else Counter()


def test_model_objective_plans_from_a_profile_and_resumes(tmp_path, capsys):
    """The cost model runs in this process: no ranks, so no subprocess either."""
    out = tmp_path / "plan.yaml"
    args = ["search", "--objective", "model", "--profile", PROFILE, "--seq-lens", "512,2048", "--trials", "12"]
    assert main([*args, "-o", str(out)]) == 0, capsys.readouterr().err
    plan = load_plan(out)
    assert plan.model["fingerprint"] == load_spec("small", 2).fingerprint() and plan.topology["tp"] == 2
    assert [(b.min_tokens, b.max_tokens) for b in plan.buckets] == [(1, 1280), (1281, 2048)]
    prof = load_profile(PROFILE)
    storage = f"journal:{tmp_path / 'plan.study.log'}"
    for b in plan.buckets:  # plan_ms is the model's prediction of the kept split, never worse than unsplit
        assert simulate(prof, chunk_bounds(b.seq_len, b.ratios, plan.align)) == pytest.approx(b.plan_ms, abs=1e-3)
        assert b.plan_ms <= b.baseline_ms
        # and as good as the study's best split, but for a simpler tie (validation gets the best ones)
        best = _study(storage, f"isotune-small-L2-tp2-bfloat16-cpu-model-s{b.seq_len}").best_value
        assert b.chunks == 1 or b.plan_ms <= best * (1 + MODEL_TIE), (b.plan_ms, best)
    assert plan.buckets[1].chunks > 1  # the profile's 1 gbit link: splitting 2048 tokens pays
    name = "isotune-small-L2-tp2-bfloat16-cpu-model-s2048"
    assert counts(_study(storage, name))["spent"] == 12  # measured splits; repeated draws cost nothing
    # the same command again resumes the finished studies: no new trials, the same plan
    before = len(_study(storage, name).trials)
    assert main([*args, "-o", str(out)]) == 0
    assert len(_study(storage, name).trials) == before and load_plan(out) == plan
    capsys.readouterr()
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "1281..2048" in shown and "model objective" in shown


def test_a_study_that_stops_early_says_why(tmp_path, capsys):
    out = tmp_path / "plan.yaml"
    # 32 tokens at align 16 hold two splits only: the sampler converges long before 10 trials
    assert main([
        "search", "--objective", "model", "--profile", PROFILE, "--seq-lens", "32,2048", "--trials", "10",
        "--max-chunks", "2", "--time-budget", "1000", "-o", str(out),
    ]) == 0  # fmt: skip
    said = " ".join(capsys.readouterr().out.split())
    plan = load_plan(out)
    short, long = plan.buckets
    assert short.trials == 2 and short.stopped.startswith("stopped after 2 of 10 trials: the sampler converged")
    assert f"32 tokens: study {short.stopped}" in said
    assert long.stopped == "measured its 10 trials"
    assert all(b.decision for b in plan.buckets) and plan.study["time_budget_s"] == 1000
    assert main(["show", str(out)]) == 0
    assert "32 tokens: study stopped after 2 of 10 trials" in " ".join(capsys.readouterr().out.split())


def test_a_time_budget_is_shared_out_and_stops_each_study(tmp_path, monkeypatch, capsys):
    """--time-budget: each length gets an even share of what is left, and its study stops once
    that is spent. The clock is the test's: it moves 2 s whenever a trial is taken, and not
    otherwise, so how many trials fit is known exactly. 10 s for 2 lengths: 128 tokens may end
    at 5 s, takes trials at 0, 2 and 4 and stops at 6; 256 tokens gets the 4 s left, taking
    trials at 6 and 8. The tp 1 search runs its one rank in this process."""
    now = [0.0]
    clock = SimpleNamespace(monotonic=lambda: now[0])
    monkeypatch.setattr(search_mod, "time", clock)
    monkeypatch.setattr(trials_mod, "time", clock)
    real_claim = studies.claim

    def claim(study):
        now[0] += 2.0
        return real_claim(study)

    monkeypatch.setattr(studies, "claim", claim)
    threads, on_term = torch.get_num_threads(), signal.getsignal(signal.SIGTERM)
    try:
        code = main([
            "search", "--model", "tiny", "--tp", "1", "--seq-lens", "128,256", "--trials", "50", "--repeats", "2",
            "--time-budget", "10", "-o", str(tmp_path / "budget.yaml"),
        ])  # fmt: skip
    finally:  # what the rank set for itself, put back for the tests after this one
        torch.set_num_threads(threads)
        signal.signal(signal.SIGTERM, on_term)
    said = " ".join(capsys.readouterr().out.split())
    assert code == 0
    storage = f"journal:{tmp_path / 'budget.study.log'}"
    for b, taken in zip(load_plan(tmp_path / "budget.yaml").buckets, (3, 2), strict=True):
        study = _study(storage, f"isotune-tiny-L2-tp1-bfloat16-cpu-measured-s{b.seq_len}")
        assert len(study.trials) == taken, (b.seq_len, len(study.trials))
        spent = counts(study)["spent"]
        assert (
            b.trials == spent and b.stopped == f"stopped after {spent} of 50 trials: its share of --time-budget ran out"
        )
        # tp 1 has no all-reduce: the comm-only prefill's bookkeeping is not called one
        assert b.decision.endswith("one rank: no all-reduce for a split to hide") and b.comm_ms == 0
    assert "why: one rank, so no all-reduces" in said


@pytest.mark.slow
def test_measured_search_and_run_with_the_plan(tmp_path, cli, cli_here, capsys):
    out = tmp_path / "plan.yaml"
    r = cli(
        "search", "--model", "tiny", "--tp", "2", "--seq-lens", "128,256", "--trials", "6", "--repeats", "2",
        "--max-chunks", "3", "--dtype", "float32", "-o", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    plan = load_plan(out)
    assert plan.topology["backend"] == "gloo" and [b.seq_len for b in plan.buckets] == [128, 256]
    study = _study(f"journal:{tmp_path / 'plan.study.log'}", "isotune-tiny-L2-tp2-float32-cpu-measured-s256")
    trials = study.get_trials(deepcopy=False)
    states = _states(study)
    assert counts(study)["spent"] == 6 and not states[TrialState.RUNNING]
    seeded = [t.user_attrs["bounds"] for t in trials if t.user_attrs.get("seed") == "seed"]
    assert seeded[:2] == [[0, 256], [0, 128, 256]]  # the baseline and 50/50 come first
    for b in plan.buckets:  # every bucket says why, in the plan and on the screen
        assert b.decision.startswith("kept ") and "all-reduces are" in b.decision, b.decision
        assert f"{b.seq_len} tokens: {b.decision}" in " ".join(r.stdout.split())
        assert b.stopped == "measured its 6 trials" and b.repeats >= 4
        assert b.compute_ms > 0 and b.comm_ms > 0
        assert (b.chunks > 1) == (b.vs_baseline is not None)
        if b.chunks > 1:  # a split is kept only when its whole 95% interval is a saving
            assert b.outcome == "kept" and b.vs_baseline[2] < 0, (b.outcome, b.vs_baseline)
        else:
            assert b.outcome != "kept"
    assert "search's best" in r.stdout

    # the same command again, both streams into one pipe as `2>&1 | tee` makes them: the finished
    # studies are resumed, their stored validation reused and said, each line in the order it was
    # said (a length's progress line, then its decision; 128 before 256)
    cmd = [sys.executable, CLI, "search", "--model", "tiny", "--tp", "2", "--seq-lens", "128,256", "--trials", "6",
           "--repeats", "2", "--max-chunks", "3", "--dtype", "float32", "-o", str(out)]  # fmt: skip
    again = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert again.returncode == 0, again.stdout
    said = [line for line in again.stdout.splitlines() if line.startswith(("128 tokens", "256 tokens"))]
    for s, b in zip((128, 256), plan.buckets, strict=True):
        mine = [i for i, line in enumerate(said) if line.startswith(f"{s} tokens")]
        kinds = [said[i].split(":")[1].split()[0] for i in mine]
        assert kinds[0] == "resuming" and kinds[-1] == "kept", said
        assert "validation" in kinds and kinds.index("validation") < len(kinds) - 1, said
        assert (
            f"{s} tokens: validation reused: the {b.repeats} rounds this study stored"
            in said[mine[kinds.index("validation")]]
        )
    assert max(i for i, line in enumerate(said) if line.startswith("128")) < min(
        i for i, line in enumerate(said) if line.startswith("256")
    ), said
    assert [b.decision for b in load_plan(out).buckets] == [b.decision for b in plan.buckets]
    one = [a if a != "128,256" else "128" for a in cmd]  # one length shows it, at half the cost
    fresh = subprocess.run([*one, "--revalidate"], capture_output=True, text=True)
    assert fresh.returncode == 0 and "validation reused" not in fresh.stdout + fresh.stderr, fresh.stderr
    assert "128 tokens: resuming" in fresh.stdout + fresh.stderr
    save_plan(plan, out)  # the first search's plan, for what follows

    # a 3-way split in the 193..256 bucket: run with the plan gives the unsplit run's tokens
    plan.buckets[1].chunks, plan.buckets[1].ratios = 3, [0.5, 0.25, 0.25]
    save_plan(plan, out)
    j_plan, j_base = tmp_path / "plan.json", tmp_path / "base.json"
    common = ("--model", "tiny", "--tp", "2", "--seq-len", "200", "--max-new-tokens", "6", "--dtype", "float32")
    assert cli("run", *common, "--plan", str(out), "--json", str(j_plan)).returncode == 0
    assert cli("run", *common, "--chunks", "1", "--json", str(j_base)).returncode == 0
    with_plan, base = json.loads(j_plan.read_text()), json.loads(j_base.read_text())
    assert with_plan["plan_bucket"] == "193..256" and len(with_plan["chunk_tokens"]) == 3
    assert with_plan["generated_ids"] == base["generated_ids"]

    j_bench = tmp_path / "bench.json"
    # two plans side by side: one record per plan and length, sharing the baseline measured beside them
    other = tmp_path / "other.yaml"
    plan.buckets[1].chunks, plan.buckets[1].ratios = 2, [0.25, 0.75]
    save_plan(plan, other)
    r = cli(
        "bench", "--model", "tiny", "--tp", "2", "--seq-lens", "128,256", "--plan", str(out),
        "--plan", str(other), "--json", str(j_bench), "--dtype", "float32",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    recs = json.loads(j_bench.read_text())
    assert [(rec["seq_len"], rec["plan_ratios"]) for rec in recs if rec["seq_len"] == 256] == [
        (256, [0.5, 0.25, 0.25]),
        (256, [0.25, 0.75]),
    ]
    assert recs[2]["baseline_ms"] == recs[3]["baseline_ms"] and recs[2]["plan_ms"] != recs[3]["plan_ms"]
    assert recs[0]["plan_chunks"] == plan.buckets[0].chunks

    # a plan for tp 2 is refused at tp 1, and used with a warning under --force
    r = cli_here("run", "--model", "tiny", "--tp", "1", "--seq-len", "200", "--plan", str(out))
    assert r.returncode == 2 and "--force" in r.stderr and "Traceback" not in r.stderr
    r = cli_here("run", "--model", "tiny", "--tp", "1", "--seq-len", "200", "--plan", str(out), "--force")
    assert r.returncode == 0 and "warning: the plan was made for tp 2" in r.stderr
    # past the last bucket its split is reused, with a warning (said before any rank starts)
    job, _ = prepare_run(target=TargetFlags(model="tiny", tp="2", dtype="float32"), seq_len=400, plan_path=str(out))
    assert [(r.bucket, r.ratios) for r in job.requests] == [("193..256", [0.5, 0.25, 0.25])]
    assert "warning: 400 tokens is above the plan's last bucket (..256)" in capsys.readouterr().err
    # and in another dtype than it was searched in (bfloat16, the default for presets)
    r = cli_here("run", "--model", "tiny", "--tp", "2", "--seq-len", "200", "--plan", str(out))
    assert r.returncode == 2 and "made for dtype float32, not bfloat16" in r.stderr


def _search_cmd(out, *extra) -> list[str]:
    return [
        sys.executable, CLI, "search", "--model", "small", "--layers", "1", "--seq-lens", "512",
        "--repeats", "4", "-o", str(out), *extra,
    ]  # fmt: skip


def _wait_for(pred, timeout=120.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        assert proc is None or proc.poll() is None, "the search ended before the condition held"
        time.sleep(0.2)
    raise AssertionError("timed out")


@pytest.fixture(params=["journal", "postgresql"])
def shared_storage(request, tmp_path):
    """A storage two workers share: a journal file, or a real PostgreSQL server (a throwaway
    cluster; the URL is the plain postgresql:// a user would write)."""
    if request.param == "journal":
        yield f"journal:{tmp_path / 'shared.log'}"
        return
    if server_bin() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
    with throwaway_cluster() as url:
        yield url


@pytest.mark.slow
def test_two_workers_on_one_storage_share_the_study(tmp_path, shared_storage):
    storage = shared_storage
    args = ("--tp", "1", "--trials", "16", "--storage", storage, "--study-name", "shared")
    first = subprocess.Popen(_search_cmd(tmp_path / "a.yaml", *args), stderr=subprocess.PIPE, text=True)
    # the second worker joins once the first has finished a trial, so both surely take part
    _wait_for(lambda: _states(_study(storage, "shared-s512"))[TrialState.COMPLETE] >= 1, proc=first)
    second = subprocess.Popen(_search_cmd(tmp_path / "b.yaml", *args), stderr=subprocess.PIPE, text=True)
    assert second.wait(300) == 0, second.stderr.read()
    assert first.wait(300) == 0, first.stderr.read()
    study = _study(storage, "shared-s512")
    finished = [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    by_worker = Counter(t.user_attrs["owner"] for t in finished)
    assert len(by_worker) == 2 and sum(by_worker.values()) == len(finished)
    assert 16 <= counts(study)["spent"] <= 17  # two workers may both take the last slot at the same instant
    assert not _states(study)[TrialState.RUNNING] and not _states(study)[TrialState.FAIL]
    assert load_plan(tmp_path / "a.yaml").buckets and load_plan(tmp_path / "b.yaml").buckets


@pytest.mark.slow
def test_interrupted_searches_keep_their_trials_and_resume(tmp_path):
    out = tmp_path / "plan.yaml"
    out.write_text("old plan\n")  # an interrupted search must leave this file alone
    cmd = _search_cmd(out, "--tp", "2", "--trials", "10")
    storage, name = f"journal:{tmp_path / 'plan.study.log'}", "isotune-small-L1-tp2-bfloat16-cpu-measured-s512"

    def complete() -> int:
        return _states(_study(storage, name))[TrialState.COMPLETE]

    # Ctrl-C (SIGINT to the process group): exit 130, the running trial FAILs, a hint how to resume
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_for(lambda: complete() >= 2, proc=p)
    os.killpg(p.pid, signal.SIGINT)
    assert p.wait(60) == 130
    err = p.stderr.read()
    assert "rerun the same command to resume" in err and "Traceback" not in err
    states = _states(_study(storage, name))
    assert states[TrialState.COMPLETE] >= 2 and not states[TrialState.RUNNING]
    kept, failed = complete(), states[TrialState.FAIL]  # 0 failed if Ctrl-C fell between trials

    # SIGKILL of everything: nothing can clean up; the rerun fails the orphaned trial itself
    p = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, start_new_session=True)
    _wait_for(lambda: complete() > kept, proc=p)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(60)
    orphans = _states(_study(storage, name))[TrialState.RUNNING]  # 0 if the kill fell between trials
    assert out.read_text() == "old plan\n"

    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stdout.split())
    assert f"512 tokens: resuming study {name}: " in said and " trials already measured, " in said
    study = _study(storage, name)
    states = _states(study)
    assert counts(study)["spent"] == 10 and not states[TrialState.RUNNING]
    assert states[TrialState.FAIL] == failed + orphans  # the rerun failed the orphan, and nothing else
    assert load_plan(out).buckets[0].seq_len == 512


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--objective", "model"], "needs --profile"),
        (["--objective", "magic"], "unknown"),
        (["--sampler", "cmaes"], "unknown"),
        (["--max-chunks", "9"], "out of range"),
        (["--trials", "0"], "--trials 0: use 1 or more"),
        (["--storage", "nonsense"], "not a storage URL"),
        (["--storage", "journal:/no/such/dir/s.log"], "does not exist"),
        (["--storage", "sqlite:////no/such/dir/s.db"], "cannot be opened"),
        (["--storage", "postgresql+pg8000://u@127.0.0.1:9/db"], "pip install 'isotune[postgres]'"),
        (["--seq-lens", "8"], "shorter than the 16-token alignment"),
        (["--seq-lens", "99999"], "exceeds"),
        (["--profile", PROFILE], "measured on 'small'"),
        (["--profile", "/no/profile.yaml"], "does not exist"),
    ],
)
def test_bad_search_input(tmp_path, args, needle, capsys):
    assert main(["search", "--model", "tiny", "-o", str(tmp_path / "p.yaml"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "p.yaml").exists()


def test_a_study_is_resumed_only_with_its_own_settings(tmp_path, capsys):
    args = ["search", "--objective", "model", "--profile", PROFILE, "--seq-lens", "512", "--trials", "3"]
    assert main([*args, "--max-chunks", "2", "-o", str(tmp_path / "p.yaml")]) == 0
    capsys.readouterr()
    assert main([*args, "--max-chunks", "3", "-o", str(tmp_path / "p.yaml")]) == 2
    err = capsys.readouterr().err
    assert "made with max_chunks 2 (now 3)" in err and "--study-name" in err


def test_plan_and_explicit_split_are_exclusive(tmp_path, capsys):
    assert main(["run", "--plan", "x.yaml", "--chunks", "2"]) == 2
    assert "not both" in capsys.readouterr().err
