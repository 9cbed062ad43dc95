"""`isotune profile`: check the flags, then measure on the ranks (tune.measure) and write the
profile."""

from __future__ import annotations

from isotune.commands.comm import parse_cap, set_ctas
from isotune.core.chunking import parse_seq_lens, resolve_align
from isotune.core.errors import BadInput
from isotune.core.files import check_writable
from isotune.core.spec import check_seq_lens
from isotune.engine import dist
from isotune.engine.target import fit_target, resolve_target
from isotune.tune.measure import ProfileConfig, profile_worker


def profile(
    *,
    out: str,
    model: str,
    tp: int | None,
    layers: int | None,
    dtype: str,
    seq_lens: str,
    align: int | None,
    repeats: int,
    device: str,
    threads: int,
    seed: int,
    compile: bool = False,
    hardware: str | None = None,
    comm_ctas: str | None = None,
) -> int:
    """The `profile` command (its flags as keywords): validate, then launch the ranks; the exit code."""
    if hardware is not None:
        return analytic(out=out, model=model, tp=tp, layers=layers, dtype=dtype, hardware=hardware)
    spec, tp, dev = resolve_target(model, layers, tp, device)
    set_ctas(parse_cap(comm_ctas), tp, dev)
    check_writable(out, "--out")
    lens = parse_seq_lens(seq_lens)
    check_seq_lens(spec, lens, "--seq-lens")
    if repeats < 1:
        raise BadInput("--repeats must be at least 1")
    dtype = fit_target(spec, tp, dev, dtype, max(lens))
    cfg = ProfileConfig(
        model=model,
        layers=layers,
        dtype=dtype,
        seq_lens=lens,
        align=resolve_align(align, dev),
        repeats=repeats,
        device=dev,
        threads=threads,
        seed=seed,
        compile=compile,
        out=out,
    )
    return dist.launch(profile_worker, tp, cfg, device=dev, threads=threads)


def analytic(*, out: str, model: str, tp: int | None, layers: int | None, dtype: str, hardware: str) -> int:
    """`profile --hardware`: the profile computed from a catalog entry, in this process."""
    from isotune.core.analytic import analytic_profile
    from isotune.core.hardware import load_hardware
    from isotune.core.profile import save_profile
    from isotune.core.spec import load_spec, resolve_dtype
    from isotune.viz.tables import show_profile

    check_writable(out, "--out")
    hw = load_hardware(hardware)
    spec = load_spec(model, layers)
    prof = analytic_profile(hw, spec, tp or 1, resolve_dtype(dtype, spec)[0])
    save_profile(prof, out)
    show_profile(prof, out)
    return 0
