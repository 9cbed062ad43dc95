"""`isotune doctor`: validate this machine end to end and write a report a person can read.

On a GPU box: the environment, the CUDA test suite, ISO == the unsplit prefill on a preset (and
a checkpoint), what chunking costs at tp 1, whether launches bound the GPU, eager decoding
against CUDA graphs, and a profile -> search -> bench (across every GPU; at tp 1 on a single GPU,
which shows the commands run there but has nothing to overlap; with --link, one GPU standing in
for tp 8 on that emulated link). On CPU it runs what it can the same way (CPU ranks over gloo
for the pipeline, or on an emulated --link) and says, per check, what it skipped and why.
"""

from __future__ import annotations

import datetime
import functools
import time
from pathlib import Path

from isotune.commands.doctor import checks, measure
from isotune.commands.doctor.child import BEGIN_S
from isotune.commands.doctor.report import CUT, FAIL, OK, PENDING, Check, as_json, markdown, show_summary
from isotune.core.analytic import catalog_links
from isotune.core.chunking import parse_seq_lens
from isotune.core.errors import BadInput
from isotune.core.files import atomic_write_text, can_create_in
from isotune.core.link import parse_link
from isotune.core.spec import load_spec
from isotune.core.target import parse_tp
from isotune.engine.dist import resolve_device
from isotune.engine.model import TPModel
from isotune.engine.target import check_gpu_link

# defaults per device: a GPU gets the 1k-8k tokens on an 8B-shaped model; a CPU, sizes
# that finish in a minute or two on a small machine
DEFAULTS = {
    "cuda": {"model": "llama3-8b", "layers": 2, "seq_lens": [1024, 2048, 4096, 8192], "align": 64},
    "cpu": {"model": "small", "layers": 2, "seq_lens": [256, 512, 1024], "align": 16},
}


def doctor(
    *,
    out: str,
    model: str | None,
    layers: int | None,
    checkpoint: str | None,
    seq_lens: str | None,
    repeats: int,
    device: str,
    tp: str | None,
    skip_tests: bool,
    link: str | None = None,
    time_limit: float | None = None,
) -> int:
    # a machine rented or allocated for a fixed time: checks past it are said, not begun
    deadline = None if time_limit is None else time.monotonic() + time_limit
    dev = resolve_device(device)
    d = DEFAULTS[dev]
    model, layers = model or d["model"], layers if layers is not None else d["layers"]
    lens = parse_seq_lens(seq_lens) if seq_lens else d["seq_lens"]
    if min(lens) < 8 * d["align"]:
        raise BadInput(
            f"--seq-lens {min(lens)}: doctor splits prompts up to 8 ways at {d['align']}-token alignment: "
            f"use lengths of {8 * d['align']} or more"
        )
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"--out {out} is a file: give a folder for the report")
    if not folder.parent.is_dir():
        raise BadInput(f"--out {out}: its parent folder does not exist: create it or pick another folder")
    made_in = folder if folder.is_dir() else folder.parent
    if not can_create_in(made_in):
        raise BadInput(f"--out {out}: {made_in} is not writable: pick another folder")
    if repeats < 2:
        raise BadInput(f"--repeats {repeats}: intervals need at least 2")
    if time_limit is not None and not time_limit > 0:
        raise BadInput(f"--time-limit {time_limit:g}: give the seconds doctor may take, more than 0")
    tp = next(iter(parse_tp(tp)), None)  # the pipeline's ranks (tp 2 or more to overlap anything)
    if link is not None:  # the pipeline on an emulated link: CPU ranks, or one GPU standing in for tp
        tp = tp or (8 if dev == "cuda" else 2)
        parse_link(link, tp, catalog_links())  # a bad spec fails now, in one line, not in a child
        if dev == "cuda":  # the stand-in's hold kernel: missing, it would fail only in the last check
            check_gpu_link(link, tp, ranks=1)
    load_spec(model, layers)  # a bad --model or --layers fails now, not midway
    folder.mkdir(exist_ok=True)
    from rich.progress import Progress

    from isotune.viz.tables import console

    @functools.cache
    def preset() -> TPModel:
        """The preset in bfloat16, built once for the checks that run it in this process (ISO ==
        baseline, chunking, launches), long enough for every length; built at first use so a
        failure to build is that check's finding."""
        return measure.build(
            model, layers, "bfloat16", max(lens) + checks.DECODE_STEPS, dev
        )  # decode after the longest

    steps = [
        ("CUDA tests", checks.cuda_tests, dev, folder, skip_tests, deadline),
        ("ISO == baseline", checks.iso, preset, model, layers, checkpoint, dev, d["align"], lens),
        ("chunking overhead", checks.overhead, preset, layers, dev, d["align"], lens, repeats, folder),
        ("chunking: by part", checks.parts, preset, dev, d["align"], lens),
        ("decode: CUDA graphs", checks.decode, preset, dev, lens, repeats),
        ("launch-bound", checks.launches, preset, dev, d["align"], lens),  # last in-process: it ends profiling
        ("profile, search, bench", checks.pipeline, model, layers, dev, tp, lens, folder, deadline, link),
    ]
    results: list[Check] = []
    env = measure.environment()
    title = f"isotune doctor, {datetime.date.today().isoformat()}, {env.get('gpus') if dev == 'cuda' else 'CPU only'}"

    def write() -> None:
        """The report so far, rewritten after every check: a doctor killed midway (a hung GPU, a
        machine's allocated time running out) still leaves what it found, and what it did not reach."""
        later = [
            Check(name=what, status=PENDING, summary="doctor stopped before finishing this check") for what, *_ in steps
        ]
        shown = results + later[len(results) :]
        atomic_write_text(folder / "report.md", markdown(title, env, shown))
        atomic_write_text(folder / "report.json", as_json(env, shown))

    with Progress(transient=True, console=console(stderr=True)) as bar:
        task = bar.add_task("doctor", total=len(steps))

        def step(what: str, fn, *args) -> None:
            bar.update(task, description=what)
            try:
                if deadline is not None and deadline - time.monotonic() < BEGIN_S:
                    c = Check(name=what, status=CUT, summary=f"not begun: --time-limit {time_limit:g} s ran out")
                else:
                    c = fn(*args)
            except Exception as e:  # a check that breaks is a finding, not the end of the report
                c = Check(
                    name=what, status=FAIL, summary=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                )
            results.append(c)
            write()
            bar.console.print(f"{c.name}: {c.status}: {c.summary}")
            bar.advance(task)

        write()
        for what, fn, *args in steps:
            step(what, fn, *args)
    show_summary(title, results, str(folder / "report.md"))
    # checks the time limit cut short or left out: the machine was not fully checked
    cut = [c.name for c in results if c.status == CUT]
    if cut:
        first = results[0]  # the CUDA tests: worth leaving out only where they ran and took time
        tests_ran = first.status in (OK, FAIL, CUT) and not first.summary.startswith("not begun")
        console(stderr=True).print(
            f"{len(cut)} check(s) cut short or not begun ({', '.join(cut)}): --time-limit {time_limit:g} s ran out; "
            + (
                "give doctor more time, or leave out the CUDA tests (--skip-tests)"
                if tests_ran
                else "give doctor more time"
            )
        )
    return 1 if cut or any(c.status == FAIL for c in results) else 0
