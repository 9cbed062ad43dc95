"""`isotune profile`: check the flags, then measure on the ranks (profile.job) and write the
profile; or, with --hardware, compute it from a catalog entry in this process."""

from __future__ import annotations

from dataclasses import replace

from isotune.commands.profile.job import ProfileJob
from isotune.commands.prologue import prepare
from isotune.core.chunking import parse_seq_lens
from isotune.core.errors import BadInput
from isotune.core.files import check_writable
from isotune.core.target import DEFAULT_MODEL, TargetFlags, parse_tp
from isotune.engine import launcher
from isotune.engine.launch import launch
from isotune.engine.target import resolve_target
from isotune.tune.measure import Sweep


def profile(
    *, target: TargetFlags, out: str, seq_lens: str, align: int | None, repeats: int, hardware: str | None
) -> int:
    """The `profile` command (its flags as keywords): validate, then launch the ranks; the exit code."""
    if hardware is not None and target.ranks is None:
        return analytic(out=out, target=target, hardware=hardware)
    if hardware is not None:  # a stand-in on this device measures the compute; the link: --link, else the catalog's
        target = replace(target, link=target.link or hardware)
    resolved = resolve_target(target)
    entry = _entry_for(hardware, resolved.device) if hardware is not None else None
    check_writable(out, "--out")
    lens = parse_seq_lens(seq_lens)
    if repeats < 1:
        raise BadInput("--repeats must be at least 1")
    prep = prepare(resolved, lens, align=align)
    job = ProfileJob(sweep=Sweep(seq_lens=lens, align=prep.align, repeats=repeats), out=out, hardware=entry)
    return launch(job, prep.target)


def _entry_for(hardware: str, device: str) -> str:
    """The catalog entry a stand-in's profile stands for: its compute is this device's, so the
    entry must be of this device's kind (a CPU entry on CPU ranks, a GPU entry on a GPU)."""
    from isotune.core.hardware import load_hardware

    hw = load_hardware(hardware)
    if (hw.arch == "cpu") != (device == "cpu"):
        kind = "a CPU" if hw.arch == "cpu" else "a GPU"
        raise BadInput(
            f"--hardware {hw.name} --ranks 1 measures this device's compute, and {hw.name} is {kind} entry while "
            f"this runs on {device}: run it on {kind} of that kind, or drop --ranks for the analytic profile"
        )
    if device != "cpu":
        import torch

        name = torch.cuda.get_device_name()
        if hw.name.split("-")[0].lower() not in name.lower():
            launcher.say(f"warning: --hardware {hw.name} measured on a {name}: its compute is this GPU's")
    return hw.name


def analytic(*, out: str, target: TargetFlags, hardware: str) -> int:
    """`profile --hardware`: the profile computed from a catalog entry, in this process."""
    from isotune.core.analytic import analytic_profile
    from isotune.core.hardware import load_hardware
    from isotune.core.profile import save_profile
    from isotune.core.spec import load_spec, resolve_dtype
    from isotune.viz.tables import show_profile

    check_writable(out, "--out")
    hw = load_hardware(hardware)
    spec = load_spec(target.model or DEFAULT_MODEL, target.layers)
    tp = next(iter(parse_tp(target.tp)), 1)
    prof = analytic_profile(hw, spec, tp, resolve_dtype(target.dtype, spec)[0])
    save_profile(prof, out)
    show_profile(prof, out)
    return 0
