"""Tables within 80 columns keep every figure: a long split folds between ratios, never inside one."""

from pathlib import Path

from isotune.core.plan import load_plan
from isotune.viz.plan_tables import findings, show_plan

ROOT = Path(__file__).resolve().parents[2]
PLAN = ROOT / "profiles" / "samples" / "perf" / "plan-small-l2-tp4-bf16-shaped1gbit.yaml"


def test_a_plan_with_an_8_way_split_at_32k_tokens_shows_every_figure(capsys):
    plan = load_plan(PLAN)
    b = plan.buckets[-1]
    b.min_tokens, b.max_tokens, b.seq_len, b.chunks = 16385, 32768, 32768, 8
    b.ratios = [0.11, 0.12, 0.13, 0.12, 0.13, 0.12, 0.13, 0.14]
    b.plan_ms, b.baseline_ms = 123456.7, 154321.9
    show_plan(plan, str(PLAN), decisions=False)
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 80 and "…" not in out
    assert "123457" in out and "154322" in out and "16385..32768" in out  # whole ms from 1000 ms
    lines = out.splitlines()
    last = next(i for i, line in enumerate(lines) if "16385..32768" in line)
    split = "".join(line.split()[2 if i == 0 else 0] for i, line in enumerate(lines[last : last + 4]))
    assert split == "0.11/0.12/0.13/0.12/0.13/0.12/0.13/0.14"  # two ratios a line, each whole


def test_a_one_rank_one_layer_plan_is_titled_in_plain_words(capsys):
    plan = load_plan(PLAN)
    plan.model["layers"], plan.topology["tp"], plan.topology["backend"] = 1, 1, "none"
    show_plan(plan, "p.yaml", decisions=False)
    out = " ".join(capsys.readouterr().out.split())
    assert "small (1 layer), tp 1 single, bfloat16" in out
    assert "small (1 layer), tp 1 single on cpu" in findings(plan)[0]
