"""`isotune profile`: measure one TP layer's compute and the group's all-reduce on real ranks,
fit the cost constants, and build a Profile.

Every timing is a median over repeats of the slowest rank (compute is timed per rank and the
max taken, since the slowest rank sets the pace of every collective).
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass

import torch

from isotune import __version__, dist
from isotune.dist import DistInfo
from isotune.profile import CostFit, Profile, save_profile
from isotune.runtime import build_model
from isotune.spec import load_spec


@dataclass(kw_only=True)
class ProfileConfig:
    model: str
    layers: int | None
    dtype: str
    seq_lens: list[int]
    align: int
    repeats: int
    device: str
    threads: int
    seed: int
    out: str


def _median_ms(fn, info: DistInfo, repeats: int, barrier: bool = False) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        if barrier:
            dist.barrier(info)
        dist.synchronize(info)
        t0 = time.perf_counter()
        fn()
        dist.synchronize(info)
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(dist.max_across(ts, info))


def attn_points(seq_lens: list[int], align: int) -> list[tuple[int, int]]:
    """(query tokens, prefix tokens) pairs covering the chunk shapes a search will try."""
    pts = set()
    for s in seq_lens:
        for q in (s, s // 2, s // 4, s // 8):
            q = max(align, q // align * align)
            for p in (0, (s - q) // 2 // align * align, s - q):
                if p >= 0 and q + p <= s:
                    pts.add((q, p))
    return sorted(pts)


def token_points(seq_lens: list[int], align: int) -> list[int]:
    return sorted({max(align, t // align * align) for s in seq_lens for t in (s, s // 2, s // 4, s // 8)})


def _lstsq(rows: list[list[float]], ys: list[float]) -> list[float]:
    """Least squares in relative error (rows scaled by 1/y): small ops count as much as big ones."""
    y = torch.tensor(ys, dtype=torch.float64).clamp_min(1e-6)
    a = torch.tensor(rows, dtype=torch.float64) / y[:, None]
    return torch.linalg.lstsq(a, torch.ones_like(y).unsqueeze(1)).solution.squeeze(1).tolist()


@torch.inference_mode()
def measure(info: DistInfo, cfg: ProfileConfig, progress=None) -> Profile:
    spec = load_spec(cfg.model, cfg.layers)
    dtype = getattr(torch, cfg.dtype)
    s_max = max(cfg.seq_lens)
    one_layer = spec.with_layers(1)  # every layer is the same: measure layer 0
    model = build_model(one_layer, info, dtype, s_max, cfg.seed)
    x_full = torch.randn(s_max, spec.hidden, generator=torch.Generator().manual_seed(0)).to(info.device, dtype)
    apts, tpts = attn_points(cfg.seq_lens, cfg.align), token_points(cfg.seq_lens, cfg.align)
    step = progress or (lambda *_: None)

    attn = []
    for q, p in apts:
        attn.append([q, p, _median_ms(lambda q=q, p=p: model.attn(0, x_full[:q], p), info, cfg.repeats)])
        step(f"attention q={q} prefix={p}")
    mlp = []
    for t in tpts:
        mlp.append([t, _median_ms(lambda t=t: model.mlp(0, x_full[:t]), info, cfg.repeats)])
        step(f"MLP tokens={t}")
    ar = []
    for t in tpts:
        buf = x_full[:t].clone()
        ar.append(
            [
                buf.numel() * buf.element_size(),
                _median_ms(lambda b=buf: _all_reduce(b), info, cfg.repeats, barrier=True),
            ]
        )
        step(f"all-reduce {t} tokens")

    # Compute while an all-reduce flies: MLP of half the longest prompt beside an all-reduce of
    # the same message; the extra time relative to the overlapped span is the slowdown.
    t = tpts[len(tpts) // 2]
    buf = x_full[:t].clone()
    alone = _median_ms(lambda: model.mlp(0, x_full[:t]), info, cfg.repeats)

    def overlapped():
        h = dist.all_reduce_async(buf)
        model.mlp(0, x_full[:t])
        dist.synchronize(info)
        return h

    together = _median_ms(lambda: _wait(overlapped()), info, cfg.repeats, barrier=True)
    ar_t = next(ms for n, ms in ar if n == buf.numel() * buf.element_size())
    slowdown = max(0.0, (together - max(alone, ar_t)) / max(1e-9, min(alone, ar_t))) if info.world > 1 else 0.0
    step("compute/comm interference")

    a = _lstsq([[1.0, q, q * (p + q / 2)] for q, p, _ in attn], [ms for *_, ms in attn])
    b = _lstsq([[1.0, t] for t, _ in mlp], [ms for _, ms in mlp])
    c = _lstsq([[1.0, n / 1e6] for n, _ in ar], [ms for _, ms in ar]) if info.world > 1 else [0.0, 0.0]
    hosts = len(set(dist.gather_objects(platform.node(), info)))
    return Profile(
        model={"name": spec.name, "fingerprint": spec.fingerprint(), "hidden": spec.hidden, "layers": spec.layers},
        topology={
            "tp": info.world,
            "backend": info.backend or "none",
            "device": _device_name(info),
            "device_count": info.world,
            "interconnect": dist.interconnect(info),
            "hosts": hosts,
            "dtype": cfg.dtype,
            "threads_per_rank": cfg.threads if info.device.type == "cpu" else None,
        },
        software={"isotune": __version__, "torch": str(torch.__version__)},
        fit=CostFit(attn=a, mlp=b, latency_ms=max(0.0, c[0]), ms_per_mb=max(0.0, c[1]), compute_slowdown=slowdown),
        attn_samples=attn,
        mlp_samples=mlp,
        allreduce_samples=ar,
        slowdown_samples=[[alone, together]],
    )


def _all_reduce(buf):
    _wait(dist.all_reduce_async(buf))


def _wait(handle) -> None:
    if handle is not None:
        handle.wait()


def _device_name(info: DistInfo) -> str:
    if info.device.type == "cuda":
        return torch.cuda.get_device_name(info.device)
    return f"cpu ({platform.processor() or platform.machine()})"


def steps_for(cfg: ProfileConfig) -> int:
    return len(attn_points(cfg.seq_lens, cfg.align)) + 2 * len(token_points(cfg.seq_lens, cfg.align)) + 1


def profile_worker(info: DistInfo, cfg: ProfileConfig) -> int:
    from rich.progress import Progress

    if not info.is_main:
        measure(info, cfg)
        return 0
    with Progress(transient=True) as bar:
        task = bar.add_task("profiling", total=steps_for(cfg))
        prof = measure(info, cfg, lambda what: bar.update(task, advance=1, description=what))
    save_profile(prof, cfg.out)
    from isotune.show import show_profile

    show_profile(prof, cfg.out)
    return 0
