"""What each rank of `isotune search` runs (measured objective), or the same studies in-process
on the cost model (model objective).

Rank 0 runs the studies and drives; every rank holds the model and measures what rank 0
broadcasts: ("time", seq_len, bounds, warmup) -> the slowest rank's ms of one prefill;
("validate", seq_len, variants, repeats) -> per-repeat times, interleaved (on CPU ranks also the
CPU the comm-only variant burned); None -> done.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import optuna
import torch

from isotune.core.cost import simulate
from isotune.core.credentials import redact
from isotune.core.plan import Plan, save_plan
from isotune.core.stats import typical
from isotune.engine import dist
from isotune.engine.model import TPModel, random_prompt
from isotune.engine.rank import DistInfo
from isotune.engine.timing import time_prefills
from isotune.engine.topology import describe, dtype_name, software
from isotune.tune.config import SearchConfig
from isotune.tune.search import install_sigterm, open_studies, search_all
from isotune.tune.validate import COMM_CPU


class Measurer:
    def __init__(self, model: TPModel, info: DistInfo, cfg: SearchConfig):
        self.model, self.info, self.cfg = model, info, cfg
        self.spec = model.spec
        self._ids: dict[int, torch.Tensor] = {}

    def ids(self, s: int) -> torch.Tensor:
        if s not in self._ids:
            self._ids[s] = torch.tensor(random_prompt(s, self.spec.vocab, self.model.seed), device=self.info.device)
        return self._ids[s]  # (S,)

    @torch.inference_mode()
    def execute(self, cmd: tuple) -> Any:
        kind, s = cmd[0], cmd[1]
        if kind == "time":  # one repeat of the executor's timing protocol, after `warmup` untimed ones
            bounds, warmup = cmd[2], cmd[3]
            pack = self.cfg.pack_for(s)
            return time_prefills(self.model, self.info, self.ids(s), {"t": bounds}, warmup, 1, pack=pack)["t"]
        if kind == "validate":
            variants, repeats = cmd[2], cmd[3]
            samples: dict[str, list[float]] = {}
            cpu: dict[str, float] = {}
            time_prefills(
                self.model, self.info, self.ids(s), variants, self.cfg.warmup, repeats, samples, cpu,
                pack=self.cfg.pack_for(s),
            )  # fmt: skip
            if "comm" in cpu and self.info.device.type == "cpu":  # gloo's CPU, taken from the compute's cores
                samples[COMM_CPU] = [cpu["comm"]]
            return samples
        raise ValueError(f"unknown command {kind!r}")

    def call(self, cmd: tuple) -> Any:
        dist.broadcast_object(cmd, self.info)
        return self.execute(cmd)

    def serve(self) -> None:
        while (cmd := dist.broadcast_object(None, self.info)) is not None:
            self.execute(cmd)

    def stop(self) -> None:
        dist.broadcast_object(None, self.info)

    def evaluate_for(self, s: int):
        def evaluate(bounds: list[int], trial) -> float:
            ts = []
            for r in range(self.cfg.repeats):
                ts.append(self.call(("time", s, bounds, self.cfg.warmup if r == 0 else 0)))
                trial.report(typical(ts), r)
                if r + 1 < self.cfg.repeats and trial.should_prune():
                    raise optuna.TrialPruned()
            return typical(ts)

        return evaluate

    def validate(self, s: int, variants: dict, repeats: int) -> dict[str, list[float]]:
        return self.call(("validate", s, variants, repeats))


@dataclass(kw_only=True)
class SearchJob:
    cfg: SearchConfig

    @property
    def interrupt_hint(self) -> str:
        return resume_hint(self.cfg)

    def before_build(self, info: DistInfo) -> None:
        install_sigterm()  # a launcher's SIGTERM while the weights load is an interrupt too

    def run(self, model: TPModel, info: DistInfo) -> int:
        return _search(model, info, self.cfg)


def _search(model: TPModel, info: DistInfo, cfg: SearchConfig) -> int:
    """Rank 0 drives the studies, the others measure what it sends; an interrupt is said, with
    the resume hint, by the launch (engine.launch)."""
    m = Measurer(model, info, cfg)
    topology, soft = describe(info, dtype_name(model), model.ops.compiled)
    if not info.is_main:
        m.serve()
        return 0
    plan = search_all(cfg, m.evaluate_for, m.validate, topology, soft)
    m.stop()
    finish(plan, cfg)
    return 0


def search_model(cfg: SearchConfig) -> int:
    """--objective model: the studies on the cost model alone, in this process."""

    def evaluate_for(s: int):
        pack = cfg.pack_for(s)
        return lambda bounds, trial: simulate(cfg.profile, bounds, cfg.sim_layers, pack=pack)

    def validate(s: int, variants: dict, repeats: int) -> dict[str, list[float]]:
        pack = cfg.pack_for(s)
        return {name: [simulate(cfg.profile, b, cfg.sim_layers, pack=pack)] for name, b in variants.items()}

    try:  # the plan is for the hardware the profile describes
        plan = search_all(cfg, evaluate_for, validate, dict(cfg.profile.topology), software())
    except KeyboardInterrupt:
        print(f"interrupted: {resume_hint(cfg)}", file=sys.stderr)
        return 130
    finish(plan, cfg)
    return 0


def resume_hint(cfg: SearchConfig) -> str:
    return f"finished trials are kept in {redact(cfg.storage)}; rerun the same command to resume"


def finish(plan: Plan, cfg: SearchConfig) -> None:
    from isotune.viz.plan_tables import findings, show_plan
    from isotune.viz.tables import console

    save_plan(plan, cfg.out)
    show_plan(plan, cfg.out, decisions=False)  # the search said each as it was made
    for line in findings(plan):
        console().print(line, highlight=False)
    if cfg.plots_dir:
        from isotune.viz.plots import write_search_plots

        files = write_search_plots(plan, open_studies(cfg), cfg.plots_dir)
        print(f"plots: {len(files)} PNG files in {cfg.plots_dir}")
