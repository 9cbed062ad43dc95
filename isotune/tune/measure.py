"""What `isotune profile` measures on ranks (commands.profile.job runs it): the model's compute
inside real prefills (tune.in_context), the group's all-reduce by message size (back to back and after an idle gap: token-bucket
links), the slowdown compute suffers while an all-reduce flies, and what an all-reduce costs
inside a whole prefill; fit the cost constants and build a Profile that carries its own check.

Every timing is `core.stats.typical` over repeats of the slowest rank (compute is timed per
rank and the max taken, since the slowest rank sets the pace of every collective).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import torch

from isotune.core.fit import fit_attention, table_of
from isotune.core.profile import CostFit, Profile
from isotune.core.stats import typical
from isotune.engine import dist
from isotune.engine.model import TPModel, random_prompt
from isotune.engine.rank import DistInfo
from isotune.engine.timing import device_ms, issue_and_run_ms, layer_issue_ms, run_layer0
from isotune.engine.topology import describe, dtype_name
from isotune.tune import in_context

COMM_REPEATS = 3  # all-reduces vary most and cost least to repeat


@dataclass(frozen=True, kw_only=True)
class Sweep:
    """What a profile measures: the prompt lengths it must cover, their chunk alignment, and the
    timed repeats per measurement."""

    seq_lens: list[int]
    align: int
    repeats: int


def _once_ms(fn, info: DistInfo, barrier: bool = False, idle_s: float = 0.0) -> float:
    """This rank's ms for one call of fn (after a barrier and an idle gap when asked), from CUDA
    events on GPUs (engine.timing.device_ms)."""
    if barrier:
        dist.barrier(info)
    dist.synchronize(info.device)
    if idle_s:
        time.sleep(idle_s)
    return device_ms(fn, info.device)


def _typical_ms(fn, info: DistInfo, repeats: int, barrier: bool = False, idle_s: float = 0.0) -> float:
    fn()  # warm-up
    ts = [_once_ms(fn, info, barrier, idle_s) for _ in range(repeats)]
    return typical(dist.max_across(ts, info.device))


def token_points(seq_lens: list[int], align: int) -> list[int]:
    """Message sizes (in tokens) the all-reduces are timed at: the chunk shapes a search will try."""
    return sorted({max(align, t // align * align) for s in seq_lens for t in (s, s // 2, s // 4, s // 8)})


def _lstsq(rows: list[list[float]], ys: list[float]) -> list[float]:
    """Least squares in relative error (rows scaled by 1/y): small ops count as much as big ones."""
    y = torch.tensor(ys, dtype=torch.float64).clamp_min(1e-6)
    a = torch.tensor(rows, dtype=torch.float64) / y[:, None]
    return torch.linalg.lstsq(a, torch.ones_like(y).unsqueeze(1)).solution.squeeze(1).tolist()


@torch.inference_mode()
def measure(model: TPModel, info: DistInfo, cfg: Sweep, progress=None) -> Profile:
    """The profile of `model` on this group (a collective: every rank calls it); `progress(what)`
    is called after each step (steps_for counts them)."""
    spec = model.spec
    s_max = max(cfg.seq_lens)
    x_full = torch.randn(s_max, spec.hidden, generator=torch.Generator().manual_seed(0)).to(info.device, model.dtype)
    tpts = token_points(cfg.seq_lens, cfg.align)
    step = progress or (lambda *_: None)
    ids = {s: torch.tensor(random_prompt(s, spec.vocab, model.seed), device=info.device) for s in cfg.seq_lens}

    attn, mlp = [], []
    for s in cfg.seq_lens:
        a, m = in_context.compute_samples(model, info, ids[s], cfg.align, cfg.repeats)
        attn, mlp = attn + a, mlp + m
        step(f"compute inside prefills, {s} tokens")
    host = _host_lane(model, info, x_full, cfg.align, sorted({int(t) for t, _ in mlp}))
    ar = []
    for t in tpts:
        buf = x_full[:t].clone()
        ar.append(
            [
                buf.numel() * buf.element_size(),
                _typical_ms(lambda b=buf: _all_reduce(b), info, COMM_REPEATS * cfg.repeats, barrier=True),
            ]
        )
        step(f"all-reduce {t} tokens")
    # The same messages after the link sat idle: a token-bucket-shaped link sends them faster.
    # The gap is long enough to refill any bucket that the longest message could drain.
    idle_s = min(0.5, 2 * max((ms for _, ms in ar), default=0.0) / 1e3) if info.tp > 1 else 0.0
    ar_idle = []
    for t in tpts:
        buf = x_full[:t].clone()
        ms = _typical_ms(lambda b=buf: _all_reduce(b), info, COMM_REPEATS * cfg.repeats, barrier=True, idle_s=idle_s)
        ar_idle.append([buf.numel() * buf.element_size(), ms])
        step(f"all-reduce {t} tokens after idle")

    # Compute while an all-reduce flies: the longest message beside the shortest MLP that
    # outlasts it, so the whole all-reduce overlaps compute; the extra time relative to the
    # overlapped span is the slowdown. Alone, comm and together are interleaved repeat by repeat
    # (drift cancels) and the median of the per-repeat ratios kept (a ratio of differences of
    # noisy times, not a timing: one wild repeat must not move it): it gets twice the repeats.
    buf = x_full[: tpts[-1]].clone()
    ar_big = ar[-1][1]
    t = next((int(n) for n, ms in sorted(mlp) if ms >= 1.2 * ar_big), tpts[-1])

    def overlapped():
        h = dist.all_reduce_async(buf)
        model.mlp(0, x_full[:t])
        _wait(h)

    slowdown, slow_samples = 0.0, []
    if info.tp > 1:
        overlapped()  # warm-up
        for _ in range(2 * cfg.repeats):
            alone, comm, together = (
                _once_ms(f, info, barrier=True)
                for f in (lambda: model.mlp(0, x_full[:t]), lambda: _all_reduce(buf), overlapped)
            )
            slow_samples.append([alone, comm, together])
        per_rank = dist.gather_objects(slow_samples, info)
        slow_samples = [[max(r[i][j] for r in per_rank) for j in range(3)] for i in range(len(slow_samples))]
        ratios = [max(0.0, (tg - max(a, c)) / max(1e-9, min(a, c))) for a, c, tg in slow_samples]
        slowdown = statistics.median(ratios)
    step("compute/comm interference")

    # the tables through the in-context samples predict; the lines stay in the file as a summary
    # at a glance (and the schema's required fields)
    a = _lstsq([[1.0, q, q * (p + q / 2)] for q, p, _ in attn], [ms for *_, ms in attn])
    b = _lstsq([[1.0, t] for t, _ in mlp], [ms for _, ms in mlp])
    c = _lstsq([[1.0, n / 1e6] for n, _ in ar], [ms for _, ms in ar]) if info.tp > 1 else [0.0, 0.0]
    latency, rate = max(0.0, c[0]), max(0.0, c[1])
    burst_mb, burst_rate = fit_burst(ar_idle, latency, rate) if info.tp > 1 else (0.0, 0.0)
    attn_table, per_pair = fit_attention(attn)
    topology, software = describe(info, dtype_name(model), model.ops.compiled)
    prof = Profile(
        model={"name": spec.name, "fingerprint": spec.fingerprint(), "hidden": spec.hidden, "layers": spec.layers},
        topology=topology,
        software=software,
        fit=CostFit(
            attn=a,
            mlp=b,
            latency_ms=latency,
            ms_per_mb=rate,
            compute_slowdown=slowdown,
            burst_mb=burst_mb,
            burst_ms_per_mb=burst_rate,
            attn_table=attn_table,
            attn_ms_per_pair=per_pair,
            mlp_table=table_of(mlp),
            host_attn_ms=host.get("attn", 0.0),
            host_mlp_ms=host.get("mlp", 0.0),
            gpu_layer_table=host.get("gpu_layer"),  # [] on a GPU where no size could be separated
        ),
        attn_samples=attn,
        mlp_samples=mlp,
        allreduce_samples=ar,
        allreduce_idle_samples=ar_idle,
        slowdown_samples=slow_samples,
    )
    # whole prefills: the rank skew and in-context all-reduce cost, and the profile's check
    whole = {}
    for s in cfg.seq_lens:
        whole[s] = in_context.whole_prefills(model, info, ids[s], cfg.align, cfg.repeats)
        step(f"whole prefills, {s} tokens")
    if info.tp > 1:
        prof.fit.sync_skew, prof.fit.comm_scale = in_context.calibrate(prof, whole, spec.layers)
    prof.check_samples = in_context.check_rows(prof, whole, spec.layers)
    return prof


def fit_burst(idle: list[list[float]], latency: float, rate: float) -> tuple[float, float]:
    """(burst_mb, burst_ms_per_mb) of a token bucket that best explains all-reduces after idle
    gaps, given the back-to-back latency and rate; (0, 0) when no bucket fits clearly better.

    Candidate bucket sizes B come from the samples; for each, the burst rate is the one-parameter
    least squares (in relative error) of t - latency - rate*max(0, mb-B) on min(mb, B).
    """
    pts = [(n / 1e6, ms) for n, ms in idle if ms > 0]
    if not pts or rate <= 0:
        return 0.0, 0.0

    def err(b: float, f: float) -> float:
        return sum(((latency + f * min(mb, b) + rate * max(0.0, mb - b)) / ms - 1) ** 2 for mb, ms in pts)

    plain = err(0.0, 0.0)
    best = (plain, 0.0, 0.0)
    # a bucket is only identifiable when some message overflows it: candidates stay below the largest
    biggest = max(mb for mb, _ in pts)
    for b in sorted({c for mb, _ in pts for c in (mb * 0.75, mb, mb * 1.5) if c < biggest}):
        x = [min(mb, b) / ms for mb, ms in pts]
        y = [(ms - latency - rate * max(0.0, mb - b)) / ms for mb, ms in pts]
        f = min(rate, max(0.0, sum(a * c for a, c in zip(x, y, strict=True)) / sum(a * a for a in x)))
        e = err(b, f)
        # a bucket must earn its two parameters: a clearly better fit and a clearly faster burst
        if e < min(best[0], 0.8 * plain) and f < 0.8 * rate:
            best = (e, b, f)
    return best[1], best[2]


def _host_lane(model, info: DistInfo, x: torch.Tensor, align: int, tokens: list[int]) -> dict:
    """GPUs: the host's ms to issue one attention and one MLP op (their launches hardly depend on
    the chunk's size: timed at `align` tokens), and the GPU's own ms for layer 0's two ops at each
    chunk size in `tokens`, every kernel queued before the first runs
    (engine.timing.issue_and_run_ms); the slowest rank's of each. Nothing on CPU ranks, where the
    host is the compute. x (max tokens, hidden) holds the chunks."""
    if info.device.type != "cuda":
        return {}
    attn, mlp = dist.max_across(list(layer_issue_ms(model, x[:align])), info.device)

    gpu = [issue_and_run_ms(lambda t=t: run_layer0(model, x, [0, t]), info.device)[1] for t in tokens]
    # a size no hold could time on some rank (None: inf here) is left out
    gpu = dist.max_across([math.inf if ms is None else ms for ms in gpu], info.device)
    return {
        "attn": attn,
        "mlp": mlp,
        "gpu_layer": [[t, ms] for t, ms in zip(tokens, gpu, strict=True) if ms < math.inf],
    }


def _all_reduce(buf):
    _wait(dist.all_reduce_async(buf))


def _wait(handle) -> None:
    if handle is not None:
        handle.wait()


def steps_for(cfg: Sweep) -> int:
    return 2 * len(cfg.seq_lens) + 2 * len(token_points(cfg.seq_lens, cfg.align)) + 1
