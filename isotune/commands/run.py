"""`isotune run`, the runtime: text (or token ids, or a seeded random prompt) in, text out.

`prepare_run` checks and tokenizes everything in the launching process, before any rank
starts, so bad input is one line and exit 2; each prompt becomes a `Job` that carries its own
split (the plan's bucket for its length). The ranks then load the model once and run the jobs
in turn (`commands.run_worker`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from isotune.commands.comm import parse_cap, plan_ctas, set_ctas
from isotune.core.chunking import PLAN_OR_SPLIT, chunk_bounds, parse_ratios, resolve_align
from isotune.core.errors import BadInput
from isotune.core.files import check_writable
from isotune.core.plan import load_plan, lookup, plan_for
from isotune.core.prompts import Prompt, text_prompts
from isotune.core.spec import ModelSpec, check_seq_lens
from isotune.core.text import has_tokenizer, load_text
from isotune.engine import dist, launcher
from isotune.engine.dist import backend_for
from isotune.engine.model import random_prompt
from isotune.engine.target import fit_target, resolve_target
from isotune.engine.topology import run_setting

NEW_TOKENS = {"text": 128, "ids": 8}  # --max-new-tokens by default: an answer for text, a check for ids
REPEATS = 10  # timed prefills per variant by default, where timing is what the run is for


@dataclass(kw_only=True)
class Job:
    ids: list[int]
    ratios: list[float]
    bucket: str | None  # "min..max" of the plan bucket used, or None without a plan
    text: str | None = None
    where: str = "prompt"
    note: str | None = None  # why the split differs from the one asked for


@dataclass(kw_only=True)
class RunConfig:
    model: str
    layers: int | None
    tp: int
    jobs: list[Job]
    align: int
    text: bool  # decode the output with the checkpoint's tokenizer
    jsonl: bool  # --prompts: one JSON line per prompt, a summary table per bucket
    trace_path: str | None
    timeline_path: str | None
    max_new_tokens: int
    dtype: str
    compare: bool
    json_path: str | None
    device: str
    threads: int
    seed: int
    compile: bool = False  # --compile: fused elementwise steps (engine.fused)
    graphs: bool = False  # --cuda-graphs: decode steps replayed as one CUDA graph (engine.graphed)
    warmup: int
    repeats: int  # 0: time only the request itself (time to first token, decode speed)


def run(*, json_out: str | None, plan: str | None, trace: str | None, timeline: str | None, **opts) -> int:
    """The `run` command (its flags as keywords): validate, then launch the ranks; the exit code."""
    cfg = prepare_run(json_path=json_out, plan_path=plan, trace_path=trace, timeline_path=timeline, **opts)
    from isotune.commands.run_worker import run_worker

    return dist.launch(run_worker, cfg.tp, cfg, device=cfg.device, threads=cfg.threads)


def prepare_run(
    *,
    model: str,
    layers: int | None,
    tp: int | None,
    chunks: int | None = None,
    ratios: str | None = None,
    align: int | None = None,
    plan_path: str | None = None,
    force: bool = False,
    seq_len: int | None = None,
    prompt_ids: str | None = None,
    prompt: str | None = None,
    prompt_file: str | None = None,
    prompts: str | None = None,
    chat: bool = False,
    chat_template_kwargs: str | None = None,
    max_new_tokens: int | None = None,
    dtype: str = "auto",
    compare: bool = False,
    json_path: str | None = None,
    device: str = "auto",
    threads: int = 1,
    seed: int = 0,
    compile: bool = False,
    comm_ctas: str | None = None,
    cuda_graphs: bool = False,
    warmup: int = 1,
    repeats: int | None = None,
    trace_path: str | None = None,
    timeline_path: str | None = None,
) -> RunConfig:
    spec, tp, device = resolve_target(model, layers, tp, device)
    cap = parse_cap(comm_ctas)
    if plan_path and backend_for(tp, device) == "nccl":  # a plan searched with a cap brings it
        cap = plan_ctas(load_plan(plan_path).topology, cap)
    set_ctas(cap, tp, device)
    if cuda_graphs and device != "cuda":
        raise BadInput("--cuda-graphs replays decode steps as a CUDA graph: it needs --device cuda")
    if plan_path and (chunks is not None or ratios is not None):
        raise BadInput(PLAN_OR_SPLIT)
    sources = {"--seq-len": seq_len, "--prompt-ids": prompt_ids, "--prompt": prompt, "--prompt-file": prompt_file}
    given = [flag for flag, v in (sources | {"--prompts": prompts}).items() if v is not None]
    if len(given) > 1:
        raise BadInput(f"give one prompt source, not {' and '.join(given)}")
    text = bool(given) and given[0] in ("--prompt", "--prompt-file", "--prompts")
    if chat and not text:
        raise BadInput("--chat wraps a text prompt in the chat template: give --prompt, --prompt-file or --prompts")
    if chat_template_kwargs is not None and not (chat or prompts):
        raise BadInput(
            "--chat-template-kwargs sets chat template variables: add --chat (or give --prompts with messages)"
        )
    if (trace_path or timeline_path) and prompts:
        raise BadInput("--trace and --timeline draw one prompt: use --prompt or --prompt-file with them")
    if text and not has_tokenizer(spec.checkpoint):
        what = f"preset {spec.name}" if spec.checkpoint is None else spec.checkpoint
        raise BadInput(
            f"{given[0]} needs a tokenizer and {what} has no tokenizer.json: use --seq-len N or --prompt-ids FILE, "
            "or a checkpoint folder with its tokenizer"
        )
    if text:
        found = text_prompts(load_text(spec.checkpoint), prompt, prompt_file, prompts, chat, chat_template_kwargs)
    elif prompt_ids:
        found = [Prompt(ids=read_prompt_ids(prompt_ids, spec.vocab), where=f"--prompt-ids {prompt_ids}")]
    else:
        found = [Prompt(ids=random_prompt(512 if seq_len is None else seq_len, spec.vocab, seed), where="--seq-len")]
    if max_new_tokens is None:
        max_new_tokens = NEW_TOKENS["text" if text else "ids"]
    if max_new_tokens < 0:
        raise BadInput(f"--max-new-tokens {max_new_tokens} must be 0 or more")
    if repeats is None:
        repeats = REPEATS if compare or not text else 0
    if repeats < (1 if compare else 0) or warmup < 0 or threads < 1:
        raise BadInput(
            "--repeats must be at least 1 with --compare (else 0 or more), --warmup 0 or more, --threads 1 or more"
        )
    longest = max(len(p.ids) for p in found)
    check_seq_lens(
        spec, [longest + max_new_tokens], "prompt + new tokens =", "use a shorter prompt or fewer new tokens"
    )
    dtype = fit_target(spec, tp, device, dtype, longest + max_new_tokens)
    setting = run_setting(tp, device, dtype, compile) if plan_path else None
    jobs, align = _jobs(found, spec, tp, device, chunks, ratios, align, plan_path, force, setting)
    for flag, path in (("--json", json_path), ("--trace", trace_path), ("--timeline", timeline_path)):
        if path:
            check_writable(path, flag)
    if timeline_path:
        from isotune.viz.png import pyplot

        pyplot()  # a missing matplotlib is a one-line hint now, not a failure after the run
    return RunConfig(
        model=model,
        layers=layers,
        tp=tp,
        jobs=jobs,
        align=align,
        text=text,
        jsonl=prompts is not None,
        trace_path=trace_path,
        timeline_path=timeline_path,
        max_new_tokens=max_new_tokens,
        dtype=dtype,
        compare=compare,
        json_path=json_path,
        device=device,
        threads=threads,
        seed=seed,
        compile=compile,
        graphs=cuda_graphs,
        warmup=warmup,
        repeats=repeats,
    )


def _jobs(
    found: list[Prompt], spec: ModelSpec, tp: int, device: str, chunks, ratios, align, plan_path, force, setting
) -> tuple[list[Job], int]:
    """Each prompt with its split: the plan's bucket for its length, or --chunks/--ratios; a
    prompt too short for that split runs unsplit, with a note, never an error."""
    lens = sorted({len(p.ids) for p in found})
    if plan_path:
        plan, splits, notes = plan_for(plan_path, spec, tp, lens, force, setting)
        for note in dict.fromkeys(notes):  # the same warning once, not once per prompt
            _say(note)
        align = resolve_align(align, device, plan.align, plan_path)
        jobs = []
        for p in found:
            b, _ = lookup(plan, len(p.ids))
            jobs.append(Job(ids=p.ids, ratios=splits[len(p.ids)], bucket=f"{b.min_tokens}..{b.max_tokens}"))
    else:
        asked = parse_ratios(ratios, 2 if chunks is None else chunks)
        align = resolve_align(align, device)
        jobs = [Job(ids=p.ids, ratios=asked, bucket=None) for p in found]
    for job, p in zip(jobs, found, strict=True):
        job.text, job.where = p.text, p.where
        if not plan_path:
            try:
                chunk_bounds(len(job.ids), job.ratios, align)
            except BadInput:
                job.note = (
                    f"note: {p.where} has {len(job.ids)} tokens, too few for {len(job.ratios)} chunks of at least "
                    f"{align}; running it unsplit"
                )
                job.ratios = [1.0]
                _say(job.note)
    return jobs, align


def _say(line: str) -> None:
    """A note on stderr, once: under a launcher every rank runs this, rank 0 speaks."""
    if launcher.launch_rank() == 0:
        print(line, file=sys.stderr)


def read_prompt_ids(path: str, vocab: int) -> list[int]:
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"--prompt-ids {path} does not exist: give a text file of token ids")
    try:
        ids = [int(t) for t in p.read_text().split()]
    except (ValueError, UnicodeDecodeError):
        raise BadInput(
            f"--prompt-ids {path} holds something other than integers: write whitespace-separated token ids"
        ) from None
    if not ids:
        raise BadInput(f"--prompt-ids {path} is empty: write at least one token id")
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise BadInput(f"--prompt-ids {path}: token id {bad[0]} is outside the vocabulary 0..{vocab - 1}")
    return ids
