"""Every command's tables fit an 80-column terminal (and a 100-column one) with realistic figures:
a table may fold its words and headers, but no figure is cut, shortened or broken across lines.
Each table's figures (its cells' words that hold a digit; a split's ratios each) must appear whole
on one rendered line."""

import json
import re

import pytest
from conftest import ROOT
from rich.console import Console
from rich.table import Table
from rich.text import Text

from isotune.core.plan import load_plan
from isotune.core.profile import load_profile
from isotune.core.spec import load_spec

SAMPLES = ROOT / "profiles" / "samples"
WIDTHS = (80, 100)


def _figures(table: Table) -> set[str]:
    found = set()
    for col in table.columns:
        for cell in col._cells:  # noqa: SLF001 - the cells as given, before rendering
            text = cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain
            found |= {w for w in re.split(r"[\s/]+", text) if re.search(r"\d", w)}
    return found


@pytest.fixture
def render(monkeypatch, capsys):
    """render(width, draw) -> (what draw printed at that width, the tables it printed)."""
    tables: list[Table] = []
    original = Console.print

    def spy(self, *objects, **kw):
        tables.extend(o for o in objects if isinstance(o, Table))
        return original(self, *objects, **kw)

    monkeypatch.setattr(Console, "print", spy)

    def run(width: int, draw) -> tuple[str, list[Table]]:
        monkeypatch.setenv("COLUMNS", str(width))
        tables.clear()
        capsys.readouterr()
        draw()
        out = capsys.readouterr()
        return out.out + out.err, list(tables)

    return run


def _bench():
    from isotune.commands.bench.job import record
    from isotune.commands.bench.tables import show_bench

    base = [12702.3, 12650.1, 12890.4, 12511.0, 12760.9]  # a long prefill with a wide interval
    noise = [1.0, 1.031, 0.968, 1.012, 0.991]
    records = []
    for s, ratios, scale in ((1024, [1.0], 0.08), (4096, [0.19, 0.31, 0.27, 0.23], 1.0), (16384, [0.125] * 8, 4.0)):
        samples = {
            "baseline": [b * scale for b in base],
            "iso5050": [b * scale * 0.81 * n for b, n in zip(base, noise, strict=True)],
            "compute": [b * scale * 0.64 for b in base],
            "comm": [b * scale * 0.29 for b in reversed(base)],
        }
        splits = len(ratios) > 1
        samples["plan"] = (
            [b * scale * 0.76 * n for b, n in zip(base, reversed(noise), strict=True)]
            if splits
            else samples["baseline"]
        )
        rec = record(s, samples, comm_cpu=411.7 * scale, plan_splits=splits)
        rec["plan_chunks"], rec["plan_ratios"] = len(ratios), ratios
        for name in ("baseline", "iso5050", "plan"):
            rec[f"predicted_{name}_ms"] = rec[f"{name}_ms"] * 1.137
        records.append(rec)
    records[0]["overlap_efficiency"] = -0.41  # outside [0, 1]: shown with its reason
    records[1]["share_of_achievable"] = 1.13
    show_bench(records, "isotune bench: small (8 layers), tp 2 gloo on cpu over an emulated 1gbit link, bfloat16", 5)


def _plan():
    from isotune.viz.plan_tables import findings, show_plan

    plan = load_plan(SAMPLES / "doctor-cpu" / "plan.yaml")
    b = plan.buckets[-1]  # the widest bucket a plan holds: 8 chunks at 32k tokens, 2 minutes a prefill
    b.min_tokens, b.max_tokens, b.seq_len, b.chunks = 16385, 32768, 32768, 8
    b.ratios = [0.11, 0.12, 0.13, 0.12, 0.13, 0.12, 0.13, 0.14]
    b.plan_ms, b.baseline_ms, b.vs_baseline, b.iso5050_vs_baseline = (
        123456.7,
        154321.9,
        [-0.2, -0.231, -0.169],
        [-0.155, -0.186, -0.124],
    )
    show_plan(plan, "runs/plan-small-l2-tp2-bf16-cpu-gloo-emulated1gbit.yaml")
    for line in findings(plan):
        Console().print(line, highlight=False)


def _profile():
    from isotune.viz.tables import show_profile

    show_profile(load_profile(SAMPLES / "doctor-cpu" / "profile.yaml"), "runs/profile.yaml")


def _estimate():
    from isotune.commands.estimate.tables import show_estimates
    from isotune.core.estimate import estimate

    measured = load_profile(SAMPLES / "link-validation" / "standin-profile-small-l8-tp2-bf16-1gbit.yaml")
    measured.topology["hardware"] = "cpu"
    spec = load_spec("small")
    rows, _ = estimate(spec, ["cpu", "rtx4090", "h100-sxm"], [2, 8], [1024, 16384], "bfloat16", 4,
                       {"standin.yaml": measured})  # fmt: skip
    show_estimates(rows, "What ISO would save: small (8 layers), bfloat16")


def _run():
    from isotune.commands.run.tables import show_prompts, show_run

    lines = [json.loads(x) for x in (SAMPLES / "text" / "answers.jsonl").read_text().splitlines()]
    compared = {
        **lines[0],
        "prompt_tokens": 16384,
        "chunk_tokens": [3072, 5120, 4096, 4096],
        "plan_bucket": "12289..16384",
        "prefill_ms": 12702.31,
        "prefill_timed": "typical of 10",
        "baseline_prefill_ms": 15544.9,
        "vs_baseline": [-0.1829, -0.2012, -0.1644],
        "max_abs_diff": 0.25,
        "compared_abs_max": 65.5,
        "same_next_token": True,
    }
    title = "isotune run: smollm2-135m-instruct (30 layers), tp 3 gloo on cpu over loopback, bfloat16"
    show_run(compared, title)
    show_prompts(lines, title, compare=False)
    show_prompts([compared, {**compared, "plan_bucket": "1..160", "chunk_tokens": [37]}], title, compare=True)


def _show():
    from isotune.commands.show import show

    plan = load_plan(SAMPLES / "doctor-cpu" / "plan.yaml")
    url = "journal:" + str(SAMPLES / "doctor-cpu" / "plan.study.log")
    show(url)
    show(url, study=str(plan.buckets[0].seq_len))


def _doctor():
    from isotune.commands.doctor.report import Check, show_summary

    report = json.loads((SAMPLES / "doctor-h200" / "report.json").read_text())
    checks = [Check(**c) for c in report["checks"]]
    show_summary("isotune doctor: 1x NVIDIA H200 (141 GB), torch 2.11.0+cu128, NCCL 2.27.3", checks, "report.md")


def _models():
    from isotune.commands.models import models

    models()


@pytest.mark.parametrize("draw", [_bench, _plan, _profile, _estimate, _run, _show, _doctor, _models],
                         ids=lambda f: f.__name__.strip("_"))  # fmt: skip
@pytest.mark.parametrize("width", WIDTHS)
def test_every_table_fits_the_width_and_keeps_each_figure_whole(render, draw, width):
    text, tables = render(width, draw)
    assert tables, "drew no table"
    lines = text.splitlines()
    too_wide = [line for line in lines if len(line) > width]
    assert too_wide == [], f"{len(too_wide)} lines wider than {width}:\n" + "\n".join(too_wide[:5])
    figures = set().union(*(_figures(t) for t in tables))
    broken = sorted(f for f in figures if not any(f in line for line in lines))
    assert broken == [], f"figures cut or folded at {width} columns: {broken[:10]}\n{text}"
