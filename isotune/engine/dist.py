"""Launch and collectives: spawn ranks or join a launcher's (engine.launcher reads its
environment), run the worker, and the collectives everything else uses.

Two ways in, one code path after:
  * launched (torchrun, benchmarks/netns.py, any launcher that sets RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT):
    this process joins as that rank;
  * local: `run_ranks` spawns N worker processes on this host (gloo on CPU, NCCL on CUDA), wired
    through a TCPStore on a free port, and watches them: when one dies the others are stopped,
    so no rank waits forever on a dead peer.
Every group has a timeout, so a collective with a dead peer fails instead of hanging.
"""

from __future__ import annotations

import datetime
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist
import torch.multiprocessing as mp

from isotune.core.credentials import redact
from isotune.core.errors import EXIT_BAD_INPUT, EXIT_FAILURE, BadInput
from isotune.core.link import Link
from isotune.core.target import backend_for
from isotune.engine.exits import PEER_CLOSED_LINE, peer_closed, why_ranks_ended
from isotune.engine.group import JOIN_TIMEOUT_S, TIMEOUT_S, init_group
from isotune.engine.launcher import check_master_port, launch_rank, launched_externally, launcher_store
from isotune.engine.link import EmulatedLink, GpuLink, link_for
from isotune.engine.memory import oom_kills
from isotune.engine.rank import DistInfo
from isotune.engine.rendezvous import PeerGone, Rendezvous

Worker = Callable[[DistInfo, Any], int]


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'."""
    if device not in ("auto", "cpu", "cuda"):
        raise BadInput(f"--device {device!r} is unknown: use auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda but no CUDA GPU is visible: use --device cpu")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def check_world(tp: int, device: str) -> None:
    """Validate --tp against the launcher and the hardware before any rank starts."""
    if launched_externally():
        world = int(os.environ["WORLD_SIZE"])
        if world != tp:
            raise BadInput(f"--tp {tp} but the launcher started {world} ranks: make them equal")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device == "cuda" and local >= torch.cuda.device_count():
            raise BadInput(
                f"LOCAL_RANK {local} but this host shows {torch.cuda.device_count()} GPUs: start at most that many "
                "ranks per host (torchrun --nproc-per-node) or check CUDA_VISIBLE_DEVICES"
            )
        if world > 1 and launch_rank() == 0:
            check_master_port()
    elif device == "cuda" and tp > torch.cuda.device_count():
        raise BadInput(f"--tp {tp} needs {tp} GPUs, {torch.cuda.device_count()} visible: lower --tp or use torchrun")


@dataclass(frozen=True, kw_only=True)
class Ranks:
    """How many ranks run where: what a rank needs to set itself up before its worker starts."""

    tp: int
    device: str = "cpu"  # cpu or cuda
    threads: int = 1  # compute threads per CPU rank
    comm_ctas: int | None = None  # NCCL's maxCTAs for the group
    link: Link | None = None  # an emulated interconnect (engine.link)
    stands_for: int | None = None  # one process standing in for rank 0 of this TP size


def run_ranks(worker: Worker, ranks: Ranks, payload: Any, interrupt_hint: str = "") -> int:
    """Run worker(info, payload) on every rank; return the exit code for the command.
    `interrupt_hint` follows 'interrupted' when Ctrl-C stops spawned ranks."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads fake speedups
    if launched_externally():
        return _run_rank(worker, payload, ranks, store_port=None, errors=None)
    if ranks.tp == 1:
        return _run_rank(worker, payload, ranks, store_port=None, errors=None, single=True)
    return _spawn(worker, ranks, payload, interrupt_hint)


def _spawn(worker: Worker, ranks: Ranks, payload: Any, interrupt_hint: str = "") -> int:
    tp = ranks.tp
    store = tdist.TCPStore(
        "127.0.0.1", 0, None, True, timeout=datetime.timedelta(seconds=TIMEOUT_S), wait_for_workers=False
    )
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # all ranks are on this host
    ooms_before = oom_kills()
    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    procs = []
    for rank in range(tp):
        env = {"RANK": str(rank), "WORLD_SIZE": str(tp), "LOCAL_RANK": str(rank)}
        p = ctx.Process(target=_spawned_main, args=(worker, payload, ranks, store.port, errors, env), daemon=False)
        p.start()
        procs.append(p)
    try:
        codes = _watch(procs)
    except KeyboardInterrupt:
        _stop(procs)  # SIGTERM first: ranks get a moment to record what they were doing
        print(f"interrupted: {interrupt_hint}" if interrupt_hint else "interrupted", file=sys.stderr)
        return 130
    finally:
        del store
    if all(c == 0 for c in codes):
        return 0
    messages = []
    while not errors.empty():
        messages.append(errors.get())
    line, code = why_ranks_ended(codes, messages, oom_kills() > ooms_before)
    print(line, file=sys.stderr)
    return code


def _watch(procs: list, settle_s: float = 1.0) -> list[int | None]:
    """Wait for all ranks. At the first failure give the others `settle_s` to fail on their own
    (so the root cause can be told from its echoes), then stop them. Returns the exit codes."""
    while True:
        codes = [p.exitcode for p in procs]
        if any(c not in (None, 0) for c in codes):
            deadline = time.monotonic() + settle_s
            while time.monotonic() < deadline and any(p.exitcode is None for p in procs):
                time.sleep(0.05)
            codes = [p.exitcode for p in procs]
            _stop(procs)
            return codes
        if all(c == 0 for c in codes):
            return codes
        time.sleep(0.05)


def _stop(procs: list, grace_s: float = 5.0) -> None:
    for p in procs:
        if p.exitcode is None:
            p.terminate()
    deadline = time.monotonic() + grace_s
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.exitcode is None:
            p.kill()
            p.join()


def _spawned_main(worker, payload, ranks: Ranks, store_port, errors, env) -> None:
    os.environ.update(env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    sys.exit(_run_rank(worker, payload, ranks, store_port=store_port, errors=errors))


def _run_rank(worker: Worker, payload: Any, ranks: Ranks, store_port: int | None, errors, single: bool = False) -> int:
    device = ranks.device
    rank = 0 if single else int(os.environ["RANK"])
    world = 1 if single else int(os.environ["WORLD_SIZE"])
    local_rank = 0 if single else int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        torch.set_num_threads(ranks.threads)
        dev = torch.device("cpu")
    info = DistInfo(
        rank=rank,
        world=world,
        local_rank=local_rank,
        device=dev,
        backend=None,
        launched=store_port is None and not single,
        comm_ctas=ranks.comm_ctas,
        link=ranks.link,
        stands_for=ranks.stands_for,
    )
    global _joining, _link
    try:
        # a GPU link compiles its kernel here: a failure is this rank's one line like any other
        _link = link_for(ranks.link, dev, ranks.comm_ctas) if ranks.link is not None else None
        if world > 1:  # joined at the first collective, after the worker has loaded its weights
            info.backend = backend_for(world, device)
            info.store_port = store_port
            if store_port is None:  # a launcher's rank: reach its store now, beat while loading
                at = launcher_store(rank)
                info.rendezvous = Rendezvous(at, rank, world, TIMEOUT_S, max(TIMEOUT_S, JOIN_TIMEOUT_S))
            _joining = info
        return worker(info, payload)
    except BadInput as e:
        return _report(errors, rank, str(e), EXIT_BAD_INPUT)
    except PeerGone as e:  # the cause is the peer: its own output says why
        return _report(errors, rank, str(e), EXIT_FAILURE)
    except Exception as e:  # a crash on any rank: say which in one line, let the watcher stop the others
        if os.environ.get("ISOTUNE_DEBUG") == "1":
            traceback.print_exc()
        if info.launched and peer_closed(e):  # an echo of a peer's death, not news: say only that
            return _report(errors, rank, PEER_CLOSED_LINE, EXIT_FAILURE)
        return _report(errors, rank, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", EXIT_FAILURE)
    finally:
        _joining, _link = None, None
        if info.rendezvous is not None:  # a rank that failed before the meeting still beats
            info.rendezvous.close()
        if tdist.is_initialized():
            tdist.destroy_process_group()


def _report(errors, rank: int, message: str, code: int) -> int:
    message = redact(message)  # a storage's driver error may quote its URL or password
    if errors is not None:
        errors.put((rank, message))  # the parent prints it once
    else:
        prefix = "" if rank == 0 else f"[rank {rank}] "
        print(f"{prefix}error: {message}", file=sys.stderr)
    return code


# Collectives the executor and the runtime use; all are no-ops on a single rank.

# A rank joins its process group at its first collective, not before its worker starts: loading
# a big model takes each rank its own time, and that skew must not eat the rendezvous timeout.
_joining: DistInfo | None = None


def _grouped() -> bool:
    """Whether there is a group to talk to, joining it now if this rank has not yet."""
    global _joining
    if _joining is not None:
        info, _joining = _joining, None
        init_group(info)
    return tdist.is_initialized()


# This rank's emulated link (--link), when it has one: every all-reduce is held to it.
_link: EmulatedLink | GpuLink | None = None


def all_reduce_async(t: torch.Tensor):
    """Sum `t` across ranks in place; returns a handle with .wait(), or None on one rank. On an
    emulated link the handle's wait also holds until the link would have delivered it."""
    handle = tdist.all_reduce(t, async_op=True) if _grouped() else None
    if _link is not None:
        return _link.hold(handle, t.numel() * t.element_size())
    return handle


def barrier(info: DistInfo) -> None:
    if _grouped():
        if info.device.type == "cuda":
            tdist.barrier(device_ids=[info.device.index])
        else:
            tdist.barrier()


def max_across(values: list[float], device: torch.device) -> list[float]:
    """Element-wise max over ranks (e.g. each rank's time per repeat -> the slowest rank's)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if _grouped():
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return t.tolist()


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's `obj` on every rank."""
    if not _grouped():
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0, device=info.device if info.device.type == "cuda" else None)
    return box[0]


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (nothing to wait for on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's `obj`, on every rank."""
    if not _grouped():
        return [obj]
    out: list[Any] = [None] * info.world
    tdist.all_gather_object(out, obj)
    return out
