"""`isotune search --plots DIR`: per searched length, Optuna's optimisation history and the
split landscape (share of the first chunk vs measured time, coloured by chunk count), and one
summary chart of the speedup over the baseline by length, ISO 50/50 vs the tuned plan."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from isotune.core.chunking import split_text
from isotune.core.files import atomic_write_bytes
from isotune.core.plan import Plan
from isotune.viz.png import png_bytes, pyplot


def history_png(study: optuna.Study, seq_len: int) -> bytes:
    from optuna.visualization.matplotlib import plot_optimization_history

    # Optuna switches pyplot to its ggplot style for good (plt.style.use): keep that inside here
    with pyplot().style.context("default"):
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


def short_verdict(b) -> str:
    """A bucket's decision in a few words, for a bar label."""
    if b.chunks > 1:
        return f"kept {split_text(b.ratios)}"
    return f"no split: {b.outcome}" if b.outcome else "no split"


def speedup_png(plan: Plan) -> bytes:
    """Time saved vs the baseline by length: ISO 50/50 beside the tuned plan, each with its 95%
    interval where the plan has one, each tuned bar labelled with what validation decided."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    lens = [b.seq_len for b in plan.buckets]

    def saved(change: list[float] | None, ms: float | None, base: float) -> tuple[float, list[float]]:
        """(% saved, [err below, err above]) from [change, low, high], or from bare times."""
        if change:
            est, most, least = (-x * 100 for x in change)  # a change's low end is the largest saving
            return est, [est - least, most - est]
        return ((1 - ms / base) * 100 if ms else 0.0), [0.0, 0.0]

    half = [saved(b.iso5050_vs_baseline, b.iso5050_ms, b.baseline_ms) for b in plan.buckets]
    tuned = [saved(b.vs_baseline, b.plan_ms, b.baseline_ms) for b in plan.buckets]
    x = range(len(lens))
    for shift, data, label, color in ((-0.2, half, "ISO 50/50", "#9ECAE9"), (0.2, tuned, "tuned plan", "#4C78A8")):
        errs = [[e[0] for _, e in data], [e[1] for _, e in data]]
        ax.bar([i + shift for i in x], [v for v, _ in data], width=0.4, label=label, color=color)
        ax.errorbar([i + shift for i in x], [v for v, _ in data], yerr=errs, fmt="none", ecolor="#333", capsize=3)
    for i, b in enumerate(plan.buckets):  # above the bar and its interval
        top = max(tuned[i][0] + tuned[i][1][1], 0)
        ax.annotate(short_verdict(b), (i + 0.2, top), xytext=(0, 3), textcoords="offset points", ha="center",
                    va="bottom", fontsize=7)  # fmt: skip
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(list(x), [str(s) for s in lens])
    ax.set_xlabel("prompt tokens")
    measured = plan.study.get("objective") != "model"
    ax.set_ylabel("prefill time saved vs baseline (%)")
    topo = plan.topology
    how = "measured side by side, bars: 95% interval" if measured else "predicted by the cost model"
    ax.set_title(
        f"{plan.model.get('name')} ({plan.model.get('layers')} layers), tp {topo.get('tp')} {topo.get('backend')}, "
        f"{topo.get('dtype')}: {how}",
        fontsize=10,
    )
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
