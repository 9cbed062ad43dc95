"""isotune doctor on CPU: it runs what a CPU can (ISO == baseline, chunking overhead, a gloo
profile -> search -> bench), says what it skipped and why, and writes a report."""

import json
import os
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ROOT

from isotune.cli import main
from isotune.core.plan import load_plan


@pytest.mark.slow
def test_doctor_runs_what_a_cpu_can_and_says_what_it_skipped(cli, tmp_path):
    out = tmp_path / "doc"
    # on an emulated link, so the pipeline's ranks have all-reduces worth hiding
    r = cli("doctor", "-o", str(out), "--model", "tiny", "--seq-lens", "128,256", "--repeats", "3", "--link", "1gbit")
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "report.json").read_text())
    by = {c["name"]: c for c in report["checks"]}
    assert by["CUDA tests"]["status"] == "skipped" and "no CUDA GPU" in by["CUDA tests"]["summary"]
    assert by["launch-bound"]["status"] == "skipped" and "CPU ranks" in by["launch-bound"]["summary"]
    assert by["decode: CUDA graphs"]["status"] == "skipped" and "need a GPU" in by["decode: CUDA graphs"]["summary"]
    iso = by["ISO == baseline"]
    assert iso["status"] == "ok" and len(iso["rows"]) == 8 and all(row["ok"] for row in iso["rows"])
    assert [row["dtype"] for row in iso["rows"]] == ["bfloat16"] * 4 + ["float32"] * 4
    assert all(row["err"] <= row["tol"] for row in iso["rows"])
    assert "no --checkpoint given" in iso["summary"]
    overhead = by["chunking overhead"]["rows"]
    assert {(row["seq_len"], row["chunks"]) for row in overhead} == {
        (128, 2),
        (128, 4),
        (128, 8),
        (256, 2),
        (256, 4),
        (256, 8),
    }
    assert all(row["low"] <= row["change"] <= row["high"] for row in overhead)
    assert (out / "chunking.png").read_bytes()[:4] == b"\x89PNG"
    parts = by["chunking: by part"]
    assert parts["status"] == "ok" and [r["part"] for r in parts["rows"]] == [
        "attention kernel",
        "attention, the rest",
        "MLP",
    ]
    assert all(r["unsplit_ms"] > 0 and r["split_ms"] > 0 for r in parts["rows"])
    assert parts["summary"].startswith("layer 0 at 256 tokens, unsplit -> 2 chunks (measured on CPU)")
    pipe = by["profile, search, bench"]
    assert pipe["status"] == "ok" and [row["tokens"] for row in pipe["rows"]] == [128, 256]
    assert pipe["summary"].startswith("tp 2 (gloo, emulated 1gbit), measured, the plan vs baseline: 128: ")
    assert load_plan(out / "plan.yaml").topology["interconnect"] == "emulated 1gbit"
    for row in pipe["rows"]:  # a kept split is said with its interval
        said = (
            "unsplit kept" if row["plan_chunks"] == 1 else f"{row['plan_chunks']} chunks {row['change']:+.1%} (95% CI"
        )
        assert f"{row['tokens']}: {said}" in pipe["summary"], pipe["summary"]
    assert all((out / f).is_file() for f in ("profile.yaml", "plan.yaml", "bench.json", "report.md"))
    md = (out / "report.md").read_text()
    assert "## CUDA tests: skipped" in md and "| check | status | verdict |" in md and "torch" in md
    assert "report.md" in r.stdout and max(len(line) for line in r.stdout.splitlines()) <= 100


def test_doctor_bad_input(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    out = ["-o", str(tmp_path / "doc")]  # a folder that may be made: only the flag under test is wrong
    for args, words in (
        (["-o", str(tmp_path / "f")], "is a file: give a folder"),
        (["-o", str(tmp_path / "no" / "d")], "parent folder does not exist"),
        ([*out, "--repeats", "1"], "intervals need at least 2"),
        ([*out, "--tp", "0"], "--tp '0' must be one TP size, at least 1"),
        ([*out, "--seq-lens", "1k"], "1k"),
        ([*out, "--seq-lens", "64", "--device", "cpu"], "use lengths of 128 or more"),
        ([*out, "--model", "nope"], "nope"),
        ([*out, "--time-limit", "0"], "--time-limit 0: give the seconds doctor may take"),
    ):
        assert main(["doctor", *args]) == 2, args
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # refused before anything was made


def test_the_iso_check_fails_a_split_that_reads_a_wrong_key(monkeypatch):
    """doctor's ISO == baseline check, against an attention that drops the last prefix key of
    every later chunk (a plausible off-by-one): in fp32 it is far outside the 1e-3 limit, and
    the check FAILs; the real attention passes the same check far inside it."""
    from isotune.commands.doctor import measure as checks
    from isotune.commands.doctor.checks import iso
    from isotune.engine import model as model_mod

    m = checks.build("tiny", 2, "float32", 256, "cpu")
    good = checks.iso_equals_baseline(m, 256, 16)
    assert [r["split"] for r in good] == ["0.5/0.5", "0.3/0.7", "0.25/0.25/0.25/0.25", "0.125/" * 7 + "0.125"]
    assert all(r["ok"] and r["max_diff"] < 1e-4 for r in good), good
    real = model_mod.chunk_attention

    def off_by_one(q, k, v, start, end):  # keys start-1 and on, as if the prefix ended one early
        if start == 0 or end - start == 1:
            return real(q, k, v, start, end)
        k, v = k.clone(), v.clone()
        k[:, :, start - 1], v[:, :, start - 1] = 0, 0
        return real(q, k, v, start, end)

    half = checks.build("tiny", 2, "bfloat16", 256, "cpu")
    monkeypatch.setattr(model_mod, "chunk_attention", off_by_one)
    c = iso(lambda: half, "tiny", 2, None, "cpu", 16, [256])
    # in bfloat16 the dropped key moves tiny's logits about as far as rounding does (0.01): that
    # is why the check runs float32 too, where it stands 10x outside the limit
    assert [r["dtype"] for r in c.rows] == ["bfloat16"] * 4 + ["float32"] * 4
    wide = c.rows[4:]
    assert c.status == "FAIL" and not any(r["ok"] for r in wide) and min(r["err"] / r["tol"] for r in wide) > 5, wide
    assert "splits within tolerance" in c.summary and "float32" in c.summary.split("limit:")[1]


def test_a_16_bit_iso_is_held_to_the_float32_logits_not_to_a_fixed_limit():
    """A trained checkpoint's logits reach far past a synthetic preset's, and a bfloat16 prefill
    rounds them by as much as ISO does: both are held against the float32 logits, ISO within twice
    the unsplit prefill's own error. Here the logits are scaled up 64x (a checkpoint's range): the
    same sums, each rounding as far from float32 in ulps, and the check still passes them."""
    import torch

    from isotune.commands.doctor import measure as checks

    wide, half = (checks.build("tiny", 2, dtype, 256, "cpu") for dtype in ("float32", "bfloat16"))
    for m in (wide, half):
        with torch.no_grad():
            m.w.norm.mul_(64)  # (hidden,): logits x64, exactly in both dtypes
    ref = checks.unsplit_logits(wide, 256)
    assert ref.abs().max() > 50
    rows = checks.iso_equals_baseline(half, 256, 16, reference=ref)
    assert all(r["ok"] and 0 < r["err"] <= r["tol"] == 2 * r["base_err"] for r in rows), rows
    assert max(r["max_diff"] for r in rows) > 0.25  # what the old fixed bfloat16 limit failed
    try:
        checks.iso_equals_baseline(half, 256, 16)
    except ValueError as e:
        assert "float32 logits" in str(e)
    else:
        raise AssertionError("a 16-bit check without the float32 reference must refuse")


def test_the_decode_check_times_eager_against_the_static_step_and_keeps_the_tokens():
    """The plumbing of doctor's decode check, on CPU: no graph can be captured here, so the
    'graphed' side is the static step run eagerly, and the rows say so (`graph`, `why`). Both
    decode the same tokens, at a short cache and a full one, with an interval around the change;
    the model's decoder is dropped afterwards."""
    from isotune.commands.doctor import measure as checks

    m = checks.build("tiny", 2, "float32", 256, "cpu")
    rows = checks.decode_speed(m, [64, 224], 32, 3)
    assert [r["cache_tokens"] for r in rows] == [64, 224] and all(r["max_len"] == 256 for r in rows)
    assert all(r["first_diff"] is None and r["eager_tok_s"] > 0 and r["graphed_tok_s"] > 0 for r in rows)
    assert all(r["low"] <= r["change"] <= r["high"] for r in rows)
    assert not rows[0]["graph"] and rows[0]["why"] == "CUDA graphs need a CUDA device" and m.decoder is None


def test_a_prefill_past_the_kv_cache_is_an_error_not_a_silent_empty_write():
    import pytest
    import torch

    from isotune.commands.doctor import measure as checks
    from isotune.engine.executor import prefill

    m = checks.build("tiny", 2, "float32", 64, "cpu")
    with pytest.raises(ValueError, match="do not fit the KV cache of 64"):
        prefill(m, torch.tensor([1, 2]), [0, 2], start_pos=63)


def test_the_launch_check_times_a_layer_per_chunk_count_and_names_where_the_host_leads():
    """The plumbing of doctor's launch-bound check, on CPU (where issuing an op is running it, so
    host and GPU times are one): a row per chunk count that fits the alignment, each with the
    layer's time inside a traced prefill. The summary, from rows shaped like the H200's (the host
    taking 0.42 ms to issue a chunk of a layer, the GPU 1.09 ms unsplit), names the first host-bound count
    and what --compile did to the host's time."""
    from isotune.commands.doctor import measure as checks
    from isotune.commands.doctor.report import launch_summary

    m = checks.build("tiny", 2, "float32", 256, "cpu")
    rows = checks.launch_bound(m, 64, 16)
    assert [r["chunks"] for r in rows] == [1, 2, 4]  # 8 chunks of 8 tokens are under the alignment
    assert all(r["host_ms"] == r["gpu_ms"] > 0 and r["prefill_ms"] > 0 and r["bound"] == "GPU" for r in rows)
    assert checks.layer_kernels(m, 16) is None  # a CPU launches no kernels

    def row(compiled, k, host, gpu):
        return {"compile": compiled, "chunks": k, "kernels": k * (40 if compiled else 60), "host_ms": host} | {
            "gpu_ms": gpu,
            "bound": "unknown" if gpu is None else "host" if host > gpu else "GPU",
        }

    h200 = [row(False, 1, 0.42, 1.09), row(False, 2, 0.93, 0.62), row(False, 4, 1.56, 0.70)]
    fused = [row(True, 1, 1.23, 1.02), row(True, 2, 2.0, None)]
    said = launch_summary(h200 + fused, 1024, recompiled=0)
    assert "the host sets the pace from 2 chunk(s): 0.93 vs 0.62 ms" in said
    assert (
        "2.93x eager's time to issue a layer (40 kernels against 60)" in said and "not separable at 1 point(s)" in said
    )
    assert "recompiled" not in said and "--compile" not in said  # compiled 2 chunks: no GPU time to judge by
    gpu_bound = launch_summary(h200[:1] + fused[:1], 1024, recompiled=3)
    assert gpu_bound.startswith("the GPU sets the pace at 1024 tokens up to 1 chunk(s) (0.42 vs 1.09 ms")
    assert "recompiled 3 time(s)" in gpu_bound
    unknown = [row(False, 1, 0.42, None), row(False, 2, 0.93, None)]
    assert launch_summary(unknown, 1024, 0).startswith("no verdict at 1024 tokens: the GPU's own time could not")
    assert launch_summary([], 64, 0) == "no chunk count fits 64 tokens at this alignment: nothing measured"


@pytest.mark.slow
def test_the_pipeline_runs_at_tp_1_and_says_it_shows_no_win(tmp_path):
    """One GPU gets the pipeline at tp 1 (its CUDA paths run; nothing can overlap). The same
    branch on CPU: the three commands run at tp 1 and the verdict says what it does not show."""
    from isotune.commands.doctor.checks import pipeline

    c = pipeline("tiny", 2, "cpu", 1, [128, 256], tmp_path)
    assert c.status == "ok", c.summary
    assert c.summary.startswith("tp 1 on cpu: one rank has no all-reduce to hide") and len(c.rows) == 2
    assert "tp 1" in (tmp_path / "pipeline.txt").read_text()
    from isotune.core.plan import load_plan, lookup

    plan = load_plan(tmp_path / "plan.yaml")  # the bench ran the plan the search wrote, per length
    assert plan.topology["tp"] == 1 and [r["tokens"] for r in c.rows] == [128, 256]
    assert [r["plan_chunks"] for r in c.rows] == [lookup(plan, r["tokens"])[0].chunks for r in c.rows]


def test_doctor_refuses_a_bad_link_before_any_check(cli_here, tmp_path):
    r = cli_here("doctor", "--device", "cpu", "--link", "nope", "-o", str(tmp_path / "d"))
    assert r.returncode == 2 and "--link 'nope' is not in the catalog" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "d").exists()


# Loaded into every Python process of the step through PYTHONPATH: a spawned rank (a
# multiprocessing child) leaves a file named by its pid, then blocks for good instead of
# running. The step then hangs for certain, with its ranks alive, however fast the machine is.
HANG_RANKS = """
import os

if os.environ.get("ISOTUNE_TEST_HANG_DIR"):
    import multiprocessing.process
    import threading

    def _hang(self):
        open(os.path.join(os.environ["ISOTUNE_TEST_HANG_DIR"], f"rank-{os.getpid()}"), "w").close()
        threading.Event().wait()

    multiprocessing.process.BaseProcess.run = _hang
"""


def _marked(entry: bytes) -> set[int]:
    """The live processes (not this one) whose environment holds `entry` (a zombie's reads empty)."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if entry in env and int(pid) != os.getpid():
            found.add(int(pid))
    return found


@pytest.mark.slow
def test_a_step_past_its_time_limit_is_stopped_with_its_ranks_and_said(tmp_path, monkeypatch):
    """A hung child (a GPU test, a rank) must not take the report with it: past
    ISOTUNE_DOCTOR_STEP_S the step's whole process group, its spawned ranks included, is killed
    and the check FAILs saying so. Here the profile's two ranks hang for good, and the step's
    limit is declared run out once both have started (the wait for the child ends there, as the
    real timeout would): no guess at how long a profile takes."""
    from isotune.commands.doctor import child
    from isotune.commands.doctor.checks import pipeline

    hook, ranks = tmp_path / "hook", tmp_path / "ranks"
    hook.mkdir()
    ranks.mkdir()
    (hook / "sitecustomize.py").write_text(HANG_RANKS)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("ISOTUNE_TEST_HANG_DIR", str(ranks))  # also marks every process of the step
    monkeypatch.setenv("ISOTUNE_DOCTOR_STEP_S", "12")
    entry = f"ISOTUNE_TEST_HANG_DIR={ranks}".encode()
    seen: dict[str, set[int]] = {}

    class LimitOnceRanksRun(subprocess.Popen):
        limited = False

        def communicate(self, input=None, timeout=None):
            if self.limited:  # after the kill: the real wait for the pipes to close
                return super().communicate(input, timeout)
            self.limited = True
            assert timeout == 12  # the step's limit, from ISOTUNE_DOCTOR_STEP_S
            give_up = time.monotonic() + 300  # a guard against a start that never comes, not a window
            while len(list(ranks.iterdir())) < 2:
                assert self.poll() is None, "the profile ended before its ranks started"
                assert time.monotonic() < give_up, "the profile's ranks never started"
                time.sleep(0.05)
            seen["ranks"] = {int(f.name.removeprefix("rank-")) for f in ranks.iterdir()}
            seen["marked"] = _marked(entry)
            raise subprocess.TimeoutExpired(self.args, timeout)

    monkeypatch.setattr(child, "subprocess", SimpleNamespace(**{**vars(subprocess), "Popen": LimitOnceRanksRun}))
    c = pipeline("tiny", 2, "cpu", 2, [128, 256], tmp_path)
    assert c.status == "FAIL" and c.summary == (
        "isotune profile stopped after 12 s (ISOTUNE_DOCTOR_STEP_S): hung, or too slow here"
    )
    assert len(seen["ranks"]) == 2 and seen["ranks"] < seen["marked"]  # the command and its 2 ranks ran
    assert "stopped after 12 s" in (tmp_path / "pipeline.txt").read_text()
    # SIGKILLed with the command, not left behind: none of them lives on (orphans are reaped by init)
    give_up = time.monotonic() + 60
    while _marked(entry) and time.monotonic() < give_up:
        time.sleep(0.05)
    assert not _marked(entry), "the profile's ranks outlived the step"


def test_a_doctor_killed_midway_leaves_its_report_so_far(tmp_path, monkeypatch):
    """The report is rewritten after every check: killed at any point, the folder holds what was
    found and names the checks not reached. The kill lands in the third check; what is on disk
    at that moment is what a SIGKILL there would leave, since nothing of doctor runs after it."""
    from isotune.commands.doctor import checks as dc
    from isotune.commands.doctor import command as doctor_mod
    from isotune.commands.doctor.report import OK, Check

    class Killed(BaseException):
        """A SIGKILL: no handler of doctor's sees it."""

    out, on_disk = tmp_path / "doc", {}

    def killed_in_overhead(*args):
        on_disk.update(json=(out / "report.json").read_text(), md=(out / "report.md").read_text())
        raise Killed

    monkeypatch.setattr(dc, "iso", lambda *args: Check(name="ISO == baseline", status=OK, summary="fine"))
    monkeypatch.setattr(dc, "overhead", killed_in_overhead)
    with pytest.raises(Killed):
        doctor_mod.doctor(
            out=str(out), model="tiny", layers=None, checkpoint=None, seq_lens="128,256", repeats=2,
            device="cpu", tp=None, skip_tests=False,
        )  # fmt: skip
    statuses = [c["status"] for c in json.loads(on_disk["json"])["checks"]]
    assert statuses == ["skipped", "ok"] + ["not run yet"] * 5
    assert "doctor stopped before finishing this check" in on_disk["md"] and "## ISO == baseline: ok" in on_disk["md"]


def test_under_a_time_limit_checks_are_not_begun_and_said(tmp_path, capsys):
    """A machine held for a fixed time (a rented GPU, an allocation): past --time-limit no check is
    begun, each says so in the report, and doctor exits 1 (the machine was not checked). Half a
    second is under the second a check needs left to begin, however fast doctor gets there."""
    out = tmp_path / "doc"
    code = main(["doctor", "-o", str(out), "--model", "tiny", "--seq-lens", "128,256", "--time-limit", "0.5"])
    r = capsys.readouterr()
    assert code == 1, r.err
    checks = json.loads((out / "report.json").read_text())["checks"]
    assert len(checks) == 7
    assert all(c["status"] == "cut short" and c["summary"] == "not begun: --time-limit 0.5 s ran out" for c in checks)
    assert not (out / "chunking.png").exists() and not (out / "pipeline.txt").exists()
    said = " ".join(r.err.split())
    assert "7 check(s) cut short or not begun (CUDA tests, ISO == baseline," in said
    assert "give doctor more time" in said and "--skip-tests" not in said  # no CUDA tests ran to leave out


def test_a_child_is_stopped_where_the_time_limit_runs_out_and_said(tmp_path, monkeypatch):
    """A child (the cuda tests, a pipeline command) gets the step limit or what is left of
    doctor's --time-limit, whichever is less, and says which stopped it. The clock that places
    doctor's deadline is the test's; the children never end by themselves, so each outcome is
    certain (the limits are real waits, kept short)."""
    from isotune.commands.doctor import child
    from isotune.commands.doctor.child import run_child

    now = [1000.0]
    monkeypatch.setattr(child, "time", SimpleNamespace(monotonic=lambda: now[0]))
    pid_file = tmp_path / "pid"
    forever = ["sh", "-c", f"echo $$ > {pid_file}; exec sleep infinity"]
    monkeypatch.setenv("ISOTUNE_DOCTOR_STEP_S", "60")
    r = run_child(forever, None, deadline=now[0] + 1.5)
    assert r.returncode is None and r.cut and r.stopped == "stopped after 1.5 s, when doctor's --time-limit ran out"
    assert not Path(f"/proc/{pid_file.read_text().strip()}").exists()  # killed and reaped, not left running
    monkeypatch.setenv("ISOTUNE_DOCTOR_STEP_S", "1")  # the step limit comes first
    r = run_child(forever, None, deadline=now[0] + 60)
    assert r.returncode is None and r.stopped == "stopped after 1 s (ISOTUNE_DOCTOR_STEP_S): hung, or too slow here"
    assert not r.cut  # a step limit is a hang, not the time running out
    r = run_child(["true"], None, deadline=now[0] + 60)
    assert r.returncode == 0 and not r.stopped
    started = tmp_path / "started"
    r = run_child(["touch", str(started)], None, deadline=now[0] + 0.99)  # under a second left
    assert r.cut and r.stopped == "not begun: doctor's --time-limit ran out" and not started.exists()


def test_a_time_limit_met_midway_keeps_what_ran_and_cuts_the_rest(tmp_path, monkeypatch):
    """The clock runs out during the ISO check: it and the CUDA check keep their verdicts, the
    checks after it are not begun, and doctor exits 1. A clock the test moves, so no timing."""
    from isotune.commands.doctor import checks as dc
    from isotune.commands.doctor import command as doctor_mod
    from isotune.commands.doctor.report import OK, Check

    now = [1000.0]
    monkeypatch.setattr(doctor_mod.time, "monotonic", lambda: now[0])

    def slow_iso(*args):
        now[0] += 30  # this check takes 30 s of the 20 s allowed
        return Check(name="ISO == baseline", status=OK, summary="fine")

    monkeypatch.setattr(dc, "iso", slow_iso)
    code = doctor_mod.doctor(
        out=str(tmp_path / "doc"), model="tiny", layers=None, checkpoint=None, seq_lens="128,256", repeats=2,
        device="cpu", tp=None, skip_tests=False, time_limit=20,
    )  # fmt: skip
    checks = json.loads((tmp_path / "doc" / "report.json").read_text())["checks"]
    assert code == 1
    assert [(c["status"], c["summary"][:9]) for c in checks[:2]] == [("skipped", "no CUDA G"), ("ok", "fine")]
    assert all(
        c["status"] == "cut short" and c["summary"] == "not begun: --time-limit 20 s ran out" for c in checks[2:]
    )


def test_the_iso_check_runs_a_checkpoint_in_both_dtypes(tmp_path):
    """--checkpoint: a Qwen3 checkpoint transformers wrote (per-head q/k norms drawn away from
    one), held in float32 and in bfloat16 against its own float32 logits, beside the preset."""
    import torch
    import transformers

    from isotune.commands.doctor import measure as checks
    from isotune.commands.doctor.checks import iso

    torch.manual_seed(0)
    cfg = transformers.Qwen3Config(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
        intermediate_size=128, vocab_size=256, max_position_embeddings=512, initializer_range=0.2,
    )  # fmt: skip
    model = transformers.Qwen3ForCausalLM._from_config(cfg)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_norm.weight.normal_(1, 0.5)
            layer.self_attn.k_norm.weight.normal_(1, 0.5)
    model.save_pretrained(tmp_path / "qwen3")
    half = checks.build("tiny", 2, "bfloat16", 256, "cpu")
    c = iso(lambda: half, "tiny", 2, str(tmp_path / "qwen3"), "cpu", 16, [256])
    assert c.status == "ok", c.summary
    by = {(r["model"], r["dtype"]) for r in c.rows}
    assert by == {("tiny", "bfloat16"), ("tiny", "float32"), ("qwen3", "bfloat16"), ("qwen3", "float32")}
    qwen = [r for r in c.rows if r["model"] == "qwen3"]
    assert all(r["ok"] and r["err"] <= r["tol"] for r in qwen) and len(qwen) == 8
    assert all(r["base_err"] > 0 for r in qwen if r["dtype"] == "bfloat16")  # held to a measured rounding
    assert "no --checkpoint given" not in c.summary


def test_the_cuda_tests_are_found_beside_the_package():
    """doctor runs the cuda-marked tests of the checkout it was started from."""
    from isotune.commands.doctor.checks import checkout_tests

    assert checkout_tests() == ROOT / "tests" and (checkout_tests() / "engine" / "test_cuda.py").is_file()
