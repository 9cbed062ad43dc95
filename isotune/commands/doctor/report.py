"""`isotune doctor`'s report: a Markdown file a person reads (each check's status, its one-line
verdict, its table), the same as JSON, a summary table on the terminal, and the chunking-overhead
figure."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from isotune.viz.png import png_bytes, pyplot
from isotune.viz.tables import console, table

# CUT: stopped, or not begun, when doctor's --time-limit ran out: not a fault of the machine
OK, FAIL, SKIPPED, CUT, PENDING = "ok", "FAIL", "skipped", "cut short", "not run yet"


@dataclass(kw_only=True)
class Check:
    name: str
    status: str  # OK, FAIL, SKIPPED or CUT (PENDING in a report written while doctor runs)
    summary: str  # one line: the verdict with its numbers, or why it was skipped
    rows: list[dict] = field(default_factory=list)  # a table, when the check has one
    detail: str = ""  # raw output worth keeping (test summary, nvidia-smi topo, bench table)


PERCENT = ("change", "low", "high")  # relative changes: shown as percentages


def _cell(key: str, v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:+.1%}" if key in PERCENT else f"{v:.4g}"
    return str(v)


def markdown(title: str, env: dict, checks: list[Check]) -> str:
    lines = [f"# {title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in env.items() if k != "topology"]
    if "topology" in env:
        lines += ["", "```", env["topology"].rstrip(), "```"]
    lines += ["", "| check | status | verdict |", "|---|---|---|"]
    lines += [f"| {c.name} | {c.status} | {c.summary} |" for c in checks]
    for c in checks:
        lines += ["", f"## {c.name}: {c.status}", "", c.summary]
        if c.rows:
            cols = list(c.rows[0])
            lines += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            lines += ["| " + " | ".join(_cell(k, r[k]) for k in cols) + " |" for r in c.rows]
        if c.detail:
            lines += ["", "```", c.detail.rstrip(), "```"]
    return "\n".join(lines) + "\n"


def as_json(env: dict, checks: list[Check]) -> str:
    return json.dumps({"environment": env, "checks": [asdict(c) for c in checks]}, indent=1)


def show_summary(title: str, checks: list[Check], report: str) -> None:
    t = table(title=title, caption=f"report: {report}")
    t.add_column("check")
    t.add_column("status")
    t.add_column("verdict", max_width=70)
    style = {OK: "green", FAIL: "bold red", SKIPPED: "yellow", CUT: "magenta"}
    for c in checks:
        t.add_row(c.name, f"[{style[c.status]}]{c.status}[/]", c.summary)
    console().print(t)


def chunking_png(rows: list[dict], where: str) -> bytes:
    """Split / unsplit compute time by length, a line per chunk count, with 95% intervals."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for k in sorted({r["chunks"] for r in rows}):
        mine = [r for r in rows if r["chunks"] == k]
        xs = [r["seq_len"] for r in mine]
        ys = [100 * r["change"] for r in mine]
        err = [[100 * (r["change"] - r["low"]) for r in mine], [100 * (r["high"] - r["change"]) for r in mine]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=f"{k} even chunks")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xscale("log", base=2)
    lens = sorted({r["seq_len"] for r in rows})
    ax.set_xticks(lens, [str(t) for t in lens])
    ax.minorticks_off()
    ax.set_xlabel("prompt tokens")
    ax.set_ylabel("compute time vs unsplit (%)")
    ax.set_title(f"What splitting costs with nothing to hide\n{where}; 95% intervals", fontsize=10)
    ax.legend()
    return png_bytes(fig)


def launch_summary(rows: list[dict], tokens: int, recompiled: int) -> str:
    """One line from launch_bound's rows, eager and compiled: from how many chunks the host sets
    the pace, by how much, and what --compile does to the host's time."""
    eager = [r for r in rows if not r["compile"]]
    if not eager:
        return f"no chunk count fits {tokens} tokens at this alignment: nothing measured"
    fused = {r["chunks"]: r for r in rows if r["compile"]}
    host_bound = [r for r in eager if r["bound"] == "host"]
    known = [r for r in eager if r["gpu_ms"] is not None]
    per = "ms per layer, host issue vs GPU run"
    if not host_bound and not known:
        said = f"no verdict at {tokens} tokens: the GPU's own time could not be separated"
    elif not host_bound:
        r = known[-1]
        said = (
            f"the GPU sets the pace at {tokens} tokens up to {r['chunks']} chunk(s) ({r['host_ms']:.2f} vs "
            f"{r['gpu_ms']:.2f} {per})"
        )
    else:
        r = host_bound[0]
        said = (
            f"at {tokens} tokens the host sets the pace from {r['chunks']} chunk(s): {r['host_ms']:.2f} vs "
            f"{r['gpu_ms']:.2f} {per}"
        )
        c = fused.get(r["chunks"])
        if c is not None and c["gpu_ms"] is not None:
            verdict = "fixes it" if c["bound"] == "GPU" else "does not fix it"
            said += f"; --compile {verdict} ({c['host_ms']:.2f} vs {c['gpu_ms']:.2f} ms)"
    one, fone = eager[0], fused.get(eager[0]["chunks"])
    if fone is not None:
        said += f"; compiled, the host takes {fone['host_ms'] / one['host_ms']:.2f}x eager's time to issue a layer"
        if one.get("kernels") and fone.get("kernels"):
            said += f" ({fone['kernels']} kernels against {one['kernels']})"
    unknown = [r for r in rows if r["gpu_ms"] is None]
    if unknown:
        said += f"; the GPU's time was not separable at {len(unknown)} point(s) (no hold outlasted the host's issue)"
    if recompiled:
        said += f"; the compiled steps recompiled {recompiled} time(s) while measured"
    return said
