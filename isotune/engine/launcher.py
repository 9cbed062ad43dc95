"""What an external launcher (torchrun, benchmarks/netns.py, anything that sets RANK/WORLD_SIZE/MASTER_ADDR/
MASTER_PORT) tells a rank: whether there is one, this rank, the world size, and where the ranks
meet. The only module that reads those variables."""

from __future__ import annotations

import os
import sys

from isotune.core.errors import BadInput
from isotune.engine.rendezvous import StoreAddress

LAUNCH_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched_externally() -> bool:
    return all(v in os.environ for v in LAUNCH_VARS)


def launch_rank() -> int:
    """This process's rank under an external launcher, else 0 (the process that spawns ranks)."""
    return int(os.environ["RANK"]) if launched_externally() else 0


def say(line: str) -> None:
    """A note on stderr, once: under a launcher every rank runs the command's checks, rank 0 speaks."""
    if launch_rank() == 0:
        print(line, file=sys.stderr)


def default_tp(tp: int | None) -> int:
    """--tp when given; else the launcher's WORLD_SIZE, or 1 for a local run."""
    if tp is not None:
        return tp
    return int(os.environ["WORLD_SIZE"]) if launched_externally() else 1


def agent_store() -> bool:
    """Whether torchrun's agent serves the store on MASTER_PORT (else a launcher's rank 0 does)."""
    return os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"


def launcher_store(rank: int) -> StoreAddress:
    """Where a launcher's ranks meet. Keys are per run and attempt: torchrun keeps one store for
    a run's restarts, and a restarted rank must not count the last attempt's ranks as here."""
    run, attempt = os.environ.get("TORCHELASTIC_RUN_ID", ""), os.environ.get("TORCHELASTIC_RESTART_COUNT", "")
    return StoreAddress(
        host=os.environ["MASTER_ADDR"],
        port=int(os.environ["MASTER_PORT"]),
        serve=rank == 0 and not agent_store(),
        prefix=f"isotune/{run}/{attempt}/" if run or attempt else "isotune/",
    )


def check_master_port() -> None:
    """Rank 0 hosts the rendezvous store on MASTER_PORT (unless torchrun's agent already does):
    a port that is taken is a clear error now rather than a failed rendezvous later."""
    import socket

    raw = os.environ["MASTER_PORT"]
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise BadInput(f"MASTER_PORT={raw!r} is not a port number: set it to a free port such as 29500")
    if agent_store():
        return  # torchrun's agent holds the store on that port; the ranks only connect
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # like the store itself: a port left in TIME_WAIT by the previous run is free, a listener is not
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", int(raw)))
        except OSError:
            raise BadInput(
                f"MASTER_PORT {raw} is already in use on this host: pick a free port (e.g. MASTER_PORT=29511) "
                "or stop the process holding it"
            ) from None
