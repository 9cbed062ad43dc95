"""launch(job, target): every rank builds its model once, from the target, and runs the job on
it; Ctrl-C while the weights load ends the launch with the job's hint."""

import json
from dataclasses import dataclass

import torch

from isotune.core.spec import load_spec
from isotune.core.target import Target
from isotune.engine.launch import launch


@dataclass
class Record:
    """Writes what each rank was handed."""

    folder: str

    def run(self, model, info) -> int:
        seen = {
            "rank": info.rank,
            "world": info.world,
            "layers": model.spec.layers,
            "dtype": str(model.dtype),
            "max_len": model.max_len,
            "seed": model.seed,
            "q_heads": model.shard.q_heads,
            "threads": torch.get_num_threads(),
        }
        with open(f"{self.folder}/rank{info.rank}.json", "w") as f:
            json.dump(seen, f)
        return 0


@dataclass
class Interrupted:
    interrupt_hint: str = "finished work is kept; rerun to resume"

    def before_build(self, info) -> None:
        raise KeyboardInterrupt

    def run(self, model, info) -> int:
        raise AssertionError("never reached")


def test_each_rank_builds_its_shard_of_the_target(tmp_path):
    spec = load_spec("tiny", layers=1)
    target = Target(spec=spec, tp=2, dtype="float32", device="cpu", threads=1, seed=3, max_len=48)
    assert launch(Record(str(tmp_path)), target) == 0
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [s["rank"] for s in seen] == [0, 1]
    for s in seen:
        assert (s["world"], s["layers"], s["dtype"], s["max_len"], s["seed"]) == (2, 1, "torch.float32", 48, 3)
        assert s["q_heads"] == spec.heads // 2 and s["threads"] == 1


def test_ctrl_c_while_loading_says_the_jobs_hint(capsys):
    target = Target(spec=load_spec("tiny", layers=1), tp=1, dtype="float32", device="cpu", max_len=16)
    assert launch(Interrupted(), target) == 130
    assert capsys.readouterr().err.strip() == "interrupted: finished work is kept; rerun to resume"


def test_an_unfitted_target_is_not_launched():
    import pytest

    with pytest.raises(ValueError, match="fitted target"):
        launch(Record("."), Target(spec=load_spec("tiny"), tp=1, dtype="float32", device="cpu", max_len=0))
