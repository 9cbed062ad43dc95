"""The bad-input corpus: every case exits 2 with one line that names the problem and the fix, no
traceback, and writes nothing. Files are made per case in a temp folder."""

import json
import re
from pathlib import Path

import pytest
from conftest import ROOT

from isotune.cli import main
from isotune.core.plan import Bucket, Plan, plan_to_yaml
from isotune.core.spec import load_spec

PROFILE = ROOT / "profiles" / "small-l2-tp2-bf16-cpu-gloo-shaped1gbit.yaml"
TINY_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 128,
    "intermediate_size": 352,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 2,
    "vocab_size": 512,
    "max_position_embeddings": 2048,
}


def _plan(tmp: Path, name="plan.yaml", model="tiny", tp=2, buckets=None, version=1) -> str:
    plan = Plan(
        model={"name": model, "fingerprint": load_spec(model).fingerprint(), "layers": 2},
        topology={"tp": tp, "backend": "gloo", "device": "cpu", "interconnect": "loopback", "dtype": "float32"},
        software={"isotune": "t", "torch": "t"},
        align=16,
        buckets=buckets
        or [Bucket(min_tokens=1, max_tokens=512, chunks=2, ratios=[0.5, 0.5], plan_ms=1, baseline_ms=1)],
    )
    text = plan_to_yaml(plan).replace("isotune_plan: 1", f"isotune_plan: {version}")
    (tmp / name).write_text(text)
    return str(tmp / name)


def _raw_plan(tmp: Path, buckets: list[dict]) -> str:
    """A plan file written by hand (bypassing save_plan's validation)."""
    good = Path(_plan(tmp, "good.yaml")).read_text()
    head = good.split("buckets:")[0]
    (tmp / "plan.yaml").write_text(head + "buckets:\n" + "".join(f"- {json.dumps(b)}\n" for b in buckets))
    return str(tmp / "plan.yaml")


def _bucket(**kw) -> dict:
    return {"min_tokens": 1, "max_tokens": 512, "chunks": 2, "ratios": [0.5, 0.5], "plan_ms": 1, "baseline_ms": 1} | kw


def _ckpt(tmp: Path, config=None, files: dict | None = None, config_text: str | None = None) -> str:
    d = tmp / "ckpt"
    d.mkdir()
    (d / "config.json").write_text(config_text or json.dumps(config or TINY_CONFIG))
    for name, data in (files or {}).items():
        (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(d)


def _write(tmp: Path, name: str, text: str) -> str:
    (tmp / name).write_text(text)
    return str(tmp / name)


RUN = ["run", "--model", "tiny", "--tp", "2"]
# (id, setup(tmp) -> argv, expected fragment of the one-line error)
CASES = [
    # plans
    ("plan malformed yaml", lambda t: [*RUN, "--plan", _write(t, "p.yaml", "isotune_plan: 1\nbuckets: [1, 2")],
     "not valid YAML"),
    ("plan truncated", lambda t: [*RUN, "--plan", _write(t, "p.yaml", Path(_plan(t)).read_text()[:200])],
     "re-run isotune search"),
    ("plan wrong version", lambda t: [*RUN, "--plan", _plan(t, version=3)], "schema version 3"),
    ("plan is a profile", lambda t: [*RUN, "--plan", str(PROFILE)], "not an isotune plan"),
    ("plan ratios sum", lambda t: [*RUN, "--plan", _raw_plan(t, [_bucket(ratios=[0.5, 0.6])])], "sum to 1.1"),
    ("plan ratios negative", lambda t: [*RUN, "--plan", _raw_plan(t, [_bucket(ratios=[1.5, -0.5])])], "positive"),
    ("plan chunks > tokens", lambda t: [*RUN, "--plan", _raw_plan(t, [_bucket(max_tokens=40, chunks=3,
     ratios=[0.3, 0.3, 0.4])])], "do not fit"),
    ("plan overlapping buckets", lambda t: [*RUN, "--plan", _raw_plan(t, [_bucket(), _bucket(min_tokens=300,
     max_tokens=900)])], "overlaps"),
    ("plan unsorted buckets", lambda t: [*RUN, "--plan", _raw_plan(t, [_bucket(min_tokens=513, max_tokens=900),
     _bucket()])], "leaves a gap"),
    ("plan other model", lambda t: [*RUN, "--plan", _plan(t, model="small")], "made for model small"),
    ("plan other tp", lambda t: ["run", "--model", "tiny", "--tp", "1", "--plan", _plan(t)], "not tp 1"),
    ("plan missing", lambda t: [*RUN, "--plan", str(t / "nope.yaml")], "does not exist"),
    # profiles
    ("profile malformed", lambda t: ["bench", "--model", "small", "--layers", "2", "--tp", "2", "--profile",
     _write(t, "p.yaml", "isotune_profile: 1\nfit: {a: [1,")], "not valid YAML"),
    ("profile wrong version", lambda t: ["bench", "--model", "small", "--layers", "2", "--tp", "2", "--profile",
     _write(t, "p.yaml", PROFILE.read_text().replace("isotune_profile: 1", "isotune_profile: 2"))],
     "not an isotune profile"),
    ("profile truncated", lambda t: ["bench", "--model", "small", "--layers", "2", "--tp", "2", "--profile",
     _write(t, "p.yaml", PROFILE.read_text()[:300])], "re-run isotune profile"),
    ("profile other model", lambda t: ["bench", "--model", "tiny", "--tp", "2", "--profile", str(PROFILE)],
     "measured on 'small'"),
    ("profile other tp", lambda t: ["bench", "--model", "small", "--layers", "2", "--tp", "4", "--profile",
     str(PROFILE)], "not tp 4"),
    # models and checkpoints
    ("unknown preset", lambda t: ["run", "--model", "llama9-1t"], "unknown model preset"),
    ("checkpoint missing shard", lambda t: ["run", "--model", _ckpt(t, files={"model.safetensors.index.json":
     json.dumps({"weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors"}})})],
     "is missing"),
    ("checkpoint corrupt safetensors", lambda t: ["run", "--model", _ckpt(t, files={"model.safetensors":
     b"\x10\x00\x00\x00\x00\x00\x00\x00{not json"})], "not a readable safetensors file"),
    ("checkpoint only pickled .bin", lambda t: ["run", "--model", _ckpt(t, files={"pytorch_model.bin": b"x"})],
     "pickled weights"),
    ("checkpoint unsupported arch", lambda t: ["run", "--model", _ckpt(t, config=TINY_CONFIG | {"architectures":
     ["GPT2LMHeadModel"]})], "not supported"),
    ("checkpoint without config.json", lambda t: ["run", "--model", str(t)], "no config.json"),
    ("checkpoint config not json", lambda t: ["run", "--model", _ckpt(t, config_text="{oops")], "not valid JSON"),
    ("tp does not divide heads", lambda t: ["run", "--model", "tiny", "--tp", "3"], "does not divide"),
    # lengths
    ("seq-len zero", lambda t: [*RUN, "--seq-len", "0"], "at least 1"),
    ("seq-len negative", lambda t: [*RUN, "--seq-len", "-5"], "at least 1"),
    ("seq-lens zero", lambda t: ["bench", "--model", "tiny", "--seq-lens", "0,512"], "positive"),
    ("seq-lens negative", lambda t: ["profile", "--model", "tiny", "--seq-lens", "-512", "-o", str(t / "p.yaml")],
     "positive"),
    ("seq-lens not numbers", lambda t: ["search", "--model", "tiny", "--seq-lens", "1k", "-o", str(t / "p.yaml")],
     "does not parse"),
    # prompt files
    ("prompt ids not integers", lambda t: [*RUN, "--prompt-ids", _write(t, "ids.txt", "1 2 three")],
     "other than integers"),
    ("prompt ids beyond vocab", lambda t: [*RUN, "--prompt-ids", _write(t, "ids.txt", "1 2 512")],
     "outside the vocabulary"),
    ("prompt ids empty", lambda t: [*RUN, "--prompt-ids", _write(t, "ids.txt", "  \n")], "is empty"),
    # outputs (checked before any work)
    ("run json in missing folder", lambda t: [*RUN, "--json", str(t / "no" / "r.json")], "does not exist"),
    ("profile out under a file", lambda t: ["profile", "--model", "tiny", "-o",
     str(Path(_write(t, "f.txt", "x")) / "p.yaml")], "does not exist"),
    ("search out is a folder", lambda t: ["search", "--model", "tiny", "-o", str(t)], "is a folder"),
    ("trace in missing folder", lambda t: [*RUN, "--trace", str(t / "no" / "t.json")], "does not exist"),
    ("bench json in missing folder", lambda t: ["bench", "--model", "tiny", "--json", str(t / "no" / "b.json")],
     "does not exist"),
    # storages
    ("storage sqlite unopenable", lambda t: ["search", "--model", "tiny", "-o", str(t / "p.yaml"), "--storage",
     "sqlite:////no/such/dir/s.db"], "cannot be opened"),
    ("storage not a url", lambda t: ["search", "--model", "tiny", "-o", str(t / "p.yaml"), "--storage", "s.db"],
     "not a storage URL"),
    ("storage journal missing folder", lambda t: ["search", "--model", "tiny", "-o", str(t / "p.yaml"),
     "--storage", f"journal:{t / 'no' / 's.log'}"], "does not exist"),
    ("storage with a plan's redacted password", lambda t: ["search", "--model", "tiny", "-o", str(t / "p.yaml"),
     "--storage", "postgresql://bob:***@127.0.0.1:1/db"], "the password in PGPASSWORD or ~/.pgpass"),
    ("storage server refuses", lambda t: ["search", "--model", "tiny", "-o", str(t / "p.yaml"), "--storage",
     "postgresql://bob:hunter2hunter@127.0.0.1:1/db"], "--storage postgresql://bob:***@127.0.0.1:1/db cannot be opened"),
    ("show unknown study", lambda t: ["show", f"journal:{_write(t, 's.log', '')}", "--study", "x"],
     "no study 'x'"),
    ("show missing journal", lambda t: ["show", f"journal:{t / 'none.log'}"], "none.log does not exist"),
    ("show missing sqlite", lambda t: ["show", f"sqlite:///{t / 'none.db'}"], "none.db does not exist"),
    ("show other yaml", lambda t: ["show", _write(t, "o.yaml", "a: 1\n")], "is not an isotune plan or profile"),
    ("show catalog entry", lambda t: ["show", str(ROOT / "profiles" / "hardware" / "h100-sxm.yaml")],
     "is a hardware catalog entry"),
    # outputs where the folder exists but nothing can be made (root passes os.access checks there)
    ("run json in /proc", lambda t: [*RUN, "--json", "/proc/isotune-r.json"], "/proc is not writable"),
    ("estimate json in /proc", lambda t: ["estimate", "--hardware", "h100-sxm", "--tp", "2", "--seq-lens", "1024",
     "--json", "/proc/isotune-e.json"], "/proc is not writable"),
    ("profile out in /proc", lambda t: ["profile", "--model", "tiny", "-o", "/proc/isotune-p.yaml"],
     "/proc is not writable"),
    ("doctor out in /proc", lambda t: ["doctor", "-o", "/proc/isotune-doc", "--skip-tests"], "/proc is not writable"),
    ("estimate with no fitting tp", lambda t: ["estimate", "--model", "tiny", "--tp", "3", "--hardware", "h100-sxm"],
     "no hardware x TP size fits tiny: --tp 3 does not divide tiny's 4 query heads: use 1, 2 or 4"),
    ("bench profile of another model, forced", lambda t: ["bench", "--model", "tiny", "--tp", "2", "--profile",
     str(PROFILE), "--force"], "--force does not cover this"),
    ("search trials 0", lambda t: ["search", "--model", "tiny", "-o", str(t / "p.yaml"), "--trials", "0"],
     "--trials 0: use 1 or more"),
]  # fmt: skip


@pytest.mark.parametrize("setup,needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, setup, needle):
    argv = setup(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and needle in err, err
    assert "Traceback" not in err
    after = {p for p in tmp_path.rglob("*") if not p.name.endswith(".lock")}
    created = after - set(before)  # nothing new, nothing changed
    assert created == set(), created
    assert all(p.stat().st_mtime_ns == m for p, m in before.items() if p.exists())


def test_the_corpus_covers_every_command(tmp_path):
    commands = set()
    for i, (_, setup, _) in enumerate(CASES):
        (tmp_path / str(i)).mkdir()
        commands.add(setup(tmp_path / str(i))[0])
    assert commands >= {"run", "profile", "bench", "search", "estimate", "doctor", "show"}, commands


def test_an_interrupted_write_leaves_the_old_file(tmp_path, monkeypatch):
    from isotune.core import files

    target = tmp_path / "plan.yaml"
    target.write_text("old\n")

    def boom(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        files.atomic_write_text(target, "new\n" * 1000)
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["plan.yaml"]


def test_yaml_and_weights_are_read_safely():
    """No unsafe YAML loader and no pickle anywhere in the package."""
    src = "\n".join(p.read_text() for p in (ROOT / "isotune").rglob("*.py"))
    for unsafe in (
        r"\byaml\.load\(",
        r"\byaml\.unsafe_load",
        r"\btorch\.load\(",
        r"import pickle",
        r"trust_remote_code",
    ):
        assert not re.search(unsafe, src), unsafe


def test_a_taken_master_port_is_a_clear_error(monkeypatch, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        s.listen()
        port = s.getsockname()[1]
        for k, v in {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
            monkeypatch.setenv(k, v)
        assert main(["run", "--model", "tiny"]) == 2
    err = capsys.readouterr().err
    assert f"MASTER_PORT {port} is already in use" in err and "pick a free port" in err


def test_local_launches_pick_their_own_free_ports(tmp_path):
    """Two local 2-rank runs at once: each spawn's store takes a free port of its own."""
    import subprocess
    import sys

    from conftest import CLI

    cmd = [sys.executable, CLI, "run", "--model", "tiny", "--tp", "2", "--repeats", "20"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        assert p.wait(120) == 0, p.stderr.read()
