"""The plan file: schema, validation, buckets, lookup, fit checks. Pure Python."""

import pytest

from isotune.core.errors import BadInput
from isotune.core.plan import (
    Bucket,
    Plan,
    bucket_ranges,
    check_fits,
    is_plan_file,
    load_plan,
    lookup,
    plan_to_yaml,
    save_plan,
    split_for,
    validate,
)


def _plan(buckets=None, align=16) -> Plan:
    return Plan(
        model={"name": "tiny", "fingerprint": "abc", "layers": 2},
        topology={"tp": 2, "backend": "gloo", "device": "cpu", "interconnect": "loopback", "dtype": "float32"},
        software={"isotune": "t", "torch": "t"},
        align=align,
        buckets=buckets
        or [
            Bucket(min_tokens=1, max_tokens=768, chunks=1, ratios=[1.0], plan_ms=10, baseline_ms=10, seq_len=512),
            Bucket(min_tokens=769, max_tokens=2048, chunks=2, ratios=[0.6, 0.4], plan_ms=20, baseline_ms=25),
        ],
    )


def test_bucket_ranges_meet_at_midpoints_and_cover_from_one():
    assert bucket_ranges([512, 1024, 2048, 4096]) == [(1, 768), (769, 1536), (1537, 3072), (3073, 4096)]
    assert bucket_ranges([100]) == [(1, 100)]


def test_round_trip_lookup_and_split(tmp_path):
    p = _plan()
    path = tmp_path / "plan.yaml"
    save_plan(p, path)
    assert is_plan_file(path) and load_plan(path) == p
    assert lookup(p, 768)[0].chunks == 1 and lookup(p, 769)[0].chunks == 2
    bucket, above = lookup(p, 5000)
    assert above and bucket is p.buckets[-1]
    ratios, notes = split_for(p, 1000)
    assert ratios == [0.6, 0.4] and notes == []
    ratios, notes = split_for(p, 5000)
    assert ratios == [0.6, 0.4] and "above the plan's last bucket" in notes[0]
    # 0.9/0.1 of 1100 tokens at align 512 leaves a 76-token chunk: the runtime runs it unsplit and says so
    p512 = _plan(align=512)
    p512.buckets[0].max_tokens = 1024  # keep the 2-chunk bucket valid for align 512
    p512.buckets[1].min_tokens = 1025
    p512.buckets[1].ratios = [0.9, 0.1]
    assert split_for(p512, 1100)[0] == [1.0] and "running unsplit" in split_for(p512, 1100)[1][0]


@pytest.mark.parametrize(
    "change,needle",
    [
        (lambda p: setattr(p.buckets[1], "min_tokens", 700), "overlaps"),
        (lambda p: setattr(p.buckets[1], "min_tokens", 800), "leaves a gap"),
        (lambda p: setattr(p.buckets[0], "min_tokens", 5), "leaves a gap"),
        (lambda p: setattr(p.buckets[1], "ratios", [0.7, 0.4]), "sum to 1.1"),
        (lambda p: setattr(p.buckets[1], "ratios", [1.2, -0.2]), "positive"),
        (lambda p: setattr(p.buckets[1], "ratios", [1.0]), "one ratio per chunk"),
        (lambda p: setattr(p.buckets[1], "chunks", 9), "out of range"),
        (lambda p: setattr(p, "align", 1024), "do not fit"),
        (lambda p: setattr(p, "align", 0), "positive integer"),
        (lambda p: setattr(p, "buckets", []), "no buckets"),
    ],
)
def test_validation_names_the_problem(change, needle):
    p = _plan()
    change(p)
    with pytest.raises(BadInput, match=needle):
        validate(p)


@pytest.mark.parametrize(
    "text,needle",
    [
        ("isotune_plan: 1\nbuckets: [1, 2", "not valid YAML"),
        ("isotune_profile: 1\n", "not an isotune plan"),
        ("isotune_plan: 7\n", "schema version 7"),
        ("isotune_plan: 1\nmodel: {}\n", "malformed"),
        ("isotune_plan: 1\nbuckets: 3\n", "malformed"),
    ],
)
def test_bad_plan_files(tmp_path, text, needle):
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    with pytest.raises(BadInput, match=needle):
        load_plan(path)
    with pytest.raises(BadInput, match="does not exist"):
        load_plan(tmp_path / "nope.yaml")


def test_plans_for_another_model_or_tp_are_refused_unless_forced():
    p = _plan()
    assert check_fits(p, "abc", "tiny (2 layers)", 2, force=False) == []
    with pytest.raises(BadInput, match="not small"):
        check_fits(p, "zzz", "small (2 layers)", 2, force=False)
    with pytest.raises(BadInput, match="tp 2, not tp 4.*--force"):
        check_fits(p, "abc", "tiny (2 layers)", 4, force=False)
    warnings = check_fits(p, "zzz", "small (2 layers)", 4, force=True)
    assert len(warnings) == 2 and all(w.startswith("warning:") for w in warnings)


def test_yaml_is_the_documented_schema():
    text = plan_to_yaml(_plan())
    assert text.startswith("isotune_plan: 1\nmodel:")
    for key in ("min_tokens", "max_tokens", "chunks", "ratios", "plan_ms", "baseline_ms", "align:", "topology:"):
        assert key in text


def test_committed_plans_and_profiles_still_load():
    """Files written by earlier versions (the samples under profiles/) keep loading."""
    from conftest import ROOT

    from isotune.core.profile import load_profile

    profiles = sorted((ROOT / "profiles").glob("*-cpu-gloo-*.yaml"))
    plans = sorted((ROOT / "profiles" / "samples").rglob("plan-*.yaml"))
    assert len(profiles) >= 3 and len(plans) >= 4
    for path in profiles:
        assert load_profile(path).fit.ms_per_mb > 0
    for path in plans:
        plan = load_plan(path)
        assert plan.buckets and lookup(plan, plan.buckets[-1].max_tokens)[0] is plan.buckets[-1]


def test_a_plan_for_another_dtype_backend_or_device_is_refused():
    p = Plan(
        model={"name": "tiny", "fingerprint": "abc", "layers": 2},
        topology={"tp": 2, "backend": "gloo", "device": "cpu (x86_64)", "interconnect": "loopback", "dtype": "float32"},
        software={},
        align=16,
        buckets=[Bucket(min_tokens=1, max_tokens=512, chunks=1, ratios=[1.0], plan_ms=1, baseline_ms=1)],
    )
    same = {"backend": "gloo", "device": "cpu (x86_64)", "interconnect": "loopback", "dtype": "float32"}
    assert check_fits(p, "abc", "tiny (2 layers)", 2, force=False, setting=same) == []
    gpu = {"backend": "nccl", "device": "NVIDIA H100 80GB HBM3", "interconnect": "nvlink", "dtype": "bfloat16"}
    with pytest.raises(BadInput) as e:
        check_fits(p, "abc", "tiny (2 layers)", 2, force=False, setting=gpu)
    for words in ("dtype float32, not bfloat16", "backend gloo, not nccl", "interconnect loopback, not nvlink"):
        assert words in str(e.value)
    assert len(check_fits(p, "abc", "tiny (2 layers)", 2, force=True, setting=gpu)) == 4  # warned, not refused
    # compiled steps and NCCL's knobs change what a split can hide: a plan records and checks them
    p.topology |= {"compile": False, "comm": {"high_priority_stream": True, "env": {"NCCL_MAX_NCHANNELS": "8"}}}
    now = gpu | {"backend": "gloo", "dtype": "float32", "device": "cpu (x86_64)", "interconnect": "loopback"}
    now |= {"compile": True, "comm": {"high_priority_stream": True, "env": {}}}
    with pytest.raises(BadInput) as e:
        check_fits(p, "abc", "tiny (2 layers)", 2, force=False, setting=now)
    assert "compiled steps off, not on" in str(e.value)
    assert "comm NCCL_MAX_NCHANNELS=8, not NCCL defaults" in str(e.value)
    # an interconnect nvidia-smi could not read says nothing either way: not a mismatch
    p.topology |= {"compile": True, "comm": now["comm"], "interconnect": "nvlink"}
    assert check_fits(p, "abc", "tiny (2 layers)", 2, force=False, setting=now | {"interconnect": "unknown"}) == []
