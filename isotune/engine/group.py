"""How ranks make their process group: the rendezvous, the timeouts, and the NCCL options that
decide how an all-reduce shares the GPU with the compute it should hide behind."""

from __future__ import annotations

import contextlib
import datetime
import os
import sys

import torch
import torch.distributed as tdist

from isotune.core.link import GPU_HOLD_CTAS, GPU_HOLD_THREADS
from isotune.core.versions import minor
from isotune.engine.rank import DistInfo
from isotune.engine.rendezvous import wait_for_all

TIMEOUT_S = float(os.environ.get("ISOTUNE_DIST_TIMEOUT", "120"))
# Spawned ranks meet at their first collective, each after loading its weights: a big model
# loads at different speeds per rank, so the meeting waits longer than a collective may. (A
# dead rank still ends it at once: the parent watches its ranks.)
JOIN_TIMEOUT_S = float(os.environ.get("ISOTUNE_JOIN_TIMEOUT", "900"))

# The environment knobs that set how many SMs (channels, CTAs) an NCCL all-reduce takes from the
# compute, and how many hardware queues the host feeds: they change what a split can hide, so
# profiles and plans record the values they were measured under (unset ones are left out).
COMM_KNOBS = (
    "NCCL_MAX_NCHANNELS",
    "NCCL_MIN_NCHANNELS",
    "NCCL_MAX_CTAS",
    "NCCL_MIN_CTAS",
    "NCCL_ALGO",
    "NCCL_PROTO",
    "CUDA_DEVICE_MAX_CONNECTIONS",
)


def comm_setting(backend: str | None, comm_ctas: int | None = None, held_on_gpu: bool = False) -> dict:
    """What shapes the all-reduce's share of the GPU, as recorded in profiles and plans: NCCL's
    stream priority (always high, see nccl_options), its CTA cap (--comm-ctas) and the knobs
    set in this environment; or, on a GPU stand-in (`held_on_gpu`), the CTAs its link's hold
    kernel takes (engine.comm_hold)."""
    if held_on_gpu:
        return {"hold_ctas": comm_ctas or GPU_HOLD_CTAS, "hold_threads": GPU_HOLD_THREADS}
    if backend != "nccl":
        return {}
    out = {"high_priority_stream": True, "env": {k: os.environ[k] for k in COMM_KNOBS if k in os.environ}}
    return out | ({"max_ctas": comm_ctas} if comm_ctas else {})


def nccl_options(timeout: datetime.timedelta, comm_ctas: int | None = None):
    """NCCL runs its kernels on a high-priority stream: when compute and an all-reduce are both
    ready, the GPU's scheduler starts the all-reduce's blocks first, so the comm that ISO means
    to hide is not itself queued behind the next chunk's GEMMs (vLLM and TokenWeave do the same)."""
    opts = tdist.ProcessGroupNCCL.Options(is_high_priority_stream=True)
    opts._timeout = timeout  # else torch warns that the options' default differs from ours
    if comm_ctas:  # fewer CTAs: a slower all-reduce that leaves more SMs to the compute it hides behind
        opts.config.max_ctas = comm_ctas
    return opts


def init_group(info: DistInfo) -> None:
    """Join the group `info` names: through the launcher's store (engine.rendezvous) or the
    spawning parent's."""
    timeout = datetime.timedelta(seconds=TIMEOUT_S)
    kwargs: dict = {}
    if info.device.type == "cuda":
        kwargs["device_id"] = info.device
    if info.backend == "nccl":
        kwargs["pg_options"] = nccl_options(timeout, info.comm_ctas)
    if info.rendezvous is not None:  # a launcher's rank: its store was reached as it started
        store = info.rendezvous.meet()
    else:  # a spawned rank: the parent's store
        store = tdist.TCPStore("127.0.0.1", info.store_port, None, False, timeout=timeout)
        wait_for_all(store, "isotune/joined", info.world, max(TIMEOUT_S, JOIN_TIMEOUT_S))
    with _quiet_gloo(info.backend):
        tdist.init_process_group(
            info.backend, store=store, rank=info.rank, world_size=info.world, timeout=timeout, **kwargs
        )


@contextlib.contextmanager
def _quiet_gloo(backend: str | None):
    """torch 2.9 and 2.10 print every gloo rank's connection ("[Gloo] Rank 0 is connected to 1
    peer ranks...") on stdout, from C++, where `run` streams its answer and the commands their
    tables: the stdout file descriptor points at /dev/null while the group connects."""
    if backend != "gloo" or not (2, 9) <= minor(torch.__version__) < (2, 11):
        yield
        return
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no stdout at all (closed by the caller): nothing to keep clean
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
