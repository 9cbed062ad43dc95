"""What one rank knows of its group: its rank, the world size, its device and how the group
talks. Below both the launch (engine.dist) and the group (engine.group), which fill it in and
read it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from isotune.core.link import Link
from isotune.engine.rendezvous import Rendezvous


@dataclass(kw_only=True)
class DistInfo:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    backend: str | None  # None when world == 1 and no group was made
    launched: bool  # joined an external launcher (torchrun, any that sets RANK/WORLD_SIZE/...)
    store_port: int | None = None  # spawned ranks: the parent's rendezvous store
    rendezvous: Rendezvous | None = None  # launched ranks: the launcher's store, connected at start
    comm_ctas: int | None = None  # NCCL's maxCTAs for the group (--comm-ctas); None: NCCL's choice
    link: Link | None = None  # an emulated interconnect the all-reduces are held to (engine.link)
    stands_for: int | None = None  # a stand-in: the TP size whose rank 0 this one process computes

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def tp(self) -> int:
        """The TP size this rank's shard belongs to: its world's, or the one it stands in for."""
        return self.stands_for or self.world


def single(device: str) -> DistInfo:
    """A world of one on `device` ('cpu' or 'cuda'): no group, no launcher."""
    dev = torch.device("cuda", 0) if device == "cuda" else torch.device("cpu")
    return DistInfo(rank=0, world=1, local_rank=0, device=dev, backend=None, launched=False)
