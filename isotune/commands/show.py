"""`isotune show`: a plan, a profile, or the studies in an Optuna storage, as tables."""

from __future__ import annotations

import os
import re
from pathlib import Path

import optuna
from optuna.trial import TrialState as S

from isotune.core.chunking import ratios_of, split_cell
from isotune.core.credentials import redact
from isotune.core.decide import bounds_text
from isotune.core.errors import BadInput
from isotune.core.files import first_key
from isotune.core.plan import load_plan
from isotune.core.profile import load_profile
from isotune.tune.storage import open_storage, storage_file, storage_url
from isotune.tune.studies import counts
from isotune.viz.plan_tables import findings, show_plan
from isotune.viz.tables import console, show_profile, table


def show(path: str, study: str | None = None) -> int:
    """Render `path` by what it is: a storage URL, a plan or a profile."""
    if path.startswith("journal:") or "://" in path:
        path = storage_url(path)  # a plan's redacted URL stands for ISOTUNE_STORAGE's
        local = storage_file(path)
        if local is not None and not local.is_file():  # opening it would create an empty one
            raise BadInput(
                f"{redact(path)}: {local} does not exist: give the storage a search wrote (its plan's study.storage)"
            )
        show_studies(path, study)
    elif study is not None:
        raise BadInput(
            "--study needs a storage URL as the argument, e.g. isotune show journal:plan.study.log --study NAME"
        )
    elif not Path(path).is_file():
        raise BadInput(
            f"{path} does not exist: give a plan (isotune search -o), a profile (isotune profile -o) "
            "or a storage URL (journal:FILE, sqlite:///FILE)"
        )
    else:
        _show_file(path)
    return 0


def _show_file(path: str) -> None:
    """A plan or a profile, told apart by its first key; anything else is refused, saying what it is."""
    kind = first_key(path)
    if kind == "isotune_plan":
        plan = load_plan(path)
        show_plan(plan, path)
        for line in findings(plan):
            console().print(line, highlight=False)
    elif kind == "isotune_hardware":
        raise BadInput(
            f"{path} is a hardware catalog entry: see what ISO would save on it with isotune estimate "
            "--hardware FILE, or make a profile from it with isotune profile --hardware FILE -o P.yaml"
        )
    elif kind != "isotune_profile":
        raise BadInput(
            f"{path} is not an isotune plan or profile: give a plan (isotune search -o), a profile "
            "(isotune profile -o) or a storage URL (journal:FILE, sqlite:///FILE)"
        )
    else:
        show_profile(load_profile(path), path)


def show_studies(url: str, only: str | None = None) -> None:
    """The studies in an Optuna storage: trials by state, measured splits, best time and split;
    with `only`, that study's trials one by one."""
    storage = open_storage(url, "isotune show")
    url = redact(url)  # what the titles and messages below name
    out = console()
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    if only is not None:
        only = _find_study(only, [s.study_name for s in summaries], url)
    if not summaries:
        out.print(f"no studies in {url}")
        return
    names = sorted((s.study_name for s in summaries if only in (None, s.study_name)), key=_by_length)
    # one search names its studies PREFIX-s<tokens>: say the shared prefix once, keep the table narrow
    prefix = os.path.commonprefix(names) if len(names) > 1 else names[0].rpartition("-")[0] + "-"
    prefix = prefix[: prefix.rfind("-") + 1]
    if prefix:
        out.print(f"studies in {url}, named {prefix}<study>:", highlight=False)
    t = table(title=None if prefix else f"studies in {url}")
    for col in ("study", "measured", "complete", "pruned", "failed", "running", "waiting", "best\nms", "best\nsplit"):
        t.add_column(col, justify="left" if col in ("study", "best split") else "right")
    for summary in sorted(summaries, key=lambda x: _by_length(x.study_name)):
        if only is not None and summary.study_name != only:
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        n = counts(study)
        done = [x for x in study.get_trials(deepcopy=False, states=(S.COMPLETE,)) if "bounds" in x.user_attrs]
        best = min(done, key=lambda x: x.value, default=None)
        t.add_row(
            summary.study_name.removeprefix(prefix),
            str(n["spent"]),
            str(n[S.COMPLETE]),
            str(n[S.PRUNED]),
            str(n[S.FAIL]),
            str(n[S.RUNNING]),
            str(n[S.WAITING]),
            f"{best.value:.1f}" if best else "-",
            split_cell(ratios_of(best.user_attrs["bounds"]), per_line=2) if best else "-",
        )
        if only is not None:
            out.print(t)
            out.print(COUNTS_NOTE, highlight=False)
            _show_trials(study)
            return
    out.print(t)
    out.print(COUNTS_NOTE, highlight=False)


def _by_length(name: str) -> list:
    """Sort key: s512 before s2048 (numbers in a name compare as numbers)."""
    return [int(part) if part.isdecimal() else part for part in re.split(r"(\d+)", name)]


COUNTS_NOTE = (
    "measured: trials that timed (or costed) a split; complete and pruned also count the draws that "
    "repeated an earlier split or were no valid split, told at no cost"
)


def _find_study(name: str, names: list[str], url: str) -> str:
    """A study by its full name, or by its tail: `s512` or `512` (the study for 512 tokens)."""
    if name in names:
        return name
    tails = [n for n in names if n.endswith(f"-{name}") or n.endswith(f"-s{name}")]
    if len(tails) == 1:
        return tails[0]
    if tails:
        raise BadInput(f"--study {name!r} matches {len(tails)} studies in {url}: give the full name")
    raise BadInput(f"no study {name!r} in {url}: run 'isotune show {url}' to list them")


def _show_trials(study) -> None:
    t = table(title=f"trials of {study.study_name}")
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
            bounds_text(b) if b else "-",
            f"{x.value:.1f}" if x.value is not None else "-",
            note,
        )
    console().print(t)
