"""The target checked as a whole before any rank starts: model, checkpoint files, TP size,
device, launcher, comm cap, dtype and memory must agree, so a mismatch is one line and exit 2,
not a failed rank. Two steps, since a command learns its lengths from the model (a prompt is
tokenized with its tokenizer): resolve_target, then fit_target for the longest length."""

from __future__ import annotations

from isotune.core.analytic import catalog_links
from isotune.core.errors import BadInput
from isotune.core.link import parse_link
from isotune.core.shard import check_tp
from isotune.core.spec import load_spec, resolve_dtype
from isotune.core.target import DEFAULT_MODEL, Target, TargetFlags, parse_counts, parse_ctas, parse_tp
from isotune.engine import comm_hold, dist, launcher
from isotune.engine.memory import check_host_memory
from isotune.engine.topology import STAND_IN
from isotune.engine.weights import check_checkpoint


def resolve_target(flags: TargetFlags) -> Target:
    """Model, TP size, device and comm cap checked together; the dtype and the KV cache's
    length are fitted next (fit_target)."""
    spec = load_spec(flags.model or DEFAULT_MODEL, flags.layers)
    check_checkpoint(spec)
    tp = launcher.default_tp(next(iter(parse_tp(flags.tp)), None))
    check_tp(spec, tp)
    ranks = _ranks(flags, tp)
    device = dist.resolve_device(flags.device)
    dist.check_world(ranks or tp, device)
    if flags.threads < 1:
        raise BadInput(f"--threads {flags.threads} must be 1 or more")
    target = Target(
        spec=spec,
        tp=tp,
        dtype=flags.dtype,  # resolved by fit_target
        device=device,
        threads=flags.threads,
        seed=flags.seed,
        compile=flags.compile,
        ranks=ranks,
        max_len=0,
    )
    if flags.link is not None:
        if device == "cuda":
            check_gpu_link(flags.link, tp, ranks)
        target = target.with_(link=parse_link(flags.link, tp, catalog_links()))
    return with_ctas(target, next(iter(parse_ctas(flags.comm_ctas)), None))


def check_gpu_link(link: str, tp: int, ranks: int | None) -> None:
    """On GPUs an emulated link serves the stand-in alone: its hold kernel takes the comm CTAs a
    real collective would. Real GPU ranks have a real interconnect to all-reduce over."""
    if ranks != 1:
        raise BadInput(
            f"--link {link} on GPUs emulates a stand-in's all-reduces (--tp {tp} --ranks 1); "
            f"{tp} GPU ranks all-reduce over their real interconnect: drop --link, or add --ranks 1"
        )
    why = comm_hold.unavailable()
    if why is not None:
        raise BadInput(f"--link {link} on this GPU: {why}")


def _ranks(flags: TargetFlags, tp: int) -> int | None:
    """--ranks: None (every rank runs) or 1 (a stand-in for tp), which needs a link to pay its
    peers' all-reduces."""
    if flags.ranks is None:
        return None
    ranks = parse_counts(flags.ranks, "--ranks", "rank count", example="1")[0]
    if ranks > tp or tp % ranks:
        raise BadInput(f"--ranks {ranks} {'exceeds' if ranks > tp else 'does not divide'} --tp {tp}: use 1 or {tp}")
    if 1 < ranks < tp:
        raise BadInput(f"--ranks {ranks} of tp {tp}: run every rank (--ranks {tp}) or a stand-in (--ranks 1)")
    if ranks == 1 and tp > 1 and flags.link is None:
        raise BadInput(f"--ranks 1 stands in for tp {tp} alone: give --link for the all-reduces its peers would share")
    return None if ranks == tp else ranks


def with_ctas(target: Target, ctas: int | None) -> Target:
    """The target with NCCL's CTA cap (None: NCCL's choice), or on a GPU stand-in the CTAs its
    link's hold kernel takes (None: core.link.GPU_HOLD_CTAS); nothing else has one."""
    if ctas is not None and target.backend != "nccl" and not target.held_on_gpu:
        raise BadInput(
            f"--comm-ctas caps the SMs an NCCL all-reduce takes: it needs a GPU run with --tp 2 or more, "
            f"or a GPU stand-in (--ranks 1 --link) (this one is tp {target.tp} on {target.device})"
        )
    return target.with_(comm_ctas=ctas)


def fit_target(
    target: Target, max_len: int, decode: bool = False, slots: int = 1, prefill_tokens: int | None = None
) -> Target:
    """--dtype resolved (auto: see core.spec.resolve_dtype, said on stderr) and the memory the
    ranks will need for `slots` sequences of `max_len` positions, and a forward of
    `prefill_tokens` (a pack; default max_len), checked against the host's: the target to launch."""
    prefill_tokens = max(prefill_tokens or 0, max_len)
    dtype, note = resolve_dtype(target.dtype, target.spec)
    if dtype == "float32" and target.device == "cuda":  # only an explicit --dtype float32 gets here
        note = (
            "warning: float32 on GPUs runs without flash attention, far below the tensor cores' bf16 "
            "peak and with twice the all-reduce bytes: splits tuned so fit no deployment (--dtype auto)"
        )
    if note:
        launcher.say(note)
    check_host_memory(target.spec, target.tp, dtype, max_len, target.device, target.processes, slots, prefill_tokens)
    if target.stand_in:  # what its numbers cannot show, said where they are made (and recorded with them)
        launcher.say(f"note: --ranks 1 stands in for tp {target.tp}: {STAND_IN}")
    return target.with_(dtype=dtype, max_len=max_len, decode=decode, slots=slots, prefill_tokens=prefill_tokens)
