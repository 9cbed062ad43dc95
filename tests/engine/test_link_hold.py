"""The hold of an emulated link on one rank: transfers queue, one at a time; the real transport
is never beaten; the wait sleeps. A clock the test moves, so no timing. And with the link on,
an ISO prefill's values are the unsplit one's: the link only delays."""

import json

import pytest
import torch

from isotune.core.analytic import catalog_links
from isotune.core.chunking import chunk_bounds
from isotune.core.link import parse_link
from isotune.core.spec import load_spec
from isotune.core.target import TargetFlags
from isotune.engine import dist
from isotune.engine.link import EmulatedLink
from isotune.engine.target import resolve_target
from isotune.engine.topology import describe, run_setting

LINK = parse_link("1ms,1GB/s", 2, catalog_links())  # 1 ms + 1 ms per MB at tp 2


class Clock:
    def __init__(self):
        self.now, self.slept = 100.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


class RealHandle:
    """A real all-reduce that takes `s` of the clock to finish."""

    def __init__(self, clock: Clock, s: float):
        self.clock, self.s, self.waited = clock, s, False

    def wait(self) -> None:
        self.waited = True
        self.clock.now += self.s


def test_back_to_back_transfers_finish_at_the_sum_of_their_times():
    clock = Clock()
    link = EmulatedLink(LINK, clock, clock.sleep)
    a = link.hold(None, 1_000_000)  # 2 ms
    b = link.hold(None, 3_000_000)  # 4 ms, starting when a is delivered
    b.wait()
    assert clock.now == pytest.approx(100.006) and clock.slept == [pytest.approx(0.006)]  # 2 + 4 ms, not max(2, 4)
    a.wait()  # long delivered: no more sleep
    assert clock.slept == [pytest.approx(0.006)]
    clock.now += 1.0  # the link idles; the next transfer starts when issued
    c = link.hold(None, 0)
    c.wait()
    assert clock.now == pytest.approx(101.007)


def test_the_real_transport_is_never_beaten():
    clock = Clock()
    link = EmulatedLink(LINK, clock, clock.sleep)
    slow = RealHandle(clock, 0.5)  # the real all-reduce takes 500 ms, the link 2 ms
    link.hold(slow, 1_000_000).wait()
    assert slow.waited and clock.now == pytest.approx(100.5) and clock.slept == []
    fast = RealHandle(clock, 0.001)  # 1 ms real, 2 ms emulated: the hold sleeps the difference
    link.hold(fast, 1_000_000).wait()
    assert fast.waited and clock.slept == [pytest.approx(0.001)]


def _prefills(info, payload) -> int:
    from isotune.engine.executor import prefill
    from isotune.engine.model import build_model

    spec = load_spec("tiny")
    model = build_model(spec, info, torch.float32, 128, seed=0)
    ids = torch.randint(0, spec.vocab, (128,), generator=torch.Generator().manual_seed(1))
    whole = model.final_norm(prefill(model, ids, [0, 128]))  # (S, hidden)
    split = model.final_norm(prefill(model, ids, chunk_bounds(128, [0.25, 0.5, 0.25], 16)))
    topo = describe(info, "float32")[0]
    if info.is_main:
        with open(payload, "w") as f:
            json.dump({"diff": (whole - split).abs().max().item(), "topology": topo}, f)
    return 0


def test_iso_equals_the_baseline_with_the_link_on_and_files_say_emulated(tmp_path):
    out = tmp_path / "out.json"
    ranks = dist.Ranks(tp=2, device="cpu", link=parse_link("100gbit", 2, catalog_links()))
    assert dist.run_ranks(_prefills, ranks, str(out)) == 0
    got = json.loads(out.read_text())
    assert got["diff"] < 1e-5
    assert got["topology"]["interconnect"] == "emulated 100gbit" and got["topology"]["link"]["spec"] == "100gbit"
    target = resolve_target(TargetFlags(model="tiny", tp="2", device="cpu", link="100gbit")).with_(dtype="float32")
    assert run_setting(target)["interconnect"] == "emulated 100gbit"  # what a plan check expects, before launch


def test_gpu_ranks_refuse_a_link_until_the_hold_can_take_the_comm_stream(monkeypatch):
    from isotune.core.errors import BadInput

    monkeypatch.setattr(dist, "resolve_device", lambda device: "cuda")
    monkeypatch.setattr(dist, "check_world", lambda tp, device: None)
    with pytest.raises(BadInput, match="use --device cpu"):
        resolve_target(TargetFlags(model="tiny", tp="2", device="cuda", link="1gbit"))


@pytest.mark.parametrize(
    "args,words",
    [
        (["run", "--tp", "2", "--link", "nope"], "is not in the catalog: use one of"),
        (["bench", "--tp", "2", "--link", "0gbit"], "the rate must be more than 0"),
        (["profile", "--tp", "2", "--link", "1gbit,25us", "-o", "{tmp}/p.yaml"], "does not parse"),
        (["search", "--tp", "1", "--link", "10gbit", "-o", "{tmp}/plan.yaml"], "tp 2 or more"),
    ],
)
def test_a_bad_link_is_one_line_exit_2_and_writes_nothing(cli_here, tmp_path, args, words):
    r = cli_here(*[a.format(tmp=tmp_path) for a in args], "--model", "tiny", "--device", "cpu")
    assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not list(tmp_path.iterdir())


def test_a_study_on_an_emulated_link_is_its_own(tmp_path):
    """A search on a link is named for it and records it, so resuming it on another link (or
    none) is refused rather than mixing trials measured on two links."""
    from isotune.commands.search.command import search_config
    from isotune.tune.search import study_attrs

    flags = dict(seq_lens="512", trials=2, max_chunks=2, align=None, objective="measured", profile=None)
    flags |= dict(storage=None, study_name=None, sampler="tpe", plots=None, warmup=0, repeats=1, time_budget=None)
    on_link, _ = search_config(target=TargetFlags(model="tiny", tp="2", device="cpu", link="25us,12GB/s"),
                               out=str(tmp_path / "a.yaml"), **flags)  # fmt: skip
    loopback, _ = search_config(target=TargetFlags(model="tiny", tp="2", device="cpu"),
                                out=str(tmp_path / "b.yaml"), **flags)  # fmt: skip
    assert on_link.study_prefix.endswith("-link25us_12GB_s") and "-link" not in loopback.study_prefix
    assert study_attrs(on_link, 512)["link"] == "25us,12GB/s" and "link" not in study_attrs(loopback, 512)
