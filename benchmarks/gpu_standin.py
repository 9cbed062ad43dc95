"""One GPU call, one report: what a single H100 or H200 shows of llama3-70b at TP 8 through the
stand-in (`--tp N --ranks 1 --link ...`), and whether the emulated link behind it holds.

    python3 benchmarks/gpu_standin.py OUT --commit HASH          # on the GPU machine
    python3 benchmarks/gpu_standin.py OUT --dry-run              # anywhere: tiny stand-ins on CPU

The GPU machine needs nothing carried: bench, profile and estimate import no optuna, and torch,
triton, rich, typer, pyyaml and matplotlib come with its image. A copied checkout has no .git,
so give the commit it holds (`git rev-parse HEAD` where it was copied from) as --commit; where
git answers, its own HEAD is recorded. Its output is line-buffered: a call cut short still
brings back the progress lines up to the cut.

Parts (--parts picks some; each writes its piece of OUT/report.json and OUT/report.md as it
ends, so a run cut short keeps the parts before):

1. hold: the comm stream's emulation kernel (engine.comm_hold). (a) Accuracy: each asked time
   at 8, 16 and 32 CTAs, between CUDA events around the kernel alone: on an idle stream (the
   host's launch falls inside) and queued behind a short spin (the kernel's own time). (b) What
   it takes from compute: a llama3-70b TP-8 shard's QKV, O and MLP GEMMs (with SwiGLU) at 4096
   tokens alone, and again while the kernel holds 8, 16 or 32 CTAs on a second stream for the
   whole of it, rounds interleaved. Needs CUDA and triton; elsewhere skipped with the reason.
2. standin70b: `isotune bench` of llama3-70b, rank 0's shard of TP 8, all 80 layers, bf16,
   synthetic weights, its all-reduces the catalog's h100-sxm link held on the GPU: baseline,
   ISO 50/50, compute only and comm only at 1024/4096/8192 tokens, set beside TokenWeave's
   published 8xH100 figures (profiles/hardware/PUBLISHED.md, section 2). Where the CLI refuses
   the GPU link, compute only is measured in this process and the refusal is reported.
3. chunking: what 2 and 4 even chunks cost with nothing to hide, compute only, at the TP 4 and
   TP 8 shards of llama3-70b cut to 8 layers, 1024 to 8192 tokens; and per layer-chunk the host's
   time to issue it against the GPU's time to run it (engine.timing.issue_and_run_ms).
4. profiles: `isotune profile --hardware H --ranks 1` of llama3-70b and llama3-8b at TP 2, 4 and
   8 (H: the catalog entry of this GPU), then `isotune estimate` before (the catalog's roofline)
   and after (--measured with those profiles), side by side.

Out: report.json (every number, the commit, the device, versions, times), report.md (tables:
each number says whether it was measured on which device, predicted or published, with its
95% interval), hold.png, standin70b.png, chunking.png and files.tgz (the CLI's own files: bench
JSON, profiles, estimates and each command's log). Six files: a device call brings back eight.

--budget-s (540) is the time after which no part, and no command inside the profiles part,
starts; a command still running is stopped 30 s past it. The report says what was left out.
Every command and the parts that run in this script's own code (hold, chunking: each in a child
of this script) have a limit of their own besides (LIMIT_S), so a hold kernel that never ends,
or a CUDA error, costs its part and not the call; after a hung hold, nothing that holds with it
(bench's GPU link, the stand-in profiles) is started.
"""

from __future__ import annotations

import time

T0 = time.monotonic()  # the budget counts from here: torch's import is part of the call's time

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's isotune, whatever else is installed

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from isotune.core.analytic import catalog_links  # noqa: E402
from isotune.core.chunking import DEFAULT_ALIGN, chunk_bounds  # noqa: E402
from isotune.core.files import atomic_write_bytes, atomic_write_text  # noqa: E402
from isotune.core.hardware import hardware_names, load_hardware  # noqa: E402
from isotune.core.link import parse_link  # noqa: E402
from isotune.core.schedule import build_schedule  # noqa: E402
from isotune.core.shard import shard_for  # noqa: E402
from isotune.core.spec import load_spec  # noqa: E402
from isotune.core.stats import interval, mean_interval, paired_change  # noqa: E402
from isotune.core.target import Target  # noqa: E402
from isotune.engine.executor import COMPUTE_ONLY, prefill  # noqa: E402
from isotune.engine.launch import build_for  # noqa: E402
from isotune.engine.layers import swiglu  # noqa: E402
from isotune.engine.model import random_prompt  # noqa: E402
from isotune.engine.rank import single  # noqa: E402
from isotune.engine.timing import device_ms, issue_and_run_ms, spin_cycles_per_ms, time_prefills  # noqa: E402

PARTS = ("hold", "standin70b", "chunking", "profiles")
CHILD_GRACE_S = 30.0  # a command running at the budget's end gets this long to finish
# Each child's own limit (s): a hung one (a hold kernel that never ends, say) must leave time for
# the rest. Several times what each should take on an H100 or H200.
LIMIT_S = {"hold": 150, "chunking": 240, "bench": 240, "profile": 150, "estimate": 60}
ISOLATED = ("hold", "chunking")  # in-process GPU work, run in a child: a hang or a CUDA error stays there
PUBLISHED = ROOT / "profiles" / "hardware" / "PUBLISHED.md"
HOLD_TOL_US, HOLD_TOL_FRAC = 5.0, 0.05  # the hold is on target within 5 us or 5% of the time asked
OVERHEAD_TARGET = 0.05  # 2 chunks may cost at most 5% compute from Sizes.overhead_from tokens at the widest TP


@dataclass(frozen=True, kw_only=True)
class Sizes:
    """What each part measures: the real run's sizes on a GPU, tiny ones for the dry run."""

    device: str
    # 1. hold
    hold_us: tuple[int, ...] = (5, 20, 100, 500, 2000)
    hold_ctas: tuple[int, ...] = (8, 16, 32)
    hold_repeats: int = 20
    gemm_model: str = "llama3-70b"
    gemm_tp: int = 8
    gemm_tokens: int = 4096
    gemm_layers: int = 8  # the shard's GEMMs this many times per timed call: ~10 ms on an H100
    slowdown_rounds: int = 15
    # 2. standin70b
    standin_model: str = "llama3-70b"
    standin_layers: int | None = None  # all of them
    standin_tp: int = 8
    standin_link: str = "h100-sxm"
    standin_lens: tuple[int, ...] = (1024, 4096, 8192)
    standin_repeats: int = 10
    published_model: str = "Llama-3.3-70B"
    published_tp: int = 8
    # 3. chunking
    chunk_model: str = "llama3-70b"
    chunk_layers: int = 8
    chunk_tps: tuple[int, ...] = (4, 8)
    chunk_lens: tuple[int, ...] = (1024, 2048, 4096, 8192)
    chunk_counts: tuple[int, ...] = (1, 2, 4)
    chunk_repeats: int = 10
    overhead_from: int = 2048
    # 4. profiles
    profile_models: tuple[str, ...] = ("llama3-70b", "llama3-8b")
    profile_tps: tuple[int, ...] = (8, 4, 2)
    profile_layers: int = 4
    profile_lens: tuple[int, ...] = (1024, 2048, 4096, 8192)
    profile_repeats: int = 3
    estimate_lens: tuple[int, ...] = (1024, 2048, 4096, 8192)
    dry: bool = False


# Tiny stand-ins on CPU: every code path a GPU run takes that needs no CUDA, in seconds.
DRY = Sizes(
    device="cpu",
    standin_model="tiny",
    standin_layers=2,
    standin_tp=2,
    standin_link="1gbit",
    standin_lens=(256, 1024),  # 1024: a length TokenWeave published, so the comparison's path runs
    standin_repeats=3,
    chunk_model="small",
    chunk_layers=1,
    chunk_tps=(2, 4),
    chunk_lens=(128, 256),
    chunk_repeats=3,
    overhead_from=256,
    profile_models=("tiny",),  # the loop over models runs; one is enough to check it
    profile_tps=(2,),
    profile_layers=1,
    profile_lens=(64, 128),
    profile_repeats=2,
    estimate_lens=(1024, 2048),
    dry=True,
)


# ---------------------------------------------------------------- the run and its report


class Run:
    """One call of the script: its sizes, clock, report and files."""

    def __init__(self, out: Path, sizes: Sizes, budget_s: float, parts: list[str], commit: str | None):
        self.out, self.sizes, self.budget_s = out, sizes, budget_s
        self.side = Path(tempfile.mkdtemp(prefix="gpu-standin-"))  # files.tgz's contents; OUT stays few files
        self.device = sizes.device
        self.hold_hung: str | None = None  # why the hold kernel is not to be used again in this run
        self.report: dict = {
            "script": "benchmarks/gpu_standin.py",
            "dry_run": sizes.dry,
            "commit": commit_of(commit),
            "device": device_name(self.device),
            "device_type": self.device,
            "versions": versions(),
            "gpu": gpu_props() if self.device == "cuda" else None,
            "started": now_text(),
            "ended": None,
            "budget_s": budget_s,
            "parts_asked": parts,
            "sizes": {k: v for k, v in vars(sizes).items()},
            "parts": {p: {"status": "not asked", "reason": "left out by --parts"} for p in PARTS if p not in parts},
            "files": [],
        }

    def elapsed_s(self) -> float:
        return time.monotonic() - T0

    def past_budget(self) -> bool:
        return self.elapsed_s() > self.budget_s

    def budget_reason(self) -> str:
        return f"the budget of {self.budget_s:.0f} s was spent ({self.elapsed_s():.0f} s had passed)"

    def save(self) -> None:
        """report.json, report.md and files.tgz as they stand: rewritten after every part."""
        self.report["ended"] = now_text()
        self.report["elapsed_s"] = round(self.elapsed_s(), 1)
        files = sorted(p.name for p in self.side.iterdir())
        if files:
            tmp = self.out / "files.tgz.tmp"
            with tarfile.open(tmp, "w:gz") as tar:
                for name in files:
                    tar.add(self.side / name, arcname=name)
            tmp.replace(self.out / "files.tgz")
        self.report["files"] = files
        atomic_write_text(self.out / "report.json", json.dumps(self.report, indent=1, default=str) + "\n")
        atomic_write_text(self.out / "report.md", markdown(self.report))

    def cli(self, args: list[str], log: str) -> dict:
        """`python -m isotune ARGS` in a child process, its output in `log` (files.tgz); stopped
        CHILD_GRACE_S past the budget. Returns its command line, exit code, wall time and, where
        it failed, its last 'error:' line."""
        left = T0 + self.budget_s + CHILD_GRACE_S - time.monotonic()
        limit = LIMIT_S[args[0]]
        env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env |= {"PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
        shown = "isotune " + shlex.join(args).replace(str(self.side) + "/", "")  # files named as in files.tgz
        print(f"  $ {shown}", flush=True)
        t = time.monotonic()
        timed_out, rc = False, None
        with open(self.side / log, "w") as f:
            f.write(f"$ {shown}\n")
            f.flush()
            # its own process group: a timeout stops it and whatever it started, nothing else
            child = subprocess.Popen(
                [sys.executable, "-m", "isotune", *args], cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            try:
                rc = child.wait(timeout=max(5.0, min(limit, left)))
            except subprocess.TimeoutExpired:
                timed_out = True
                stop_group(child)
        text = (self.side / log).read_text(errors="replace")
        errors = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("error:")]
        for line in text.splitlines()[-8:]:
            print(f"    {line}", flush=True)
        res = {"command": shown, "rc": rc, "wall_s": round(time.monotonic() - t, 1), "timed_out": timed_out}
        if rc != 0:
            why = errors[-1] if errors else (text.strip().splitlines() or ["no output"])[-1]
            res["error"] = stopped_text(limit, left) if timed_out else why
        return res

    def isolated(self, name: str) -> dict:
        """Part `name` in a child process of this script (its output joins this one's), its piece
        read back from JSON; stopped at LIMIT_S[name] or CHILD_GRACE_S past the budget."""
        left = T0 + self.budget_s + CHILD_GRACE_S - time.monotonic()
        fd, path = tempfile.mkstemp(prefix=f"gpu-standin-{name}-", suffix=".json")
        os.close(fd)
        cmd = [sys.executable, str(Path(__file__).resolve()), str(self.out), "--child-part", name, "--child-json", path]
        cmd += ["--device", self.device] + (["--dry-run"] if self.sizes.dry else [])
        child = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)  # its own group: a timeout stops it alone
        try:
            rc = child.wait(timeout=max(5.0, min(LIMIT_S[name], left)))
        except subprocess.TimeoutExpired:
            stop_group(child)
            os.unlink(path)
            return {"status": "failed", "reason": stopped_text(LIMIT_S[name], left), "hung": True}
        try:
            text = Path(path).read_text()
            return json.loads(text) if text else {"status": "failed", "reason": f"its process ended with code {rc}"}
        finally:
            os.unlink(path)


def stopped_text(limit: float, left: float) -> str:
    if limit <= left:
        return f"stopped at its limit of {limit:.0f} s: it hung or ran far longer than it should"
    return f"stopped {CHILD_GRACE_S:.0f} s past the budget"


def stop_group(child: subprocess.Popen) -> None:
    """Stop a child started in its own session, and what it started: TERM, then KILL."""
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def now_text() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def commit_of(given: str | None) -> dict:
    """The commit this tree is at: git's HEAD where git answers, else --commit."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        if head.returncode == 0:
            out = {
                "hash": head.stdout.strip(),
                "from": "git rev-parse HEAD",
                "uncommitted_changes": bool(dirty.stdout.strip()),
            }
            if given and not head.stdout.strip().startswith(given):
                out["given"] = given
            return out
    except (OSError, subprocess.TimeoutExpired):
        pass
    if given:
        return {"hash": given, "from": "--commit (no git here)"}
    return {"hash": None, "from": "unknown: no git here and no --commit"}


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores)"


def versions() -> dict:
    out = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda}
    out["cudnn"] = torch.backends.cudnn.version() if torch.cuda.is_available() else None
    try:
        import triton

        out["triton"] = triton.__version__
    except ImportError:
        out["triton"] = None
    return out


def gpu_props() -> dict:
    p = torch.cuda.get_device_properties(0)
    return {"name": p.name, "sms": p.multi_processor_count, "memory_gib": round(p.total_memory / 2**30, 1)}


def iv(samples: list[float]) -> dict:
    """The typical (trimmed mean) of repeats and its 95% interval."""
    i = interval(samples)
    return {"estimate": i.estimate, "low": i.low, "high": i.high, "n": i.n}


def change(base: list[float], other: list[float]) -> dict:
    """other against base from paired repeats: a fraction and its 95% interval."""
    c = paired_change(base, other)
    return {"estimate": c.estimate, "low": c.low, "high": c.high, "n": c.n}


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- 1. hold


def hold_unavailable(device: str) -> str | None:
    """Why the hold kernel cannot run here, or None."""
    try:
        from isotune.engine import comm_hold
    except ImportError:
        return "this checkout has no isotune.engine.comm_hold (the GPU link's hold kernel)"
    why = comm_hold.unavailable()
    if why is None and device != "cuda":
        why = "the hold kernel runs on a CUDA GPU; this run is on CPU"
    return why


def part_hold(run: Run) -> dict:
    why = hold_unavailable(run.device)
    if why is not None:
        return {"status": "skipped", "reason": why}
    from isotune.core.link import GPU_HOLD_THREADS
    from isotune.engine import comm_hold

    sz = run.sizes
    dev = torch.device("cuda", torch.cuda.current_device())
    stream = torch.cuda.Stream(dev, priority=-1)  # high priority, as NCCL's and the GPU link's
    comm_hold.hold(1000, sz.hold_ctas[0], stream)  # compiled now, outside every timing
    stream.synchronize()
    piece: dict = {"threads_per_cta": GPU_HOLD_THREADS, "sms": gpu_props()["sms"]}
    lead = int(0.2 * spin_cycles_per_ms(dev))  # 0.2 ms: longer than the host takes to launch the hold
    piece["accuracy"] = []
    for mode, spin in (("queued", lead), ("idle", None)):
        samples = hold_samples(comm_hold, stream, sz.hold_us, sz.hold_ctas, sz.hold_repeats, spin)
        piece["accuracy"] += accuracy_rows(samples, mode)
    piece["accuracy_modes"] = {
        "queued": "a 0.2 ms spin first on the same stream, so both events and the kernel are queued before the GPU "
        "reaches them: the kernel's own time, as a hold queued behind compute runs",
        "idle": "the events around the kernel on an idle stream: the host's launch of the kernel falls between them",
    }
    piece["accuracy_target"] = f"within {HOLD_TOL_US:g} us or {HOLD_TOL_FRAC:.0%} of the time asked"
    piece["accuracy_met"] = {
        mode: all(r["within_target"] for r in piece["accuracy"] if r["mode"] == mode) for mode in ("queued", "idle")
    }
    layer, shapes = gemm_layer(sz.gemm_model, sz.gemm_tp, sz.gemm_tokens, torch.bfloat16, dev)
    piece["gemm"] = shapes | {"layers_per_call": sz.gemm_layers}
    alone, held, covered = slowdown_samples(comm_hold, stream, layer, sz.hold_ctas, sz.slowdown_rounds, sz.gemm_layers)
    piece["slowdown"] = slowdown_rows(alone, held, covered, piece["sms"])
    del layer
    free_memory()
    return piece | {"status": "done"}


def hold_samples(
    comm_hold, stream, us_list, ctas_list, repeats: int, lead: int | None
) -> dict[tuple[int, int], list[float]]:
    """us between CUDA events on `stream` around the hold kernel, per (asked us, CTAs); with
    `lead`, a spin of that many cycles queued on the stream first; the grid in a fresh seeded
    order every repeat."""
    grid = [(us, c) for us in us_list for c in ctas_list]
    samples: dict[tuple[int, int], list[float]] = {g: [] for g in grid}
    for rep in range(repeats):
        random.Random(rep).shuffle(grid)
        for us, ctas in grid:
            torch.cuda.synchronize()
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            if lead is not None:
                with torch.cuda.stream(stream):
                    torch.cuda._sleep(lead)
            a.record(stream)
            comm_hold.hold(us * 1000, ctas, stream)
            b.record(stream)
            b.synchronize()
            samples[us, ctas].append(a.elapsed_time(b) * 1e3)
    return samples


def accuracy_rows(samples: dict[tuple[int, int], list[float]], mode: str = "queued") -> list[dict]:
    """Per (asked us, CTAs): the mean held time and its 95% interval, the error and whether it is
    on target. The plain mean: every hold counts, as every all-reduce of a prefill does."""
    rows = []
    for (us, ctas), ts in sorted(samples.items()):
        m = mean_interval(ts)
        err = m.estimate - us
        rows.append(
            {
                "mode": mode,
                "asked_us": us,
                "ctas": ctas,
                "mean_us": m.estimate,
                "low_us": m.low,
                "high_us": m.high,
                "n": m.n,
            }
            | {
                "error_us": err,
                "error_pct": err / us,
                "within_target": abs(err) <= max(HOLD_TOL_US, HOLD_TOL_FRAC * us),
            }
        )
    return rows


def gemm_layer(model: str, tp: int, tokens: int, dtype: torch.dtype, device) -> tuple:
    """One layer's GEMMs of rank 0's shard of `model` at TP `tp` (QKV, O, gate/up, SwiGLU, down)
    on random data, and the shapes. Attention itself is left out: this part weighs GEMMs."""
    spec = load_spec(model)
    shard = shard_for(spec, tp, 0)
    q, kv, ffn, h = shard.q_heads * spec.head_dim, shard.kv_heads * spec.head_dim, shard.ffn, spec.hidden
    g = torch.Generator(device=device).manual_seed(0)

    def rand(*shape):  # scaled so that bf16 sums stay finite
        return (torch.randn(*shape, generator=g, device=device, dtype=torch.float32) * 0.02).to(dtype)

    x = rand(tokens, h)  # (T, hidden): the normed residual
    attn = rand(tokens, q)  # (T, q_dim): attention's output, the O projection's input
    w_qkv, w_o = rand(q + 2 * kv, h), rand(h, q)  # (q+2kv, hidden), (hidden, q_dim)
    w_gu, w_down = rand(2 * ffn, h), rand(h, ffn)  # (2F, hidden), (hidden, F)

    def layer() -> None:
        F.linear(x, w_qkv)  # (T, q + 2kv)
        F.linear(attn, w_o)  # (T, hidden) partial sum
        F.linear(swiglu(F.linear(x, w_gu)), w_down)  # (T, 2F) -> (T, F) -> (T, hidden)

    shapes = {"model": model, "tp": tp, "tokens": tokens, "hidden": h, "qkv_out": q + 2 * kv, "o_in": q, "ffn": ffn}
    return layer, shapes


def slowdown_samples(comm_hold, stream, layer, ctas_list, rounds: int, calls: int):
    """ms of `calls` layers between CUDA events on the current stream: alone, and with the hold
    kernel on `stream` at each CTA count, started before the GEMMs and lasting past them; rounds
    interleaved in a fresh seeded order. Also, per CTA count and round, whether the hold still
    ran when the GEMMs ended (a repeat it did not cover is no held time)."""
    dev = torch.device("cuda", torch.cuda.current_device())

    def run_layers():
        for _ in range(calls):
            layer()

    run_layers()  # cuBLAS picks its kernels; the clocks leave idle
    torch.cuda.synchronize()
    first = [device_ms(run_layers, dev) for _ in range(3)]
    # even 32 of 132 SMs taken leaves a GEMM-bound call under twice its time alone
    hold_ns = int((3 * max(first) + 2.0) * 1e6)
    # a short spin on the compute stream before its first GEMM, alone too: the hold's CTAs are
    # resident before any GEMM block is, as an all-reduce issued first would be
    lead = int(0.05 * spin_cycles_per_ms(dev))
    alone: list[float] = []
    held: dict[int, list[float]] = {c: [] for c in ctas_list}
    covered: dict[int, list[bool]] = {c: [] for c in ctas_list}
    for r in range(rounds):
        order: list = ["alone", *ctas_list]
        random.Random(r).shuffle(order)
        for name in order:
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            done = None
            if name != "alone":
                comm_hold.hold(hold_ns, name, stream)
                done = torch.cuda.Event(enable_timing=True)
                done.record(stream)
            torch.cuda._sleep(lead)
            start.record()
            run_layers()
            end.record()
            end.synchronize()
            ms = start.elapsed_time(end)
            if done is None:
                alone.append(ms)
            else:
                done.synchronize()
                held[name].append(ms)
                covered[name].append(start.elapsed_time(done) >= ms)
    return alone, held, covered


def slowdown_rows(alone: list[float], held: dict[int, list[float]], covered: dict[int, list[bool]], sms: int):
    """Per CTA count: the held GEMMs against the alone ones of the same rounds (paired), over the
    rounds the hold covered; beside it the slowdown if the GEMMs lost exactly the SMs taken."""
    rows = []
    for ctas, ts in held.items():
        pairs = [(a, t) for a, t, ok in zip(alone, ts, covered[ctas], strict=True) if ok]
        row = {"ctas": ctas, "rounds": len(ts), "covered_rounds": len(pairs)}
        row["sm_share_slowdown"] = sms / (sms - ctas) - 1 if sms and sms > ctas else None
        if len(pairs) >= 2:
            base, other = [a for a, _ in pairs], [t for _, t in pairs]
            row |= {"alone_ms": iv(base), "held_ms": iv(other), "slowdown": change(base, other)}
        rows.append(row)
    return rows


# ---------------------------------------------------------------- 2. standin70b


def part_standin(run: Run, cli=None) -> dict:
    sz = run.sizes
    cli = cli or run.cli
    spec = load_spec(sz.standin_model, sz.standin_layers)
    link = parse_link(sz.standin_link, sz.standin_tp, catalog_links())
    lens = list(sz.standin_lens)
    args = ["bench", "--model", sz.standin_model, "--tp", str(sz.standin_tp), "--ranks", "1", "--link", sz.standin_link]
    args += ["--device", run.device, "--dtype", "bfloat16", "--seq-lens", ",".join(map(str, lens))]
    args += ["--repeats", str(sz.standin_repeats), "--warmup", "1", "--json", str(run.side / "bench-standin.json")]
    args += ["--layers", str(sz.standin_layers)] if sz.standin_layers else []
    if run.hold_hung:  # its GPU link is the same kernel: bench would hang too
        res = {"command": "isotune " + shlex.join(args), "rc": None, "error": f"not run: {run.hold_hung}"}
    else:
        res = cli(args, "bench-standin.log")
    piece: dict = {"bench": res, "model": spec.name, "layers": spec.layers, "tp": sz.standin_tp}
    held = (
        f"a hold kernel on the comm stream, {hold_ctas_text()}"
        if run.device == "cuda"
        else "the host held until the link would deliver it (engine.link)"
    )
    piece["links"] = {
        "ours": f"emulated {link.spec}: each all-reduce {held}, for the time of {link.source}",
        "theirs": "vLLM's multimem (NVLS) all-reduce on an 8xH100 DGX, NVLink 4 through NVSwitch (TokenWeave's "
        "baseline_multimem; no_AR drops every all-reduce)",
    }
    bytes_per = 2  # bfloat16
    piece["link_sum_ms"] = {
        s: 2 * spec.layers * link.allreduce_ms(s * spec.hidden * bytes_per) for s in lens
    }  # what comm only should take: two all-reduces a layer, back to back
    ours: dict[int, dict] = {}
    if res["rc"] == 0:
        for rec in json.loads((run.side / "bench-standin.json").read_text()):
            ours[rec["seq_len"]] = {
                name: {"estimate": rec[f"{name}_ms"], "low": rec[f"{name}_ms_ci"][0], "high": rec[f"{name}_ms_ci"][1]}
                for name in ("baseline", "iso5050", "compute", "comm")
            } | {"iso5050_vs_baseline": rec["iso5050_vs_baseline"]}
        piece["source"] = "isotune bench"
    else:
        # the GPU link may be refused (no hold kernel here): compute only needs no link
        piece["source"] = "in this process, compute only: bench did not run (" + res.get("error", "") + ")"
        rows = compute_only(run, sz.standin_model, sz.standin_layers, sz.standin_tp, lens, (1,), sz.standin_repeats)
        for row in rows:
            ours[row["tokens"]] = {"compute": row["ms"]["1"]}
    piece["ours"] = ours
    try:
        published = tokenweave_rows(sz.published_model, sz.published_tp)
        piece["published"] = {
            "source": "profiles/hardware/PUBLISHED.md, section 2 (TokenWeave artifact figure_11a.csv)"
        }
    except (OSError, ValueError) as e:
        published, piece["published"] = {}, {"error": str(e)}
    piece["comparison"] = compare(ours, published, lens)
    piece["device_note"] = device_note(run)
    partial = res["rc"] != 0
    return piece | (
        {"status": "partial", "reason": res.get("error", "bench failed")} if partial else {"status": "done"}
    )


def hold_ctas_text() -> str:
    from isotune.core.link import GPU_HOLD_CTAS, GPU_HOLD_THREADS

    return f"{GPU_HOLD_CTAS} CTAs of {GPU_HOLD_THREADS} threads (the stand-in's default; --comm-ctas sets it)"


def tokenweave_rows(model: str, tp: int) -> dict[int, dict]:
    """tokens -> {baseline, no_AR, TokenWeave} ms of `model` at `tp`, read from the published table."""
    lines = [ln.strip() for ln in PUBLISHED.read_text().splitlines()]  # the table sits indented in a list
    header = next(
        (i for i, ln in enumerate(lines) if "no_AR" in ln and "TokenWeave" in ln and ln.startswith("|")), None
    )
    if header is None:
        raise ValueError(f"{PUBLISHED.relative_to(ROOT)} has no table with no_AR and TokenWeave columns")
    cols = [c.strip() for c in lines[header].strip("|").split("|")]
    out = {}
    for ln in lines[header + 2 :]:
        if not ln.startswith("|"):
            break
        cells = dict(zip(cols, [c.strip().strip("*") for c in ln.strip("|").split("|")], strict=False))
        if cells.get("model") == model and cells.get("TP") == str(tp):
            out[int(cells["tokens"])] = {k: float(cells[k]) for k in ("baseline", "no_AR", "TokenWeave")}
    if not out:
        raise ValueError(f"{PUBLISHED.relative_to(ROOT)}: no rows for {model} at TP {tp}")
    return out


def compare(ours: dict[int, dict], published: dict[int, dict], lens: list[int]) -> list[dict]:
    """Per length: ours / theirs for compute only (against no_AR), the baseline, and ISO 50/50
    (against TokenWeave's overlap); each side's all-reduce share and speedup."""
    rows = []
    for s in lens:
        mine, theirs = ours.get(s, {}), published.get(s)
        row: dict = {"tokens": s, "published": theirs}
        if theirs is None:
            row["note"] = "no published figure at this length"
            rows.append(row)
            continue
        for name, ref in (("compute", "no_AR"), ("baseline", "baseline"), ("iso5050", "TokenWeave")):
            if name in mine:
                row[f"{name}_over_{ref}"] = mine[name]["estimate"] / theirs[ref]
        row["their_ar_share"] = (theirs["baseline"] - theirs["no_AR"]) / theirs["baseline"]
        row["their_speedup"] = theirs["baseline"] / theirs["TokenWeave"]
        if "baseline" in mine and "compute" in mine:
            b = mine["baseline"]["estimate"]
            row["our_ar_share"] = (b - mine["compute"]["estimate"]) / b
            row["our_speedup"] = b / mine["iso5050"]["estimate"]
        rows.append(row)
    return rows


def device_note(run: Run) -> str:
    """How this device's compute stands to the H100's TokenWeave measured, from the catalog."""
    name = run.report["device"]
    if run.device != "cuda":
        return f"dry run on {name}: a toy model on CPU beside a 70B model on 8 GPUs; the ratios check the plumbing only"
    if "h100" in name.lower():
        return f"{name}: the GPU TokenWeave's figures were measured on (theirs at 8 per board, NVSwitch)"
    if "h200" in name.lower():
        h100, h200 = load_hardware("h100-sxm").gpu, load_hardware("h200-sxm").gpu
        return (
            f"{name}: the same GH100 compute die and clocks as an H100 SXM ({h200['bf16_dense_tflops'].value:g} "
            f"against {h100['bf16_dense_tflops'].value:g} dense bf16 TFLOP/s in the catalog), with HBM3e at "
            f"{h200['hbm_gb_s'].value / 1e3:g} TB/s against {h100['hbm_gb_s'].value / 1e3:g}. Compute-bound GEMM "
            "time is not scaled; memory-bound parts (norms, elementwise steps, short-length attention and "
            "small-token GEMMs) may run faster here than on an H100, so our ratios may read low by that much."
        )
    return f"{name}: not the H100 TokenWeave measured on; its compute differs, and nothing here is scaled for it"


# ---------------------------------------------------------------- compute only, in this process


@torch.inference_mode()
def compute_only(
    run: Run, model: str, layers: int | None, tp: int, lens: list[int], counts: tuple[int, ...], repeats: int,
    split_host: bool = False,
) -> list[dict]:  # fmt: skip
    """Compute-only prefills (no all-reduce) of rank 0's shard of `model` at TP `tp`, built in
    this process, split evenly into each of `counts` chunks, timed interleaved by the shared
    protocol (engine.timing.time_prefills). With `split_host`, per split also the host's ms to
    issue the whole prefill and the GPU's ms to run it with every kernel queued behind a spin
    first (engine.timing.issue_and_run_ms; on CPU both are its time)."""
    spec = load_spec(model, layers)
    info = single(run.device)
    target = Target(spec=spec, tp=tp, dtype="bfloat16", device=run.device, max_len=max(lens))
    m = build_for(target, info)
    align = DEFAULT_ALIGN[run.device]
    rows = []
    try:
        for s in lens:
            ids = torch.tensor(random_prompt(s, spec.vocab, m.seed), device=info.device)  # (S,)
            bounds = {str(k): chunk_bounds(s, [1 / k] * k, align) for k in counts if s // k >= align}
            samples: dict[str, list[float]] = {}
            time_prefills(m, info, ids, {k: (b, COMPUTE_ONLY) for k, b in bounds.items()}, 1, repeats, samples=samples)
            row: dict = {"tokens": s, "ms": {k: iv(ts) for k, ts in samples.items()}}
            row["vs_unsplit"] = {k: change(samples["1"], ts) for k, ts in samples.items() if k != "1"}
            if split_host:
                row["issue"] = {}
                for k, b in bounds.items():
                    ops = build_schedule(spec.layers, len(b) - 1)
                    host, gpu = issue_and_run_ms(
                        lambda m=m, ids=ids, b=b, ops=ops: prefill(m, ids, b, ops, mode=COMPUTE_ONLY), info.device
                    )
                    per = spec.layers * (len(b) - 1)  # layer-chunks
                    row["issue"][k] = {
                        "host_ms": host, "gpu_ms": gpu, "host_per_layer_chunk_ms": host / per,
                        "gpu_per_layer_chunk_ms": None if gpu is None else gpu / per,
                    }  # fmt: skip
            rows.append(row)
            print(
                f"  tp {tp}, {s} tokens: "
                + ", ".join(f"{k} chunk(s) {v['estimate']:.2f} ms" for k, v in row["ms"].items())
            )
    finally:
        del m
        free_memory()
    return rows


# ---------------------------------------------------------------- 3. chunking


def part_chunking(run: Run) -> dict:
    sz = run.sizes
    cut = f"cut to {sz.chunk_layers} layer{'s' if sz.chunk_layers != 1 else ''} to fit the call's time"
    piece: dict = {"model": sz.chunk_model, "layers": sz.chunk_layers, "note": cut}
    piece["method"] = (
        "overhead: compute-only prefills (no all-reduce) split evenly, timed interleaved with the unsplit one "
        "(engine.timing.time_prefills), paired change per repeat; host: the host's ms to issue the whole prefill "
        "onto an empty queue; GPU: ms between CUDA events around the whole prefill with a spin kernel queued "
        "first, so every kernel is queued before the first runs (engine.timing.issue_and_run_ms)"
    )
    by_tp = {}
    for tp in sz.chunk_tps:
        by_tp[tp] = compute_only(
            run, sz.chunk_model, sz.chunk_layers, tp, list(sz.chunk_lens), sz.chunk_counts, sz.chunk_repeats, True
        )
    piece["rows"] = [{"tp": tp, **row} for tp, rows in by_tp.items() for row in rows]
    piece["targets"] = chunking_targets(
        piece["rows"], max(sz.chunk_tps), sz.overhead_from, min(sz.chunk_lens), run.device
    )
    return piece | {"status": "done"}


def chunking_targets(rows: list[dict], tp: int, from_tokens: int, short: int, device: str) -> dict:
    """The two checks: 2 chunks cost at most OVERHEAD_TARGET from `from_tokens` at `tp`; the host
    issues a layer-chunk faster than the GPU runs it at `short` tokens (on CPU the op runs as it is
    issued, one time for both: the check says nothing there)."""
    over = [
        {"tokens": r["tokens"], "overhead": r["vs_unsplit"]["2"]}
        for r in rows
        if r["tp"] == tp and r["tokens"] >= from_tokens and "2" in r["vs_unsplit"]
    ]
    host = []
    for r in rows:
        if r["tokens"] == short:
            for k, v in r.get("issue", {}).items():
                gpu = v["gpu_per_layer_chunk_ms"]
                below = None if gpu is None or device != "cuda" else v["host_per_layer_chunk_ms"] < gpu
                host.append({"tp": r["tp"], "chunks": int(k), "host_ms": v["host_per_layer_chunk_ms"], "gpu_ms": gpu,
                             "below": below})  # fmt: skip
    out = {
        "overhead": {
            "what": f"2-chunk overhead <= {OVERHEAD_TARGET:.0%} from {from_tokens} tokens at tp {tp}",
            "rows": over,
            "met": bool(over) and all(o["overhead"]["estimate"] <= OVERHEAD_TARGET for o in over),
        },
        "host": {
            "what": f"host issue time below GPU time per layer-chunk at {short} tokens",
            "rows": host,
            "met": bool(host) and all(h["below"] for h in host) if device == "cuda" else None,
        },
    }
    if device != "cuda":
        out["host"]["note"] = "on CPU an op runs as it is issued: host and GPU time are one, so this is not judged"
    return out


# ---------------------------------------------------------------- 4. profiles


def catalog_entry(run: Run) -> str | None:
    """The catalog entry of this device: cpu on CPU; else the GPU entry whose name (h100, h200,
    rtx4090 ...) is in the device's, None where none is."""
    if run.device != "cuda":
        return "cpu"
    name = run.report["device"].lower().replace(" ", "")
    for entry in hardware_names():
        if entry != "cpu" and entry.split("-")[0] in name:
            return entry
    return None


def part_profiles(run: Run, cli=None) -> dict:
    sz = run.sizes
    cli = cli or run.cli
    if run.hold_hung:  # a stand-in's profile holds its all-reduces with that kernel
        return {"status": "skipped", "reason": f"not run: {run.hold_hung}"}
    hw = catalog_entry(run)
    if hw is None:
        return {"status": "skipped", "reason": f"no catalog entry in profiles/hardware is a {run.report['device']}"}
    piece: dict = {"hardware": hw, "profiles": [], "estimates": {}}
    lens = ",".join(map(str, sz.profile_lens))
    made: dict[str, list[str]] = {m: [] for m in sz.profile_models}
    left_out = []
    for model in sz.profile_models:
        for tp in sz.profile_tps:
            name = f"profile-{model}-tp{tp}.yaml"
            if run.past_budget():
                left_out.append(name)
                continue
            args = ["profile", "--model", model, "--hardware", hw, "--tp", str(tp), "--ranks", "1"]
            args += ["--device", run.device, "--dtype", "bfloat16", "--layers", str(sz.profile_layers)]
            args += ["--seq-lens", lens, "--repeats", str(sz.profile_repeats), "-o", str(run.side / name)]
            res = cli(args, name.replace(".yaml", ".log"))
            piece["profiles"].append({"model": model, "tp": tp, "file": name} | res)
            if res["rc"] == 0 and (run.side / name).exists():
                made[model].append(str(run.side / name))
    tps = ",".join(map(str, sorted(sz.profile_tps)))
    est_lens = ",".join(map(str, sz.estimate_lens))
    for model in sz.profile_models:
        entry: dict = {}
        for when in ("before", "after"):
            name = f"estimate-{model}-{when}.json"
            if run.past_budget():
                left_out.append(name)
                continue
            if when == "after" and not made[model]:
                entry[when] = {"error": "no profile of this model was made"}
                continue
            args = ["estimate", "--hardware", hw, "--model", model, "--tp", tps, "--seq-lens", est_lens]
            args += ["--dtype", "bfloat16", "--json", str(run.side / name)]
            args += ["--measured", ",".join(made[model])] if when == "after" else []
            res = cli(args, name.replace(".json", ".log"))
            if res["rc"] == 0:
                res["rows"] = json.loads((run.side / name).read_text())
            entry[when] = res
        entry["side_by_side"] = side_by_side(entry.get("before", {}).get("rows"), entry.get("after", {}).get("rows"))
        piece["estimates"][model] = entry
    if left_out:
        piece["left_out"] = left_out
        return piece | {"status": "partial", "reason": run.budget_reason() + ": " + ", ".join(left_out)}
    failed = [p["file"] for p in piece["profiles"] if p["rc"] != 0]
    if failed:
        return piece | {"status": "partial", "reason": "these profiles failed: " + ", ".join(failed)}
    return piece | {"status": "done"}


def side_by_side(before: list[dict] | None, after: list[dict] | None) -> list[dict]:
    """Per (hardware, tp, tokens): the roofline's prediction and the measured profile's."""
    keys = ("baseline_ms", "iso5050_ms", "tuned_ms", "tuned_split", "saving", "comm_share", "compute")
    after_by = {(r["hardware"], r["tp"], r["tokens"]): r for r in after or []}
    rows = []
    for r in before or []:
        k = (r["hardware"], r["tp"], r["tokens"])
        a = after_by.get(k)
        rows.append(
            {"hardware": k[0], "tp": k[1], "tokens": k[2]}
            | {"before": {x: r.get(x) for x in keys}, "after": {x: a.get(x) for x in keys} if a else None}
        )
    return rows


# ---------------------------------------------------------------- report.md and figures


def ms_text(d: dict | None) -> str:
    if not d or d.get("estimate") is None:
        return "-"
    return f"{d['estimate']:.2f} ({d['low']:.2f}..{d['high']:.2f})"


def pct_text(d) -> str:
    if d is None:
        return "-"
    if isinstance(d, list):  # bench's [change, low, high]
        d = {"estimate": d[0], "low": d[1], "high": d[2]}
    return f"{d['estimate']:+.1%} ({d['low']:+.1%}..{d['high']:+.1%})"


def num(x, fmt: str = ".2f") -> str:
    return "-" if x is None else format(x, fmt)


def markdown(rep: dict) -> str:
    dev = rep["device"]
    commit = rep["commit"]
    lines = [
        "# llama3-70b stand-in on one GPU: hold kernel, TokenWeave comparison, chunking, profiles",
        "",
        f"- device: **{dev}**" + (f" ({rep['gpu']['sms']} SMs, {rep['gpu']['memory_gib']} GiB)" if rep.get("gpu") else ""),
        f"- commit: {commit.get('hash')} ({commit.get('from')}"
        + (", with uncommitted changes" if commit.get("uncommitted_changes") else "") + ")",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in rep["versions"].items()),
        f"- started {rep['started']}, last written {rep['ended']} ({rep.get('elapsed_s', 0):.0f} s; budget {rep['budget_s']:.0f} s)",
        "- intervals are 95% confidence intervals: (low..high); 'measured' means in this run on the device above",
    ]  # fmt: skip
    if rep["dry_run"]:
        lines.append(
            "- **dry run**: tiny stand-ins on CPU, checking the script's plumbing; no number here says anything "
            "about a GPU"
        )
    lines += ["", "| part | status | reason |", "|---|---|---|"]
    for p in PARTS:
        piece = rep["parts"].get(p, {"status": "pending"})
        lines.append(f"| {p} | {piece['status']} | {piece.get('reason', '')} |")
    for p, fn in (("hold", md_hold), ("standin70b", md_standin), ("chunking", md_chunking), ("profiles", md_profiles)):
        piece = rep["parts"].get(p)
        if piece is None:
            continue
        lines += ["", f"## {p}", ""]
        if piece.get("error"):
            lines += ["failed:", "", "```", piece["error"].strip()[-3000:], "```"]
        if piece["status"] in ("done", "partial"):
            lines += fn(piece, dev)
        elif not piece.get("error"):
            lines.append(f"{piece['status']}: {piece.get('reason', '')}")
    return "\n".join(lines) + "\n"


def md_hold(p: dict, dev: str) -> list[str]:
    met = ", ".join(f"{mode}: {verdict(ok)}" for mode, ok in p["accuracy_met"].items())
    out = [f"### Accuracy (measured on {dev}; target: {p['accuracy_target']}; {met})", ""]
    out += [f"- {mode}: {text}" for mode, text in p["accuracy_modes"].items()] + [""]
    out += ["| mode | asked us | CTAs | held us, mean (95% CI) | error us | error | on target |"]
    out += ["|---|---|---|---|---|---|---|"]
    for r in p["accuracy"]:
        out.append(
            f"| {r['mode']} | {r['asked_us']} | {r['ctas']} | {r['mean_us']:.2f} ({r['low_us']:.2f}..{r['high_us']:.2f}) "
            f"| {r['error_us']:+.2f} | {r['error_pct']:+.1%} | {'yes' if r['within_target'] else 'no'} |"
        )
    g = p["gemm"]
    out += [
        "",
        f"### GEMMs under the hold (measured on {dev})",
        "",
        f"{g['model']} TP-{g['tp']} shard, {g['tokens']} tokens, bf16: QKV ({g['hidden']}->{g['qkv_out']}), "
        f"O ({g['o_in']}->{g['hidden']}), gate/up ({g['hidden']}->2x{g['ffn']}), SwiGLU, down ({g['ffn']}->"
        f"{g['hidden']}), {g['layers_per_call']} times per timed call. The hold runs on a second stream for the "
        "whole call; 'SM share' is the slowdown if the GEMMs lost exactly the SMs taken (arithmetic, not measured).",
        "",
        "| CTAs | alone ms | held ms | slowdown | SM share | rounds covered |",
        "|---|---|---|---|---|---|",
    ]
    for r in p["slowdown"]:
        out.append(
            f"| {r['ctas']} | {ms_text(r.get('alone_ms'))} | {ms_text(r.get('held_ms'))} | {pct_text(r.get('slowdown'))} "
            f"| {num(r['sm_share_slowdown'], '+.1%')} | {r['covered_rounds']} of {r['rounds']} |"
        )
    return out


def md_standin(p: dict, dev: str) -> list[str]:
    out = [f"{p['model']} ({p['layers']} layers), rank 0's shard of TP {p['tp']}, bf16, synthetic weights; "
           f"ours from {p['source']}.", "", f"- our all-reduce: {p['links']['ours']}",
           f"- theirs: {p['links']['theirs']}", f"- device: {p['device_note']}", ""]  # fmt: skip
    out += [f"Measured on {dev} (ms, typical of the repeats, 95% CI); 'link sum' is the link's time for every "
            "all-reduce back to back (predicted from the catalog).", "",
            "| tokens | baseline | ISO 50/50 | 50/50 vs baseline | compute only | comm only | link sum |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    for s, o in sorted(p["ours"].items(), key=lambda kv: int(kv[0])):
        link_sum = p["link_sum_ms"].get(s, p["link_sum_ms"].get(str(s)))
        out.append(
            f"| {s} | {ms_text(o.get('baseline'))} | {ms_text(o.get('iso5050'))} | {pct_text(o.get('iso5050_vs_baseline'))} "
            f"| {ms_text(o.get('compute'))} | {ms_text(o.get('comm'))} | {num(link_sum)} |"
        )
    out += ["", f"Published (TokenWeave, 8xH100, ms; {p['published'].get('source', p['published'].get('error'))}) "
            f"and ours over theirs (ours measured on {dev}):", "",
            "| tokens | their baseline | no_AR | TokenWeave | compute/no_AR | baseline/baseline | 50-50/TokenWeave "
            "| AR share theirs / ours | speedup theirs / ours |",
            "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in p["comparison"]:
        t = r.get("published")
        if t is None:
            out.append(f"| {r['tokens']} | - | - | - | - | - | - | - | - |")
            continue
        out.append(
            f"| {r['tokens']} | {t['baseline']:g} | {t['no_AR']:g} | {t['TokenWeave']:g} "
            f"| {num(r.get('compute_over_no_AR'))} | {num(r.get('baseline_over_baseline'))} "
            f"| {num(r.get('iso5050_over_TokenWeave'))} | {r['their_ar_share']:.1%} / {num(r.get('our_ar_share'), '.1%')} "
            f"| {r['their_speedup']:.2f}x / {num(r.get('our_speedup'))}x |"
        )
    return out


def md_chunking(p: dict, dev: str) -> list[str]:
    out = [f"{p['model']}, {p['note']}; measured on {dev}. {p['method']}.", ""]
    out += ["| tp | tokens | chunks | unsplit ms | split ms | overhead | host ms / layer-chunk | GPU ms / layer-chunk |",
            "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in p["rows"]:
        for k, ms in r["ms"].items():
            issue = r.get("issue", {}).get(k, {})
            out.append(
                f"| {r['tp']} | {r['tokens']} | {k} | {ms_text(r['ms']['1'])} | {ms_text(ms) if k != '1' else '-'} "
                f"| {pct_text(r['vs_unsplit'].get(k))} | {num(issue.get('host_per_layer_chunk_ms'), '.3f')} "
                f"| {num(issue.get('gpu_per_layer_chunk_ms'), '.3f')} |"
            )
    over, host = p["targets"]["overhead"], p["targets"]["host"]
    out += ["", f"- target: {over['what']}: **{verdict(over['met'])}**"]
    for r in over["rows"]:
        out.append(f"  - {r['tokens']} tokens: {pct_text(r['overhead'])}")
    out += [
        f"- target: {host['what']}: **{verdict(host['met'])}**" + (f" ({host['note']})" if host.get("note") else "")
    ]
    for r in host["rows"]:
        out.append(
            f"  - tp {r['tp']}, {r['chunks']} chunk(s): host {r['host_ms']:.3f} ms, GPU {num(r['gpu_ms'], '.3f')} ms "
            f"per layer-chunk" + ("" if r["below"] is None else f": {'below' if r['below'] else 'not below'}")
        )
    return out


def verdict(met: bool | None) -> str:
    return "not judged" if met is None else "met" if met else "not met"


def md_profiles(p: dict, dev: str) -> list[str]:
    out = [f"Stand-in profiles (`profile --hardware {p['hardware']} --ranks 1`: compute measured on {dev}, the "
           f"{p['hardware']} link from the catalog), in files.tgz:", ""]  # fmt: skip
    for r in p["profiles"]:
        state = "ok" if r["rc"] == 0 else r.get("error", "failed")
        out.append(f"- {r['file']}: {state} ({r['wall_s']} s)")
    for model, e in p["estimates"].items():
        out += ["", f"### estimate {model}: before (predicted from the catalog) and after (predicted from profiles "
                f"measured on {dev})", ""]  # fmt: skip
        for when in ("before", "after"):
            if e.get(when, {}).get("error"):
                out.append(f"- {when}: {e[when]['error']}")
        out += ["| hardware | tp | tokens | before: baseline ms | saving (split) | after: baseline ms | saving (split) "
                "| after's compute |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in e["side_by_side"]:
            b, a = r["before"], r["after"] or {}
            out.append(
                f"| {r['hardware']} | {r['tp']} | {r['tokens']} | {num(b['baseline_ms'])} "
                f"| {num(b['saving'], '.1%')} ({b['tuned_split']}) | {num(a.get('baseline_ms'))} "
                f"| {num(a.get('saving'), '.1%')} ({a.get('tuned_split', '-')}) | {a.get('compute', '-')} |"
            )
    return out


def figures(run: Run, part: str) -> None:
    """The part's PNG, where it has numbers to draw; a missing matplotlib is said, not fatal."""
    piece = run.report["parts"][part]
    draw = {"hold": fig_hold, "standin70b": fig_standin, "chunking": fig_chunking}.get(part)
    if draw is None or piece["status"] not in ("done", "partial"):
        return
    try:
        from isotune.viz.png import png_bytes, pyplot

        fig = draw(pyplot(), piece, run.report["device"])
        if fig is not None:
            atomic_write_bytes(run.out / f"{part}.png", png_bytes(fig))
            piece["figure"] = f"{part}.png"
    except Exception as e:  # noqa: BLE001 - a figure never costs the numbers
        piece["figure_error"] = f"{type(e).__name__}: {e}"


def fig_hold(plt, p: dict, dev: str):
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for mode, style in (("queued", "-"), ("idle", ":")):
        for i, ctas in enumerate(sorted({r["ctas"] for r in p["accuracy"]})):
            rs = [r for r in p["accuracy"] if r["ctas"] == ctas and r["mode"] == mode]
            x = [r["asked_us"] for r in rs]
            y = [r["error_us"] for r in rs]
            err = [[r["mean_us"] - r["low_us"] for r in rs], [r["high_us"] - r["mean_us"] for r in rs]]
            a.errorbar(x, y, yerr=err, marker="o", ls=style, color=f"C{i}", capsize=3, label=f"{mode}, {ctas} CTAs")
    xs = sorted({r["asked_us"] for r in p["accuracy"]})
    tol = [max(HOLD_TOL_US, HOLD_TOL_FRAC * u) for u in xs]
    a.fill_between(xs, [-t for t in tol], tol, alpha=0.15, color="green", label="target")
    a.set(xscale="log", xlabel="asked (us)", ylabel="held - asked (us)", title=f"hold accuracy, measured on {dev}")
    a.set_yscale("symlog", linthresh=HOLD_TOL_US)  # a 5 us miss and a 100 us one both show
    a.legend(fontsize=8)
    rows = [r for r in p["slowdown"] if "slowdown" in r]
    if rows:
        x = list(range(len(rows)))
        y = [100 * r["slowdown"]["estimate"] for r in rows]
        err = [[y[i] - 100 * r["slowdown"]["low"] for i, r in enumerate(rows)],
               [100 * r["slowdown"]["high"] - y[i] for i, r in enumerate(rows)]]  # fmt: skip
        b.bar(x, y, yerr=err, capsize=4, label="measured")
        b.plot(x, [100 * (r["sm_share_slowdown"] or 0) for r in rows], "kx", label="SM share (arithmetic)")
        b.set_xticks(x, [f"{r['ctas']} CTAs" for r in rows])
        b.set(ylabel="GEMM slowdown (%)", title="GEMMs beside the hold")
        b.legend(fontsize=8)
    return fig


def fig_standin(plt, p: dict, dev: str):
    rows = [r for r in p["comparison"] if r.get("published")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(9, 4))
    names = (("baseline", "baseline"), ("compute", "no_AR"), ("iso5050", "TokenWeave"))
    w = 0.13
    for i, r in enumerate(rows):
        ours = p["ours"].get(r["tokens"], p["ours"].get(str(r["tokens"]), {}))
        for j, (mine, theirs) in enumerate(names):
            ax.bar(i + (2 * j - 2.5) * w, r["published"][theirs], w, color=f"C{j}", alpha=0.45,
                   label=f"{theirs} (published, 8xH100)" if i == 0 else None)  # fmt: skip
            if mine in ours:
                o = ours[mine]
                ax.bar(i + (2 * j - 1.5) * w, o["estimate"], w, color=f"C{j}",
                       yerr=[[o["estimate"] - o["low"]], [o["high"] - o["estimate"]]], capsize=2,
                       label=f"{mine} (measured, {dev})" if i == 0 else None)  # fmt: skip
    ax.set_xticks(range(len(rows)), [str(r["tokens"]) for r in rows])
    ax.set(xlabel="tokens", ylabel="prefill ms", title=f"{p['model']} TP {p['tp']}: stand-in vs TokenWeave")
    ax.legend(fontsize=7)
    return fig


def fig_chunking(plt, p: dict, dev: str):
    fig, ax = plt.subplots(figsize=(8, 4))
    for tp in sorted({r["tp"] for r in p["rows"]}):
        rs = [r for r in p["rows"] if r["tp"] == tp]
        for k in sorted({k for r in rs for k in r["vs_unsplit"]}, key=int):
            pts = [(r["tokens"], r["vs_unsplit"][k]) for r in rs if k in r["vs_unsplit"]]
            y = [100 * c["estimate"] for _, c in pts]
            err = [[y[i] - 100 * c["low"] for i, (_, c) in enumerate(pts)],
                   [100 * c["high"] - y[i] for i, (_, c) in enumerate(pts)]]  # fmt: skip
            ax.errorbar([s for s, _ in pts], y, yerr=err, marker="o", capsize=3, label=f"tp {tp}, {k} chunks")
    ax.axhline(100 * OVERHEAD_TARGET, color="grey", ls="--", lw=1)
    ax.axhline(0, color="black", lw=0.5)
    ax.set(xscale="log", xlabel="tokens", ylabel="compute vs unsplit (%)",
           title=f"{p['model']} ({p['note']}), compute only, measured on {dev}")  # fmt: skip
    lens = sorted({r["tokens"] for r in p["rows"]})
    ax.minorticks_off()  # log ticks between the lengths would crowd the ones measured
    ax.set_xticks(lens, [str(s) for s in lens])
    ax.legend(fontsize=8)
    return fig


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="folder for report.json, report.md, the figures and files.tgz")
    ap.add_argument("--dry-run", action="store_true", help="tiny stand-ins on CPU: the plumbing, in seconds")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {','.join(PARTS)}")
    ap.add_argument("--budget-s", type=float, default=540.0, help="no part starts past this many seconds")
    ap.add_argument("--commit", help="the commit this tree is at, where it has no .git (a copied checkout)")
    ap.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda, or cpu with --dry-run")
    ap.add_argument("--child-part", choices=ISOLATED, help=argparse.SUPPRESS)  # the script's own children
    ap.add_argument("--child-json", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress lines reach a cut call's output
    parts = [p.strip() for p in a.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        ap.error(f"unknown part(s) {unknown}: pick from {', '.join(PARTS)}")
    device = a.device or ("cpu" if a.dry_run else "cuda")
    if device == "cuda" and not torch.cuda.is_available():
        ap.error("no CUDA device here: run with --dry-run (or --device cpu) for the plumbing")
    if device == "cuda" and a.dry_run:
        ap.error("--dry-run runs tiny stand-ins on CPU; the GPU run is the script without it")
    sizes = DRY if a.dry_run else Sizes(device=device)
    if device == "cpu" and not a.dry_run:
        ap.error("the full sizes (llama3-70b) need a GPU: add --dry-run")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    fns = {"hold": part_hold, "standin70b": part_standin, "chunking": part_chunking, "profiles": part_profiles}
    if a.child_part:
        return child_part(fns[a.child_part], Run(out, sizes, a.budget_s, [a.child_part], a.commit), a.child_json)
    run = Run(out, sizes, a.budget_s, parts, a.commit)
    print(f"gpu_standin: {run.report['device']}, torch {torch.__version__}, parts {','.join(parts)}", flush=True)
    try:
        for name in [p for p in PARTS if p in parts]:
            if run.past_budget():
                run.report["parts"][name] = {"status": "not started", "reason": run.budget_reason()}
                run.save()
                continue
            print(f"== {name} ({run.elapsed_s():.0f} s in)", flush=True)
            t = time.monotonic()
            piece = run.isolated(name) if name in ISOLATED else guarded(fns[name], run)
            if name == "hold" and piece.get("hung"):
                run.hold_hung = f"the hold kernel hung in part hold ({piece['reason']})"
            piece["elapsed_s"] = round(time.monotonic() - t, 1)
            piece["measured_on"] = run.report["device"]
            run.report["parts"][name] = piece
            figures(run, name)
            run.save()
            print(f"== {name}: {piece['status']} in {piece['elapsed_s']} s", flush=True)
    finally:
        run.save()
        shutil.rmtree(run.side, ignore_errors=True)
    print(f"report: {out / 'report.md'}", flush=True)
    bad = [p for p, v in run.report["parts"].items() if v["status"] == "failed"]
    return 1 if bad else 0


def guarded(fn, run: Run) -> dict:
    """fn(run), or a failed piece with the traceback: the other parts still run."""
    try:
        return fn(run)
    except Exception:  # noqa: BLE001
        piece = {"status": "failed", "reason": "raised: see error", "error": traceback.format_exc()}
        print(piece["error"], flush=True)
        free_memory()
        return piece


def child_part(fn, run: Run, path: str) -> int:
    """One part in this process, for a parent that waits with a limit: its piece into `path`."""
    try:
        piece = guarded(fn, run)
        Path(path).write_text(json.dumps(piece, default=str))
    finally:
        shutil.rmtree(run.side, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
