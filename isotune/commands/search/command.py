"""`isotune search`: check the flags and the storage before any rank starts, then run the studies
on the ranks (measured objective: search.job) or on the cost model in this process (model
objective)."""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from pathlib import Path

from isotune.commands.prologue import prepare
from isotune.commands.search.job import SearchJob, search_model
from isotune.core.chunking import MAX_CHUNKS, parse_seq_lens, resolve_align
from isotune.core.errors import BadInput
from isotune.core.files import check_writable
from isotune.core.pack import check_pack_size
from isotune.core.profile import Profile, check_profile_fits, load_profile
from isotune.core.spec import check_seq_lens, load_spec
from isotune.core.target import Target, TargetFlags, parse_ctas, parse_tp
from isotune.engine import launcher
from isotune.engine.launch import launch
from isotune.engine.target import resolve_target
from isotune.tune.config import GRID, MEASURED, MODEL, TPE, SearchConfig
from isotune.tune.search import open_studies
from isotune.tune.storage import default_storage, storage_url


def search(*, target: TargetFlags, **opts) -> int:
    """The `search` command (its flags as keywords): validate, then search; the exit code."""
    caps = parse_ctas(target.comm_ctas, many=True)
    if len(caps) > 1:
        return search_caps(caps, target=target, **opts)
    return _search_one(target, **opts)


def _search_one(target: TargetFlags, **opts) -> int:
    cfg, fitted = search_config(target=target, **opts)
    if launcher.launch_rank() == 0:  # only rank 0 touches the storage (under torchrun every rank runs this)
        open_studies(cfg)  # a bad storage or a study made with other parameters fails here, before launch
    if fitted is None:  # --objective model
        return search_model(cfg)
    return launch(SearchJob(cfg=cfg), fitted)


def search_config(
    *,
    target: TargetFlags,
    out: str,
    seq_lens: str,
    trials: int,
    max_chunks: int,
    align: int | None,
    objective: str,
    profile: str | None,
    storage: str | None,
    study_name: str | None,
    sampler: str,
    plots: str | None,
    warmup: int,
    repeats: int,
    time_budget: float | None,
    force: bool = False,
    revalidate: bool = False,
    pack: int | None = None,
) -> tuple[SearchConfig, Target | None]:
    """The checked SearchConfig of the command's flags (BadInput names the first bad one), and the
    fitted target its ranks run on (None for --objective model: no ranks)."""
    if objective not in (MEASURED, MODEL):
        raise BadInput(f"--objective {objective!r} is unknown: use measured or model")
    if sampler not in (TPE, GRID):
        raise BadInput(f"--sampler {sampler!r} is unknown: use tpe or grid")
    if not 1 <= max_chunks <= MAX_CHUNKS:
        raise BadInput(f"--max-chunks {max_chunks} is out of range: use 1..{MAX_CHUNKS}")
    for flag, value, least in (("--trials", trials, 1), ("--repeats", repeats, 1), ("--warmup", warmup, 0)):
        if value < least:
            raise BadInput(f"{flag} {value}: use {least} or more")
    if time_budget is not None and not time_budget > 0:
        raise BadInput(f"--time-budget {time_budget} must be a positive number of seconds")
    lens = parse_seq_lens(seq_lens)
    slots = check_pack_size(pack, lens)
    check_writable(out, "--out")
    fitted = None
    if objective == MODEL:
        if target.comm_ctas:
            raise BadInput("--comm-ctas is measured on GPUs: it does not apply to --objective model")
        if target.link:
            raise BadInput(
                "--link emulates a link for measured searches: --objective model costs the profile's own link"
            )
        parse_tp(target.tp)  # a bad --tp is refused even where the profile's TP size is what counts
        prof = load_profile(profile) if profile else None
        name, fingerprint, sim_layers, tp, dev, dtype = _model_target(prof, target if target.model else None, lens)
        align = resolve_align(align, dev)
        compile, ctas, link = target.compile, None, None
    else:
        prep = prepare(resolve_target(target), lens, profile_path=profile, force=force, align=align,
                       max_len=pack and min(pack, max(lens)), slots=slots, prefill_tokens=max(lens))  # fmt: skip
        fitted, prof, align = prep.target, prep.profile, prep.align
        spec = fitted.spec
        name, fingerprint, sim_layers = spec.name, spec.fingerprint(), spec.layers
        tp, dev, dtype, compile, ctas = fitted.tp, fitted.device, fitted.dtype, fitted.compile, fitted.comm_ctas
        link = fitted.link.spec if fitted.link else None
    if lens[0] < align:
        raise BadInput(f"--seq-lens {lens[0]} is shorter than the {align}-token alignment: use longer lengths")
    if plots:
        _check_plots_dir(plots)
    cfg = SearchConfig(
        dtype=dtype,
        seq_lens=lens,
        trials=trials,
        max_chunks=max_chunks,
        align=align,
        objective=objective,
        sampler=sampler,
        profile=prof,
        sim_layers=sim_layers,
        storage=storage_url(storage, default_storage(out)),
        study_prefix=study_name
        or f"isotune-{name}-L{sim_layers}-tp{tp}-{dtype}-{dev}-{objective}"
        + ("-compiled" if compile else "")
        + ("-link" + re.sub(r"[^\w.]+", "_", link) if link else "")
        + (f"-ctas{ctas}" if ctas else "")
        + (f"-pack{pack}" if pack else ""),
        out=out,
        model_name=name,
        fingerprint=fingerprint,
        tp=tp,
        warmup=warmup,
        repeats=repeats,
        device=dev,
        seed=target.seed,
        compile=compile,
        comm_ctas=ctas,
        link=link,
        plots_dir=plots,
        time_budget_s=time_budget,
        revalidate=revalidate,
        pack=pack,
    )
    return cfg, fitted


def _model_target(
    prof: Profile | None, target: TargetFlags | None, lens: list[int]
) -> tuple[str, str, int, int, str, str]:
    """--objective model plans for the profile's hardware: (name, fingerprint, simulated layers,
    tp, device, dtype). --model/--layers (`target`, when --model was given) may change the layer
    count, not the model."""
    if prof is None:
        raise BadInput("--objective model needs --profile P.yaml (write one with isotune profile)")
    spec = load_spec(target.model, target.layers) if target else None
    if spec is not None:
        check_profile_fits(prof, spec, None)
        check_seq_lens(spec, lens, "--seq-lens")
    dev = "cuda" if prof.topology.get("backend") == "nccl" else "cpu"
    name = spec.name if spec else prof.model["name"]
    fingerprint = spec.fingerprint() if spec else prof.model["fingerprint"]
    sim_layers = spec.layers if spec else int(prof.model["layers"])
    return name, fingerprint, sim_layers, int(prof.topology["tp"]), dev, prof.topology["dtype"]


def _check_plots_dir(plots: str) -> None:
    from isotune.viz.png import pyplot

    if not Path(plots).is_dir() and not Path(plots).parent.is_dir():
        raise BadInput(f"--plots {plots}: its parent folder does not exist: create it or pick another folder")
    if Path(plots).exists() and not Path(plots).is_dir():
        raise BadInput(f"--plots {plots} is a file: give a folder")
    pyplot()  # a missing matplotlib is a one-line hint before the search, not after it


def search_caps(caps: list[int], *, target: TargetFlags, out: str, **opts) -> int:
    """--comm-ctas 4,8,16: one whole search per cap (each its own launch: NCCL takes the cap
    when it makes its communicator), each plan written beside `out`; the plan whose buckets are
    fastest (geometric mean of their plan ms) is copied to `out`, and every cap's line says why."""
    import math

    from isotune.core.files import atomic_write_text
    from isotune.core.plan import load_plan

    if launcher.launched_externally():
        raise BadInput("several --comm-ctas values need isotune to spawn its ranks: give one under a launcher")
    stem = out[: -len(".yaml")] if out.endswith(".yaml") else out
    name, plots = opts.pop("study_name", None), opts.pop("plots", None)
    if plots:
        Path(plots).mkdir(exist_ok=True)  # one subfolder per cap, or each cap's plots would replace the last's
    means = {}
    for cap in caps:
        path = f"{stem}.ctas{cap}.yaml"
        per_cap = {
            "study_name": f"{name}-ctas{cap}" if name else None,
            "plots": f"{plots}/ctas{cap}" if plots else None,
        }
        code = _search_one(replace(target, comm_ctas=str(cap)), out=path, **opts, **per_cap)
        if code != 0:
            return code
        plan = load_plan(path)
        means[cap] = math.exp(sum(math.log(b.plan_ms) for b in plan.buckets) / len(plan.buckets))
    best = min(means, key=means.get)
    for cap, ms in means.items():
        verdict = "kept: the fastest" if cap == best else f"{ms / means[best] - 1:+.1%} vs the kept cap"
        print(
            f"--comm-ctas {cap}: plan {ms:.1f} ms (geometric mean over lengths, measured in its own run); {verdict}",
            file=sys.stderr,
        )
    atomic_write_text(out, open(f"{stem}.ctas{best}.yaml", encoding="utf-8").read())
    print(f"wrote {out} (the --comm-ctas {best} plan)", file=sys.stderr)
    return 0
