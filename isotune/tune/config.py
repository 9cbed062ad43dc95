"""SearchConfig: what a search's studies are made with (the model by fingerprint, the group,
the space, the objective and its budget), below the modules that run them (tune.search,
tune.trials, tune.validate). With the measured objective the group is the launch's target; with
the model objective it is the hardware a profile describes."""

from __future__ import annotations

from dataclasses import dataclass

from isotune.core.pack import Seq, packed
from isotune.core.profile import Profile

GRID = "grid"  # every split on a 0.05 ratio grid (core.space.grid), in order
MEASURED, MODEL = "measured", "model"
TPE = "tpe"


@dataclass(kw_only=True)
class SearchConfig:
    dtype: str
    seq_lens: list[int]
    trials: int
    max_chunks: int
    align: int
    objective: str
    sampler: str
    profile: Profile | None
    sim_layers: int  # layers the cost model simulates
    storage: str
    study_prefix: str
    out: str
    model_name: str
    fingerprint: str
    tp: int
    warmup: int
    repeats: int
    device: str
    seed: int
    compile: bool = False  # --compile: fused elementwise steps (engine.fused)
    comm_ctas: int | None = None  # --comm-ctas: NCCL's CTA cap (engine.group)
    link: str | None = None  # --link: the emulated interconnect's spec (core.link)
    plots_dir: str | None = None
    time_budget_s: float | None = None  # for the trials of all lengths; validation comes on top
    revalidate: bool = False  # --revalidate: measure validation again where the study stored one
    pack: int | None = None  # --pack: each length searched as packed prompts of this many tokens

    def pack_for(self, seq_len: int) -> list[Seq] | None:
        """The prompts a length is searched as: one, or packed (core.pack)."""
        return packed(seq_len, self.pack) if self.pack else None
