"""What each rank of `isotune profile` runs: the measurements (tune.measure) under a progress
bar on rank 0, which writes the profile and shows it."""

from __future__ import annotations

from dataclasses import dataclass

from isotune.core.profile import save_profile
from isotune.engine.model import TPModel
from isotune.engine.rank import DistInfo
from isotune.tune.measure import Sweep, measure, steps_for


@dataclass(kw_only=True)
class ProfileJob:
    sweep: Sweep
    out: str
    hardware: str | None = None  # the catalog entry a stand-in's profile stands for (estimate --measured)

    def run(self, model: TPModel, info: DistInfo) -> int:
        from rich.progress import Progress

        if not info.is_main:
            measure(model, info, self.sweep)
            return 0
        with Progress(transient=True) as bar:
            task = bar.add_task("profiling", total=steps_for(self.sweep))
            prof = measure(model, info, self.sweep, lambda what: bar.update(task, advance=1, description=what))
        if self.hardware:
            prof.topology["hardware"] = self.hardware
        save_profile(prof, self.out)
        from isotune.viz.tables import show_profile

        show_profile(prof, self.out)
        return 0
