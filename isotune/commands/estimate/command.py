"""`isotune estimate`: what ISO would save on catalog hardware (profiles/hardware), for a model,
per TP size and length, predicted in this process (no ranks, no GPU) from analytic profiles, or
from measured ones (--measured: a stand-in's compute on a device of that kind)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

from isotune.core.analytic import BYTES
from isotune.core.chunking import parse_seq_lens
from isotune.core.errors import BadInput
from isotune.core.estimate import check_measured
from isotune.core.estimate import estimate as estimate_rows
from isotune.core.files import atomic_write_bytes, atomic_write_text, check_writable
from isotune.core.hardware import hardware_names, load_hardware
from isotune.core.profile import Profile, load_profile
from isotune.core.spec import load_spec, resolve_dtype
from isotune.core.target import parse_tp

DEFAULT_MODEL = "llama2-70b"  # the paper's A800 model
DEFAULT_TPS = [4, 8]  # the TP sizes its users run


def estimate(
    *,
    model: str | None,
    layers: int | None,
    seq_lens: str,
    hardware: str | None,
    tp: str | None,
    dtype: str,
    max_chunks: int,
    plot: str | None,
    json_out: str | None,
    measured: str | None = None,
) -> int:
    spec = load_spec(model or DEFAULT_MODEL, layers)
    lens = parse_seq_lens(seq_lens)
    profiles = _measured(measured)
    names = hardware.split(",") if hardware else [n for n in hardware_names() if load_hardware(n).arch != "cpu"]
    if not hardware:  # a measured entry is shown even where the default leaves it out (cpu)
        names += [h for h in dict.fromkeys(p.topology["hardware"] for p in profiles.values()) if h not in names]
    for n in names:
        load_hardware(n)  # an unknown or broken entry is one line now
    tps = parse_tp(tp, many=True) or DEFAULT_TPS
    if not 1 <= max_chunks <= 8:
        raise BadInput(f"--max-chunks {max_chunks} is out of range: use 1..8")
    for flag, path in (("--plot", plot), ("--json", json_out)):
        if path:
            check_writable(path, flag)
    if plot:
        from isotune.viz.png import pyplot

        pyplot()  # a missing matplotlib is a hint now, not after the table
    dtype = resolve_dtype(dtype, spec)[0]
    if dtype not in BYTES:
        raise BadInput(f"--dtype {dtype}: analytic profiles model bfloat16 or float16 (what GPUs serve in)")
    rows, notes = estimate_rows(spec, names, tps, lens, dtype, max_chunks, profiles)
    if profiles and not any(r.compute != "modelled" for r in rows):
        print(
            "note: no --measured profile fits these rows (each is for one model, TP size, dtype and entry): "
            + "; ".join(f"{f}: {_fits_what(p)}" for f, p in profiles.items()),
            file=sys.stderr,
        )
    if not rows:  # one line, with the reason when every pair was left out for the same one
        reasons = {n.split(" left out: ", 1)[-1] for n in notes}
        why = reasons.pop() if len(reasons) == 1 else "pick TP sizes that divide its heads"
        raise BadInput(f"no hardware x TP size fits {spec.name}: {why}")
    if max(lens) > spec.max_positions:
        print(
            f"note: {spec.name} was trained for {spec.max_positions} positions; longer lengths are costed "
            "as if its context were extended",
            file=sys.stderr,
        )
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    from isotune.commands.estimate.tables import estimate_png, show_estimates

    title = f"What ISO would save: {spec.name} ({spec.layers} layers), {dtype}"
    show_estimates(rows, title)
    if json_out:
        atomic_write_text(json_out, json.dumps([asdict(r) | {"saving": r.saving} for r in rows], indent=1))
    if plot:
        atomic_write_bytes(plot, estimate_png(rows, title))
        print(f"plot: {plot}", file=sys.stderr)
    return 0


def _measured(paths: str | None) -> dict[str, Profile]:
    """--measured: comma-separated stand-in profiles, each checked now (one line if not one)."""
    out = {}
    for path in [p for p in (paths or "").split(",") if p]:
        prof = load_profile(path)
        check_measured(path, prof)
        out[path] = prof
    return out


def _fits_what(prof: Profile) -> str:
    t = prof.topology
    return f"{prof.model['name']} tp {t['tp']} {t['dtype']} on {t['hardware']}"
