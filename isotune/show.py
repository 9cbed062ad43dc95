"""Rich tables for profiles and plans."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from isotune.plan import Plan
from isotune.profile import Profile


def console() -> Console:
    """A console that keeps wide tables readable when output goes to a file or pipe."""
    c = Console()
    return c if c.is_terminal else Console(width=160)


def show_profile(p: Profile, path: str = "") -> None:
    out = console()
    topo, fit = p.topology, p.fit
    head = Table(title=f"profile {path}".strip(), show_header=False)
    head.add_row("model", f"{p.model['name']} ({p.model['layers']} layers, hidden {p.model['hidden']})")
    head.add_row(
        "topology",
        f"tp {topo['tp']} {topo['backend']} on {topo['device']}, {topo['interconnect']}, "
        f"{topo['hosts']} host(s), {topo['dtype']}",
    )
    head.add_row("software", ", ".join(f"{k} {v}" for k, v in p.software.items()))
    head.add_row("attention ms", f"{fit.attn[0]:.3g} + {fit.attn[1]:.3g}·q + {fit.attn[2]:.3g}·q·(p + q/2)")
    head.add_row("MLP ms", f"{fit.mlp[0]:.3g} + {fit.mlp[1]:.3g}·tokens")
    head.add_row("all-reduce ms", f"{fit.latency_ms:.3g} + {fit.ms_per_mb:.3g}·MB (back-to-back)")
    if fit.burst_mb:
        head.add_row("link token bucket", f"first {fit.burst_mb:.3g} MB after idle at {fit.burst_ms_per_mb:.3g} ms/MB")
    head.add_row("compute slowdown under comm", f"{fit.compute_slowdown:.1%}")
    out.print(head)

    t = Table(title="measured vs fitted (per layer, slowest rank)")
    for col in ("op", "shape", "measured ms", "fitted ms", "error"):
        t.add_column(col, justify="right" if col != "op" else "left")
    rows = [("attention", f"q={q:.0f} p={pfx:.0f}", ms, fit.attn_ms(int(q), int(pfx))) for q, pfx, ms in p.attn_samples]
    rows += [("MLP", f"{n:.0f} tokens", ms, fit.mlp_ms(int(n))) for n, ms in p.mlp_samples]
    rows += [("all-reduce", f"{n / 1e6:.2f} MB", ms, fit.allreduce_ms(int(n))) for n, ms in p.allreduce_samples]
    rows += [
        ("all-reduce after idle", f"{n / 1e6:.2f} MB", ms, fit.allreduce_ms(int(n), fit.burst_mb))
        for n, ms in p.allreduce_idle_samples
    ]
    for op, shape, ms, pred in rows:
        t.add_row(op, shape, f"{ms:.3f}", f"{pred:.3f}", f"{(pred - ms) / ms:+.0%}" if ms > 0 else "-")
    out.print(t)


def show_plan(plan: Plan, path: str = "") -> None:
    out = console()
    topo = plan.topology
    t = Table(
        title=f"plan {path}: {plan.model.get('name')}, tp {topo.get('tp')} {topo.get('backend')} on "
        f"{topo.get('device')}, {topo.get('dtype')}, align {plan.align}".replace("plan :", "plan:")
    )
    cols = ("tokens", "searched", "chunks", "ratios", "plan ms", "baseline ms", "vs baseline", "50/50 vs baseline")
    for col in (*cols, "trials"):
        t.add_column(col, justify="left" if col in ("tokens", "ratios") else "right")

    def vs(ms: float | None, base: float) -> str:
        return f"{(ms / base - 1):+.1%}" if ms and base else "-"

    for b in plan.buckets:
        t.add_row(
            f"{b.min_tokens}..{b.max_tokens}",
            str(b.seq_len or "-"),
            str(b.chunks),
            " / ".join(f"{r:.3f}" for r in b.ratios),
            f"{b.plan_ms:.1f}",
            f"{b.baseline_ms:.1f}",
            vs(b.plan_ms, b.baseline_ms),
            vs(b.iso5050_ms, b.baseline_ms),
            str(b.trials if b.trials is not None else "-"),
        )
    out.print(t)
    st = plan.study
    if st:
        out.print(
            f"study: {st.get('objective')} objective, {st.get('sampler')} sampler, up to {st.get('max_chunks')} "
            f"chunks, {st.get('trials')} trials per length; storage {st.get('storage')}, name {st.get('name')}-s<tokens>"
        )


def show_studies(url: str, only: str | None = None) -> None:
    """The studies in an Optuna storage: trials by state, measured splits, best time and split;
    with `only`, that study's trials one by one."""
    import optuna

    from isotune.space import ratios_of
    from isotune.studies import counts, open_storage

    storage = open_storage(url)
    out = console()
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    if only is not None and only not in {s.study_name for s in summaries}:
        from isotune.errors import BadInput

        raise BadInput(f"no study {only!r} in {url}: run 'isotune show {url}' to list them")
    if not summaries:
        out.print(f"no studies in {url}")
        return
    t = Table(title=f"studies in {url}")
    for col in ("study", "measured", "complete", "pruned", "failed", "running", "waiting", "best ms", "best split"):
        t.add_column(col, justify="left" if col in ("study", "best split") else "right")
    from optuna.trial import TrialState as S

    for summary in sorted(summaries, key=lambda x: x.study_name):
        if only is not None and summary.study_name != only:
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        n = counts(study)
        done = [x for x in study.get_trials(deepcopy=False, states=(S.COMPLETE,)) if "bounds" in x.user_attrs]
        best = min(done, key=lambda x: x.value, default=None)
        t.add_row(
            summary.study_name,
            str(n["spent"]),
            str(n[S.COMPLETE]),
            str(n[S.PRUNED]),
            str(n[S.FAIL]),
            str(n[S.RUNNING]),
            str(n[S.WAITING]),
            f"{best.value:.1f}" if best else "-",
            " / ".join(f"{r:.2f}" for r in ratios_of(best.user_attrs["bounds"])) if best else "-",
        )
        if only is not None:
            out.print(t)
            _show_trials(study)
            return
    out.print(t)


def _show_trials(study) -> None:
    from isotune.space import ratios_of

    t = Table(title=f"trials of {study.study_name}")
    for col in ("#", "state", "split", "ms", "note"):
        t.add_column(col, justify="left" if col in ("state", "split", "note") else "right")
    for x in study.get_trials(deepcopy=False):
        b = x.user_attrs.get("bounds")
        note = ", ".join(k for k in ("seed", "reused", "infeasible") if x.user_attrs.get(k))
        if x.state.name == "PRUNED" and x.intermediate_values:
            last = max(x.intermediate_values)
            note = (
                note + ", " if note else ""
            ) + f"pruned after {last + 1} repeats at {x.intermediate_values[last]:.1f} ms"
        t.add_row(
            str(x.number),
            x.state.name.lower(),
            " / ".join(f"{r:.2f}" for r in ratios_of(b)) if b else "-",
            f"{x.value:.1f}" if x.value is not None else "-",
            note,
        )
    console().print(t)
