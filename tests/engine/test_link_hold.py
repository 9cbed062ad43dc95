"""The hold of an emulated link on one rank: transfers queue, one at a time; the real transport
is never beaten; the wait sleeps. A clock the test moves, so no timing. And with the link on,
an ISO prefill's values are the unsplit one's: the link only delays."""

import json
from dataclasses import dataclass

import pytest
import torch

from isotune.core.analytic import catalog_links
from isotune.core.chunking import chunk_bounds
from isotune.core.link import GPU_HOLD_CTAS, parse_link
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


def test_on_gpus_a_link_is_the_stand_ins_and_needs_its_kernel(monkeypatch):
    """Real GPU ranks keep their real interconnect; a GPU stand-in needs the hold kernel, which
    needs triton (resolved on a machine without a GPU: the device is said to be one)."""
    from isotune.core.errors import BadInput
    from isotune.engine import comm_hold

    monkeypatch.setattr(dist, "resolve_device", lambda device: "cuda")
    monkeypatch.setattr(dist, "check_world", lambda tp, device: None)
    with pytest.raises(
        BadInput, match="2 GPU ranks all-reduce over their real interconnect: drop --link, or add --ranks 1"
    ):
        resolve_target(TargetFlags(model="tiny", tp="2", device="cuda", link="1gbit"))

    def no_triton():
        raise ImportError("No module named 'triton'")

    monkeypatch.setattr(comm_hold, "_kernel", no_triton)
    with pytest.raises(
        BadInput, match="--link 1gbit on this GPU: the GPU link's hold kernel needs triton, and it is not installed"
    ):
        resolve_target(TargetFlags(model="tiny", tp="2", device="cuda", link="1gbit", ranks="1"))
    monkeypatch.setattr(comm_hold, "unavailable", lambda: None)  # as where triton and a GPU are
    t = resolve_target(TargetFlags(model="tiny", tp="4", device="cuda", link="h100-sxm", ranks="1", comm_ctas="24"))
    assert t.link.spec == "h100-sxm" and t.comm_ctas == 24 and t.ranks == 1  # the hold's CTAs
    # files record how many CTAs the hold took, so a plan made with 24 is refused with 16
    from isotune.core.setting import setting_problems
    from isotune.engine.group import comm_setting

    made, now = comm_setting(None, 24, held_on_gpu=True), comm_setting(None, None, held_on_gpu=True)
    assert made == {"hold_ctas": 24, "hold_threads": 512} and now["hold_ctas"] == GPU_HOLD_CTAS
    assert setting_problems({"comm": made}, {"comm": now}, "the plan was made") == [
        f"the plan was made for comm a link hold of 24 CTAs x 512 threads, not a link hold of {GPU_HOLD_CTAS} CTAs x 512 threads"
    ]


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


@dataclass
class StandIn:
    folder: str

    def run(self, model, info) -> int:
        assert dist._link is not None and dist._link.link == info.link  # the launch set this rank's link
        clock = Clock()  # the test's clock from here on, so the hold's times are exact
        dist._link = EmulatedLink(info.link, clock, clock.sleep)
        t = torch.ones(8, model.spec.hidden)  # (8, hidden)
        held = dist.all_reduce_async(t)
        seen = {"world": info.world, "tp": info.tp, "q_heads": model.shard.q_heads, "sum": t.sum().item()}
        seen |= {"held_ms": (held.finish_s - clock.now) * 1e3, "no_peer": held.handle is None}
        seen |= {"topology": describe(info, "float32")[0]}
        with open(f"{self.folder}/seen.json", "w") as f:
            json.dump(seen, f)
        return 0


def test_a_stand_in_is_rank_0_of_tp_n_alone_and_says_so(tmp_path):
    """--tp 4 --ranks 1: one process with rank 0's quarter of the heads, no peers, every
    all-reduce held for the link's time (the values are its own partial sums); its files say
    it is a stand-in and what that cannot show."""
    from isotune.engine.launch import launch

    target = resolve_target(TargetFlags(model="tiny", tp="4", ranks="1", device="cpu", link="1ms,1GB/s"))
    assert target.stand_in and target.processes == 1 and target.backend is None
    assert launch(StandIn(str(tmp_path)), target.with_(dtype="float32", max_len=16)) == 0
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert (seen["world"], seen["tp"], seen["q_heads"]) == (1, 4, load_spec("tiny").heads // 4)
    assert seen["no_peer"] and seen["sum"] == 8 * load_spec("tiny").hidden  # nothing added: no peers
    link_ms = target.link.allreduce_ms(8 * load_spec("tiny").hidden * 4)
    assert seen["held_ms"] == pytest.approx(link_ms)  # held for the link's time of the whole message
    topo = seen["topology"]
    assert topo["tp"] == 4 and topo["backend"] == "none" and "no rank skew" in topo["stand_in"]


@pytest.mark.parametrize(
    "ranks,tp,link,words",
    [
        ("3", "2", "1gbit", "--ranks 3 exceeds --tp 2: use 1 or 2"),
        ("3", "4", "1gbit", "--ranks 3 does not divide --tp 4"),
        ("2", "4", "1gbit", "run every rank (--ranks 4) or a stand-in (--ranks 1)"),
        ("1", "2", None, "give --link for the all-reduces its peers would share"),
        ("0", "2", "1gbit", "--ranks '0' must be one rank count"),
    ],
)
def test_bad_ranks_are_one_line(ranks, tp, link, words):
    from isotune.core.errors import BadInput

    with pytest.raises(BadInput, match=words.replace("(", r"\(").replace(")", r"\)")):
        resolve_target(TargetFlags(model="tiny", tp=tp, ranks=ranks, device="cpu", link=link))


def test_a_stand_in_plan_and_a_real_groups_are_refused_on_each_other():
    """The stand-in runs no process group (backend none), real ranks do (gloo): a plan made on
    one is refused on the other without --force, by the setting rule every plan check uses."""
    from isotune.core.setting import setting_problems

    flags = dict(model="tiny", tp="2", device="cpu", link="1gbit")
    stand_in = run_setting(resolve_target(TargetFlags(**flags, ranks="1")).with_(dtype="bfloat16"))
    real = run_setting(resolve_target(TargetFlags(**flags)).with_(dtype="bfloat16"))
    assert stand_in["interconnect"] == real["interconnect"] == "emulated 1gbit"
    assert setting_problems(stand_in, real, "the plan was made") == [
        "the plan was made for backend none (one rank, no process group), not gloo"
    ]
    assert setting_problems(real, stand_in, "the plan was made")


def test_profile_hardware_with_a_stand_in_measures_compute_and_takes_the_catalogs_link(cli_here, tmp_path):
    out = tmp_path / "p.yaml"
    r = cli_here("profile", "--hardware", "cpu", "--model", "tiny", "--tp", "2", "--ranks", "1", "--device", "cpu",
                 "--seq-lens", "128", "--repeats", "1", "-o", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "note: --ranks 1 stands in for tp 2: rank 0's shard alone" in r.stderr and "no rank skew" in r.stderr
    from isotune.core.profile import load_profile

    prof = load_profile(out)
    assert prof.source == "measured" and prof.topology["interconnect"] == "emulated cpu"
    assert prof.topology["stand_in"] and prof.topology["link"]["source"].startswith("catalog cpu")
    assert prof.topology["hardware"] == "cpu"  # what estimate --measured matches rows by

    # estimate takes it for the cpu entry's tp 2 rows and says so; other rows stay modelled
    js = tmp_path / "e.json"
    r = cli_here("estimate", "--model", "tiny", "--hardware", "cpu,h100-sxm", "--tp", "2", "--seq-lens", "128,256",
                 "--measured", str(out), "--json", str(js))  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = {(x["hardware"], x["tokens"]): x["compute"] for x in json.loads(js.read_text())}
    assert set(rows.values()) == {"measured on cpu (x86_64)", "modelled"}, rows
    assert all(c.startswith("measured") == (hw == "cpu") for (hw, _), c in rows.items()), rows
    assert f"cpu tp 2: measured on cpu (x86_64) ({out}); its link: emulated cpu" in r.stderr
    assert "cpu* " in r.stdout and "compute measured on a stand-in (*)" in " ".join(r.stdout.split())
    r = cli_here("estimate", "--model", "small", "--hardware", "cpu", "--tp", "2", "--measured", str(out))
    assert r.returncode == 0 and "no --measured profile fits these rows" in r.stderr, r.stderr  # another model
    r = cli_here("profile", "--hardware", "cpu", "--link", "1gbit", "--model", "tiny", "--tp", "2", "--ranks", "1",
                 "--device", "cpu", "--seq-lens", "128", "--repeats", "1", "-o", str(out))  # fmt: skip
    assert r.returncode == 0 and load_profile(out).topology["interconnect"] == "emulated 1gbit"  # --link wins


def test_a_stand_in_profile_of_another_kind_of_device_and_an_analytic_profile_as_measured_are_refused(
    cli_here, tmp_path
):
    out = tmp_path / "p.yaml"
    r = cli_here("profile", "--hardware", "h100-sxm", "--model", "tiny", "--tp", "2", "--ranks", "1",
                 "--device", "cpu", "-o", str(out))  # fmt: skip
    assert r.returncode == 2 and "h100-sxm is a GPU entry while this runs on cpu" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()
    assert cli_here("profile", "--hardware", "h100-sxm", "--model", "tiny", "--tp", "2", "-o", str(out)).returncode == 0
    r = cli_here("estimate", "--model", "tiny", "--tp", "2", "--measured", str(out))
    assert r.returncode == 2 and "is not a measured profile of a catalog entry" in r.stderr, r.stderr


def test_a_trace_ends_each_held_all_reduce_when_the_link_delivers_it(cli, tmp_path):
    """The trace's all-reduce spans on an emulated link are the link's, not loopback's: on a link
    far slower than loopback each lasts the link's time for its bytes (a span starts at its issue
    or when the one before it ended, as on any comm lane)."""
    trace = tmp_path / "t.json"
    r = cli("run", "--model", "tiny", "--tp", "2", "--link", "10mbit", "--chunks", "2", "--seq-len", "256", "--repeats", "1",
            "--dtype", "bfloat16", "--trace", str(trace))  # fmt: skip
    assert r.returncode == 0, r.stderr
    link = parse_link("10mbit", 2, catalog_links())
    hidden = load_spec("tiny").hidden
    comms = [e for e in json.loads(trace.read_text())["traceEvents"] if e["ph"] == "X" and "allreduce" in e["name"]]
    assert len(comms) == 2 * 2 * 2 * 2  # 2 layers x attention and MLP x 2 chunks, on each of 2 ranks
    for e in comms:
        need_us = link.allreduce_ms(128 * hidden * 2) * 1e3  # a 128-token chunk's bfloat16 partial sums
        assert e["dur"] >= 0.99 * need_us, (e, need_us)
