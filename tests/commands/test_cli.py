"""The run command end to end: bad input is one line and exit 2; torchrun; a killed rank."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import CLI, ROOT

from isotune.cli import main
from isotune.engine import dist, launcher


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--model", "nope"], "unknown model preset"),
        (["--model", "./no/such/folder"], "does not exist"),
        (["--tp", "3"], "does not divide"),
        (["--ratios", "0.5,abc"], "does not parse"),
        (["--ratios", "0.5,0.6"], "sum to 1.1"),
        (["--chunks", "2", "--ratios", "0.2,0.3,0.5"], "one ratio per chunk"),
        (["--compare", "--repeats", "0"], "at least 1 with --compare"),
        # refused before launch, from the spec alone: nothing of its 140 GB is allocated
        (["--model", "llama3-70b", "--tp", "2", "--dtype", "float32"], "per rank; 2 ranks here need"),
        (["--chunks", "9"], "out of range"),
        (["--seq-len", "0"], "at least 1"),
        (["--dtype", "int8"], "unknown dtype"),
        (["--layers", "7"], "out of range"),
        (["--device", "tpu"], "unknown"),
        (["--json", "/no/such/dir/out.json"], "does not exist"),
        (["--seq-len", "9000"], "exceeds"),
        (["--bogus-flag"], "No such option"),
        (["--tp", "two"], "--tp 'two' must be one TP size"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(args, needle, capsys):
    assert main(["run", "--model", "tiny", *args] if args[0] != "--model" else ["run", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and needle in err, err


def test_prompt_too_short_for_the_split_runs_unsplit_with_a_note(tmp_path, cli_here):
    out = tmp_path / "r.json"
    r = cli_here("run", "--model", "tiny", "--seq-len", "40", "--chunks", "4", "--repeats", "1", "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "note: --seq-len has 40 tokens, too few for 4 chunks of at least 16; running it unsplit"
    assert json.loads(out.read_text())["chunk_tokens"] == [40]


def test_bad_prompt_files(tmp_path, capsys):
    f = tmp_path / "p.txt"
    for text, needle in [("1 2 x", "other than integers"), ("1 2 99999", "outside the vocabulary"), ("", "empty")]:
        f.write_text(text)
        assert main(["run", "--prompt-ids", str(f)]) == 2
        assert needle in capsys.readouterr().err
    assert main(["run", "--prompt-ids", str(tmp_path / "missing.txt")]) == 2
    assert "missing.txt does not exist" in capsys.readouterr().err
    assert main(["run", "--prompt-ids", str(f), "--seq-len", "64"]) == 2
    assert "give one prompt source, not --seq-len and --prompt-ids" in capsys.readouterr().err


def test_bad_input_in_a_subprocess_has_no_traceback():
    """The script itself, as a shell runs it: exit status 2 and one line (the rest of the bad
    input is checked in-process)."""
    r = subprocess.run(
        [sys.executable, CLI, "run", "--model", "tiny", "--tp", "2", "--ratios", "0.7,0.7"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == ["error: --ratios [0.7, 0.7] sum to 1.4, not 1: make them add up to 1"]


@pytest.mark.slow
def test_run_writes_json_and_matches_the_baseline(tmp_path, cli):
    out = tmp_path / "r.json"
    r = cli(
        "run",
        "--model",
        "tiny",
        "--tp",
        "2",
        "--seq-len",
        "256",
        "--chunks",
        "4",
        "--ratios",
        "0.4,0.3,0.2,0.1",
        "--compare",
        "--json",
        str(out),
        "--max-new-tokens",
        "5",
        "--dtype",
        "float32",
    )
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert set(res) == {
        "prompt_tokens",
        "chunk_tokens",
        "generated_ids",
        "prefill_ms",
        "baseline_prefill_ms",
        "max_abs_diff",
        "compared_abs_max",  # the scale of what max_abs_diff compares
        "same_next_token",
        "plan_bucket",
        "vs_baseline",  # the paired change and its 95% interval, beside the times
        "prefill_timed",  # "typical of 10": what prefill_ms is
        "ttft_ms",  # the request itself: time to first token
        "decode_tok_s",
        "generated_tokens",
        "stopped",  # eos or max_new_tokens
    }
    assert res["plan_bucket"] is None  # no --plan
    change, low, high = res["vs_baseline"]
    assert low <= change <= high
    assert res["prompt_tokens"] == 256 and sum(res["chunk_tokens"]) == 256 and len(res["chunk_tokens"]) == 4
    assert len(res["generated_ids"]) == 5 and res["max_abs_diff"] <= 1e-4
    assert res["same_next_token"] is True and res["compared_abs_max"] > res["max_abs_diff"]
    assert res["prefill_ms"] > 0 and res["baseline_prefill_ms"] > 0
    assert "ISO vs baseline (paired)" in r.stdout and "95% CI" in r.stdout


@pytest.mark.slow
def test_torchrun_launch(tmp_path):
    out = tmp_path / "r.json"
    env = {k: v for k, v in os.environ.items() if k not in launcher.LAUNCH_VARS}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            CLI,
            "run",
            "--model",
            "tiny",
            "--seq-len",
            "128",
            "--chunks",
            "2",
            "--compare",
            "--dtype",
            "float32",
            "--json",
            str(out),
            "--repeats",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["chunk_tokens"] == [64, 64] and res["max_abs_diff"] <= 1e-4
    assert "tp 2 gloo" in r.stdout


def _suicidal_worker(info, payload) -> int:
    """Rank 1 dies mid-run (SIGKILL); rank 0 is inside a collective waiting for it."""
    import torch

    if info.rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    t = torch.ones(4)
    dist.all_reduce_async(t).wait()
    time.sleep(600)  # never reached: the watcher must stop this rank
    return 0


@pytest.mark.slow
def test_killed_rank_stops_the_others_fast(capsys):
    t0 = time.monotonic()
    code = dist.run_ranks(_suicidal_worker, dist.Ranks(tp=2, device="cpu"), None)
    assert code == 1 and time.monotonic() - t0 < 30
    assert "rank 1 was killed by SIGKILL" in capsys.readouterr().err


def test_version_models_bare_help_and_flags(capsys, tmp_path):
    from isotune import __version__
    from isotune.commands.models import params_b
    from isotune.core.spec import load_spec

    assert main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"isotune {__version__}"
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("tiny", "small", "llama3-70b", "qwen2.5-72b")) and "70.55B" in out
    assert round(params_b(load_spec("llama2-7b")), 2) == 6.74 and round(params_b(load_spec("llama3-8b")), 2) == 8.03
    # bare isotune: the help, and no empty "error:"
    assert main([]) == 0
    shown = capsys.readouterr()
    assert "Usage" in shown.out + shown.err and "error" not in shown.err
    # flags take no value, and the help does not pretend they do
    assert main(["run", "--help"]) == 0
    help_text = capsys.readouterr().out
    flags = [line for line in help_text.splitlines() if line.startswith(("│ --compare ", "│ --force ", "│ --chat "))]
    assert len(flags) == 3 and not any("<bool>" in line for line in flags)  # (typer's own --help keeps it)
    # a missing file is not called a profile
    assert main(["show", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not exist: give a plan" in err and "profile" in err


def test_a_launcher_rank_without_its_gpu_is_refused(monkeypatch):
    """torchrun --nproc-per-node 4 on a 2-GPU host: local rank 3 has no GPU of its own."""
    import torch

    from isotune.core.errors import BadInput

    env = {"RANK": "3", "WORLD_SIZE": "4", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29555", "LOCAL_RANK": "3"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(BadInput, match="LOCAL_RANK 3 but this host shows 2 GPUs"):
        dist.check_world(4, "cuda")
    dist.check_world(4, "cpu")  # CPU ranks need no GPU each
