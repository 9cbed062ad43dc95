"""Text in, text out. Everything that needs only a tokenizer and a chat template runs on a small
checkpoint the tests make themselves (tests/fixtures/tiny_text.py: no download, no transformers).
A real trained model (SmolLM2-135M-Instruct, tests/fixtures/smollm2.py) answers where the answer
is the point: `isotune run --prompt` prints exactly what transformers' greedy `generate` writes,
through a 3-way ISO split at tp 3 (9 heads over 3 KV heads), plain and through the chat
template; and `--prompts` answers each prompt as transformers does, each in its plan bucket."""

import json

import pytest
import torch
from fixtures.smollm2 import Unavailable, smollm2_folder
from fixtures.tiny_text import tiny_text_checkpoint

from isotune.cli import main
from isotune.core.plan import Bucket, Plan, save_plan
from isotune.core.spec import load_spec
from isotune.core.target import Target
from isotune.engine.topology import run_setting

# a few hundred tokens of ordinary prose
PROMPT = (
    "The river town of Alder Creek was founded in 1852 by a group of families who had travelled west "
    "in search of farmland. In the first years they built a mill, a school and a small church, and the "
    "mill soon became the heart of the town: farmers brought their grain from miles around, and while "
    "they waited for it to be ground they traded news, livestock and seed. By 1870 a railway line "
    "reached the valley, and with it came a hotel, a bank and a newspaper, the Alder Creek Courier, "
    "whose first editor wrote that the town would one day rival the great cities of the east. That did "
    "not happen. A flood in 1889 destroyed the mill and half of the houses along the river, and many "
    "families moved away to the new towns on the plains. Those who stayed rebuilt on higher ground, "
    "planted orchards instead of wheat, and within twenty years the valley was known for its apples, "
    "which were shipped by rail as far as Chicago. Today the old mill stone stands in the town square, "
    "and every autumn the town holds a harvest fair. In the years after the flood, the people of Alder Creek"
)
QUESTION = " What happened to the town in 1889, and what did the people who stayed do?"
NEW = 24


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory):
    """A tokenizer, a ChatML template and random weights in a checkpoint folder, made here."""
    return tiny_text_checkpoint(tmp_path_factory.mktemp("tiny-text"))


@pytest.fixture(scope="module")
def smollm2():
    try:
        return smollm2_folder()
    except Unavailable as e:
        pytest.skip(f"SmolLM2 fixture unavailable: {e}")


@pytest.fixture(scope="module")
def hf(smollm2):
    """transformers' tokenizer and float32 model of the SmolLM2 folder: the reference."""
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(smollm2)
    model = transformers.AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32).eval()
    return tok, model


def _hf_ids(tok, entry: dict) -> list[int]:
    """The prompt ids transformers makes of a --prompts entry (a chat turn opened for the answer)."""
    if "messages" in entry:
        return list(
            tok.apply_chat_template(entry["messages"], add_generation_prompt=True, return_dict=True)["input_ids"]
        )
    return tok(entry["prompt"]).input_ids


def _greedy(hf, ids: list[int], new: int) -> str:
    """transformers' greedy continuation of `ids`, decoded as isotune decodes it."""
    tok, model = hf
    with torch.no_grad():
        gen = model.generate(torch.tensor([ids]), max_new_tokens=new, do_sample=False)
    return tok.decode(gen[0, len(ids) :], skip_special_tokens=True)


@pytest.fixture(scope="module")
def reference(hf):
    """transformers' greedy continuation of PROMPT, plain and as a chat turn: (prompt tokens, text)."""
    out = {}
    for name, entry in (
        ("plain", {"prompt": PROMPT}),
        ("chat", {"messages": [{"role": "user", "content": PROMPT + QUESTION}]}),
    ):
        ids = _hf_ids(hf[0], entry)
        out[name] = (len(ids), _greedy(hf, ids, NEW))
    return out


def _run(capsys, *args: str) -> tuple[int, str, str]:
    """`isotune run ARGS` in this process (at tp 1 its one rank runs here): (exit code, stdout,
    stderr). The rank sets torch's thread count for itself; the tests after this one get theirs back."""
    threads = torch.get_num_threads()
    try:
        code = main(["run", *args])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["plain", "chat"])
def test_run_prints_exactly_transformers_text(smollm2, reference, mode, cli, tmp_path):
    n_prompt, text = reference[mode]
    assert 200 <= n_prompt <= 400, n_prompt  # "a few hundred tokens"
    assert len(text.split()) >= 8, text  # a real answer to compare, not an immediate end of sequence
    out = tmp_path / "run.json"
    args = ["run", "--model", str(smollm2), "--tp", "3", "--chunks", "3", "--ratios", "0.5,0.3,0.2"]
    args += [
        "--prompt",
        PROMPT + (QUESTION if mode == "chat" else ""),
        "--dtype",
        "float32",
        "--max-new-tokens",
        str(NEW),
        "--json",
        str(out),
    ]
    r = cli(*args, *(["--chat"] if mode == "chat" else []))
    assert r.returncode == 0, r.stderr
    assert r.stdout == text + "\n"  # the streamed answer, nothing else on stdout
    res = json.loads(out.read_text())
    assert res["generated_text"] == text
    assert res["prompt_tokens"] == n_prompt and len(res["chunk_tokens"]) == 3
    assert "time to first token" in r.stderr and "decode tokens/s" in r.stderr


@pytest.mark.slow
def test_prompts_answer_as_transformers_does_each_in_its_bucket(smollm2, hf, cli, tmp_path, capsys):
    """--prompts at tp 3 with a plan: one model load, each prompt split as its bucket says (one
    unsplit, one in 2 chunks, a chat one in 3), and each answer exactly transformers' greedy text
    for that prompt."""
    spec = load_spec(str(smollm2))
    buckets = [  # 1..64 unsplit, 65..160 two chunks, 161..1024 three
        Bucket(min_tokens=1, max_tokens=64, chunks=1, ratios=[1.0], plan_ms=1, baseline_ms=1),
        Bucket(min_tokens=65, max_tokens=160, chunks=2, ratios=[0.5, 0.5], plan_ms=1, baseline_ms=1),
        Bucket(min_tokens=161, max_tokens=1024, chunks=3, ratios=[0.4, 0.3, 0.3], plan_ms=1, baseline_ms=1),
    ]
    plan = Plan(
        model={"name": spec.name, "fingerprint": spec.fingerprint(), "layers": spec.layers},
        topology={"tp": 3, **run_setting(Target(spec=spec, tp=3, device="cpu", dtype="float32", max_len=64))},
        software={},
        align=16,
        buckets=buckets,
    )
    save_plan(plan, tmp_path / "plan.yaml")
    sentences = PROMPT.split(". ")
    lines = [
        {"prompt": "Name three colours."},
        {"prompt": ". ".join(sentences[:4])},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}]},
    ]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out, new = tmp_path / "out.json", 8
    args = [
        "run",
        "--model",
        str(smollm2),
        "--tp",
        "3",
        "--plan",
        str(tmp_path / "plan.yaml"),
        "--prompts",
        str(prompts),
    ]
    r = cli(*args, "--dtype", "float32", "--max-new-tokens", str(new), "--json", str(out))
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]  # stdout: JSON Lines, one per prompt as it ends
    doc = json.loads(out.read_text())  # --json: one document, the same lines and the table's summary
    assert doc["prompts"] == rows and [x["index"] for x in rows] == [0, 1, 2]
    assert [(x["bucket"], x["prompts"]) for x in doc["summary"]] == [("1..64", 1), ("65..160", 1), ("161..1024", 1)]
    assert doc["summary"][0]["ttft_ms"] == rows[0]["ttft_ms"]
    for entry, row in zip(lines, rows, strict=True):
        ids = _hf_ids(hf[0], entry)
        n = row["prompt_tokens"]
        assert n == len(ids), (entry, n, len(ids))
        b = next(b for b in buckets if b.min_tokens <= n <= b.max_tokens)
        assert row["plan_bucket"] == f"{b.min_tokens}..{b.max_tokens}", row
        assert len(row["chunk_tokens"]) == b.chunks and sum(row["chunk_tokens"]) == n
        assert row["generated_text"] == _greedy(hf, ids, new), row
        assert row["generated_text"].strip(), row  # a real answer to compare, not an immediate end
    assert [x["plan_bucket"] for x in rows] == ["1..64", "65..160", "161..1024"]
    assert "means per bucket" in r.stderr and "161..1024" in r.stderr
    # the same plan in bfloat16 (the default for this float32 checkpoint) was not measured for it:
    # refused before any rank starts, so in this process
    assert main([*args, "--max-new-tokens", "1"]) == 2
    err = capsys.readouterr().err
    assert "made for dtype float32, not bfloat16" in err and "--force" in err


@pytest.mark.slow
def test_batched_prompts_answer_each_as_transformers_does_alone(smollm2, hf, cli, tmp_path):
    """--max-seqs 3 at tp 3 with every pack split in 3 (bounds fall inside sequences): packs form
    under the token budget, sequences stop at different steps and waiting prompts take their
    slots mid-run, and each prompt's text is transformers' greedy text for that prompt alone."""
    sentences = PROMPT.split(". ")
    lines = [{"prompt": ". ".join(sentences[:n])} for n in (2, 3, 6, 1, 4)]
    lines[3] = {"messages": [{"role": "user", "content": "Name three colours."}]}
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out, new = tmp_path / "out.json", 8
    r = cli("run", "--model", str(smollm2), "--tp", "3", "--prompts", str(prompts), "--max-seqs", "3",
            "--max-batch-tokens", "300", "--chunks", "3", "--dtype", "float32", "--max-new-tokens", str(new),
            "--json", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = {x["index"]: x for x in map(json.loads, r.stdout.splitlines())}  # in the order they ended
    assert sorted(rows) == [0, 1, 2, 3, 4]
    for i, entry in enumerate(lines):
        ids = _hf_ids(hf[0], entry)
        assert rows[i]["prompt_tokens"] == len(ids)
        assert rows[i]["generated_text"] == _greedy(hf, ids, new), (i, rows[i])
    packs = [rows[i]["pack"] for i in range(5)]
    assert len({json.dumps(p, sort_keys=True) for p in packs}) >= 3  # several packs, some of several prompts
    assert max(p["prompts"] for p in packs) >= 2 and all(
        len(p["chunk_tokens"]) == 3 for p in packs if p["tokens"] >= 48
    )
    assert all(x["queue_ms"] <= x["ttft_ms"] <= x["e2e_ms"] for x in rows.values())
    # a prompt admitted mid-run: after one sequence ended (freeing its slot), while another still ran
    assert any(
        any(z["e2e_ms"] <= x["queue_ms"] for z in rows.values())
        and any(y["queue_ms"] < x["queue_ms"] < y["e2e_ms"] for y in rows.values())
        for x in rows.values()
    ), rows
    doc = json.loads(out.read_text())
    assert doc["summary"]["prompts"] == 5 and doc["summary"]["generated_tokens"] == sum(
        x["generated_tokens"] for x in rows.values()
    )
    assert "up to 3 at once" in " ".join(r.stderr.split())


def test_batched_prompts_generate_what_the_one_at_a_time_path_does(tiny_text, tmp_path, capsys):
    """tp 1, in this process: the same prompts one after another and four at a time (packs split
    in two), the same tokens for each."""
    words = PROMPT.split()
    prompts = _lines(tmp_path, *(json.dumps({"prompt": " ".join(words[: 6 + 9 * i])}) for i in range(6)))
    got = {}
    for seqs in ("1", "4"):
        out = tmp_path / f"{seqs}.json"
        extra = ["--max-seqs", seqs, "--max-batch-tokens", "300", "--chunks", "2"] if seqs != "1" else []
        code, stdout, err = _run(capsys, "--model", str(tiny_text), "--prompts", prompts, "--max-new-tokens", "5",
                                 "--dtype", "float32", *extra, "--json", str(out))  # fmt: skip
        assert code == 0, err
        doc = json.loads(out.read_text())
        got[seqs] = {x["index"]: x["generated_ids"] for x in doc["prompts"]}
    assert got["1"] == got["4"] and len(got["1"]) == 6


def test_short_prompt_runs_unsplit_with_a_note(tiny_text, capsys):
    code, _, err = _run(
        capsys, "--model", str(tiny_text), "--chunks", "4", "--prompt", "Hi there", "--max-new-tokens", "2"
    )
    assert code == 0, err
    assert "too few for 4 chunks" in err and "running it unsplit" in err


def test_without_a_plan_or_chunks_a_prompt_runs_unsplit_and_the_run_says_how_to_split(tiny_text, tmp_path, capsys):
    out = tmp_path / "r.json"
    text = " ".join(["tensor parallel prefill"] * 40)  # long enough for a split, had one been the default
    code, _, err = _run(
        capsys, "--model", str(tiny_text), "--prompt", text, "--max-new-tokens", "1", "--json", str(out)
    )
    assert code == 0, err
    got = json.loads(out.read_text())
    assert got["prompt_tokens"] >= 64 and got["chunk_tokens"] == [got["prompt_tokens"]]
    assert "note: no --plan or --chunks: running unsplit" in err and "--chunks 2" in err
    code, _, err = _run(capsys, "--model", str(tiny_text), "--prompt", text, "--max-new-tokens", "1",
                        "--ratios", "0.5,0.5", "--json", str(out))  # fmt: skip
    assert code == 0 and len(json.loads(out.read_text())["chunk_tokens"]) == 2 and "running unsplit" not in err


def test_auto_dtype_runs_float32_checkpoint_in_bfloat16_and_says_so(tiny_text, tmp_path, capsys):
    out = tmp_path / "r.json"
    code, _, err = _run(
        capsys, "--model", str(tiny_text), "--prompt", "Hello", "--max-new-tokens", "2", "--json", str(out)
    )
    assert code == 0, err
    assert "stored in float32; running it in bfloat16" in err
    assert "tp 1 single on cpu, bfloat16" in " ".join(err.split())  # the table's title names the dtype it ran
    assert json.loads(out.read_text())["prompt_tokens"] >= 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "tiny", "--prompt", "hi"], "has no tokenizer.json"),
        (["--chat", "--seq-len", "64"], "--chat wraps a text prompt"),
        (["--prompt", "a", "--seq-len", "64"], "one prompt source"),
        (["--chat-template-kwargs", "{}", "--seq-len", "64"], "--chat-template-kwargs sets chat template variables"),
    ],
)
def test_text_flags_bad_input(args, message, capsys):
    assert main(["run", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err


def _variant(base, tmp_path, template: str | None):
    """The checkpoint folder (linked, not copied) with another chat template, or none: its
    tokenizer_config.json is rewritten without one, chat_template.jinja holds the new one."""
    d = tmp_path / "variant"
    d.mkdir()
    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        (d / f).symlink_to(base / f)
    config = json.loads((base / "tokenizer_config.json").read_text())
    (d / "tokenizer_config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "chat_template"}))
    if template is not None:
        (d / "chat_template.jinja").write_text(template)
    return str(d)


def _lines(tmp_path, *lines: str) -> str:
    (tmp_path / "p.jsonl").write_text("".join(line + "\n" for line in lines))
    return str(tmp_path / "p.jsonl")


TEXT_CASES = [
    ("prompts missing", lambda m, t: ["--prompts", str(t / "none.jsonl")], "does not exist"),
    ("prompts empty", lambda m, t: ["--prompts", _lines(t, "", "  ")], "is empty"),
    ("prompts not json", lambda m, t: ["--prompts", _lines(t, '{"prompt": "a"}', "{oops")], "line 2 of"),
    ("prompts both keys", lambda m, t: ["--prompts", _lines(t, '{"prompt": "a", "messages": []}')],
     "exactly one of"),
    ("prompts bad role", lambda m, t: ["--prompts", _lines(t, '{"messages": [{"role": "boss", "content": "x"}]}')],
     "message 0 must be"),
    ("prompts empty text", lambda m, t: ["--prompts", _lines(t, '{"prompt": "  "}')], "non-empty text"),
    ("prompt file missing", lambda m, t: ["--prompt-file", str(t / "none.txt")], "does not exist"),
    ("trace with many prompts", lambda m, t: ["--prompts", _lines(t, '{"prompt": "a"}'), "--trace",
     str(t / "t.json")], "draw one prompt"),
    ("chat without a template", lambda m, t: ["--model", _variant(m, t, None), "--chat", "--prompt", "hi"],
     "has no chat template"),
    ("template escapes the sandbox", lambda m, t: ["--model", _variant(m, t, "{{ ''.__class__.__mro__[1]"
     ".__subclasses__() }}"), "--chat", "--prompt", "hi"], "tried something unsafe"),
    ("template refuses", lambda m, t: ["--model", _variant(m, t, "{{ raise_exception('no system role') }}"),
     "--chat", "--prompt", "hi"], "refuses these messages: no system role"),
    ("template kwargs not json", lambda m, t: ["--chat", "--prompt", "hi", "--chat-template-kwargs", "{oops"],
     "--chat-template-kwargs is not JSON"),
    ("template kwargs a list", lambda m, t: ["--chat", "--prompt", "hi", "--chat-template-kwargs", "[1]"],
     "must be a JSON object of template variables"),
    ("template kwargs reserved", lambda m, t: ["--chat", "--prompt", "hi", "--chat-template-kwargs",
     '{"messages": []}'], "messages is set by isotune itself"),
    ("template kwargs shadow a function", lambda m, t: ["--chat", "--prompt", "hi", "--chat-template-kwargs",
     '{"raise_exception": "x"}'], "raise_exception is set by isotune itself"),
    ("template kwargs nested past the limit", lambda m, t: ["--chat", "--prompt", "hi", "--chat-template-kwargs",
     "[" * 100000], "--chat-template-kwargs is not JSON (RecursionError"),
    ("prompts nested past the limit", lambda m, t: ["--prompts", _lines(t, "[" * 100000)],
     "line 1 of"),
    ("flag kwargs with no chat line", lambda m, t: ["--prompts", _lines(t, '{"prompt": "a"}'),
     "--chat-template-kwargs", '{"x": 1}'], 'no line of'),
    ("line kwargs without chat", lambda m, t: ["--prompts", _lines(t, '{"prompt": "a", "chat_template_kwargs": '
     '{"x": 1}}')], '"chat_template_kwargs" is for chat prompts'),
    ("no sequences at once", lambda m, t: ["--prompts", _lines(t, '{"prompt": "a"}'), "--max-seqs", "0"],
     "--max-seqs 0: use 1"),
    ("a negative token budget", lambda m, t: ["--prompts", _lines(t, '{"prompt": "a"}'), "--max-seqs", "2",
     "--max-batch-tokens", "-5"], "--max-batch-tokens -5: use a positive number"),
    ("batching one prompt", lambda m, t: ["--prompt", "hi", "--max-seqs", "2"], "give them with --prompts FILE"),
    ("batching with compare", lambda m, t: ["--prompts", _lines(t, '{"prompt": "a"}'), "--max-seqs", "2",
     "--compare"], "--compare times one prompt alone"),
]  # fmt: skip


@pytest.mark.parametrize("setup,needle", [c[1:] for c in TEXT_CASES], ids=[c[0] for c in TEXT_CASES])
def test_bad_text_input_is_one_line_and_exit_2(tiny_text, tmp_path, capsys, setup, needle):
    args = setup(tiny_text, tmp_path)
    model = [] if "--model" in args else ["--model", str(tiny_text)]
    assert main(["run", *model, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and needle in err, err


THINKING = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)  # the shape of Qwen3's switch: an empty thought when thinking is off


def test_chat_template_kwargs_reach_the_template_and_a_line_overrides_the_flag(tiny_text, tmp_path):
    """--chat-template-kwargs (vLLM's chat_template_kwargs) sets template variables for every
    chat prompt; a --prompts line's own object adds to it, its keys winning."""
    from isotune.core.prompts import text_prompts
    from isotune.core.text import load_text

    codec = load_text(_variant(tiny_text, tmp_path, THINKING))
    off = '{"enable_thinking": false}'
    plain = text_prompts(codec, "hi", None, None, True)[0].ids
    quiet = text_prompts(codec, "hi", None, None, True, off)[0].ids
    assert codec.decode(quiet).endswith("assistant\n<think>\n\n</think>\n\n") and quiet[: len(plain)] == plain
    lines = _lines(
        tmp_path,
        '{"messages": [{"role": "user", "content": "hi"}]}',
        '{"messages": [{"role": "user", "content": "hi"}], "chat_template_kwargs": {"enable_thinking": true}}',
    )
    flag_only, line_wins = (p.ids for p in text_prompts(codec, None, None, lines, False, off))
    assert flag_only == quiet and line_wins == plain
