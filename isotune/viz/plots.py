"""`isotune search --plots DIR`: per searched length, Optuna's optimisation history and the
split landscape (share of the first chunk vs measured time, coloured by chunk count), and one
summary chart of the speedup over the baseline by length, ISO 50/50 vs the tuned plan."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from isotune.core.files import atomic_write_bytes
from isotune.core.plan import Plan
from isotune.viz.png import png_bytes, pyplot


def history_png(study: optuna.Study, seq_len: int) -> bytes:
    from optuna.visualization.matplotlib import plot_optimization_history

    ax = plot_optimization_history(study, target_name="prefill ms")
    ax.set_title(f"{seq_len} tokens: optimisation history")
    fig = ax.figure
    fig.set_size_inches(8, 4.5)
    return png_bytes(fig)


def landscape_png(study: optuna.Study, seq_len: int, kept: list[float], measured: bool = True) -> bytes:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "bounds" in t.user_attrs]
    ks = sorted({len(t.user_attrs["bounds"]) - 1 for t in done})
    for k in ks:
        pts = [(t.user_attrs["bounds"][1] / seq_len, t.value) for t in done if len(t.user_attrs["bounds"]) - 1 == k]
        if k == 1:  # the unsplit baseline: a line, it has no first-chunk share
            ax.axhline(min(v for _, v in pts), color="#666", linestyle="--", linewidth=1, label="baseline (1 chunk)")
            continue
        ax.scatter([x for x, _ in pts], [y for _, y in pts], s=18, alpha=0.75, label=f"{k} chunks")
    if len(kept) > 1:
        best = [t.value for t in done if t.user_attrs["bounds"][1] == round(kept[0] * seq_len)]
        if best:
            ax.scatter([kept[0]], [min(best)], s=120, facecolors="none", edgecolors="black", label="plan")
    ax.set_xlabel("share of the prompt in the first chunk")
    ax.set_ylabel("measured prefill ms (trimmed mean, slowest rank)" if measured else "cost model's prefill ms")
    ax.set_title(f"{seq_len} tokens: split landscape ({len(done)} finished trials)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return png_bytes(fig)


def speedup_png(plan: Plan) -> bytes:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    lens = [b.seq_len for b in plan.buckets]
    tuned = [(1 - b.plan_ms / b.baseline_ms) * 100 for b in plan.buckets]
    half = [(1 - b.iso5050_ms / b.baseline_ms) * 100 if b.iso5050_ms else None for b in plan.buckets]
    x = range(len(lens))
    ax.bar([i - 0.2 for i in x], [h or 0 for h in half], width=0.4, label="ISO 50/50", color="#9ECAE9")
    ax.bar([i + 0.2 for i in x], tuned, width=0.4, label="tuned plan", color="#4C78A8")
    for i, b in enumerate(plan.buckets):
        ax.annotate(f"k={b.chunks}", (i + 0.2, tuned[i]), ha="center", va="bottom", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(list(x), [str(s) for s in lens])
    ax.set_xlabel("prompt tokens")
    ax.set_ylabel("prefill time saved vs baseline (%)")
    topo = plan.topology
    ax.set_title(f"{plan.model.get('name')}, tp {topo.get('tp')} {topo.get('backend')}, {topo.get('dtype')}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return png_bytes(fig)


def write_search_plots(plan: Plan, studies: dict[int, optuna.Study], out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(exist_ok=True)
    measured = plan.study.get("objective") != "model"
    written = []
    for b in plan.buckets:
        study = studies[b.seq_len]
        for name, data in (
            (f"history-{b.seq_len}.png", history_png(study, b.seq_len)),
            (f"landscape-{b.seq_len}.png", landscape_png(study, b.seq_len, b.ratios, measured)),
        ):
            atomic_write_bytes(out / name, data)
            written.append(out / name)
    atomic_write_bytes(out / "speedup.png", speedup_png(plan))
    return [*written, out / "speedup.png"]
