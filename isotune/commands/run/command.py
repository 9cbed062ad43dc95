"""`isotune run`, the runtime: text (or token ids, or a seeded random prompt) in, text out.

`prepare_run` checks and tokenizes everything in the launching process, before any rank
starts, so bad input is one line and exit 2; each prompt becomes a `Request` that carries its
own split (the plan's bucket for its length). The ranks then load the model once and run the
requests in turn (run.job).
"""

from __future__ import annotations

from pathlib import Path

from isotune.commands.prologue import Prepared, prepare
from isotune.commands.run.batch import Batching
from isotune.commands.run.job import Request, RunJob
from isotune.core.chunking import PLAN_OR_SPLIT, asked_split, chunk_bounds
from isotune.core.errors import BadInput
from isotune.core.files import check_writable
from isotune.core.plan import lookup
from isotune.core.prompts import Prompt, text_prompts
from isotune.core.target import Target, TargetFlags
from isotune.core.text import has_tokenizer, load_text
from isotune.engine.launch import launch
from isotune.engine.launcher import say
from isotune.engine.model import random_prompt
from isotune.engine.target import resolve_target

NEW_TOKENS = {"text": 128, "ids": 8}  # --max-new-tokens by default: an answer for text, a check for ids
NO_SPLIT = (
    "note: no --plan or --chunks: running unsplit; to split, search a plan (isotune search ... -o plan.yaml) "
    "and give --plan, or ask for one with --chunks 2"
)
REPEATS = 10  # timed prefills per variant by default, where timing is what the run is for


def run(*, json_out: str | None, plan: str | None, trace: str | None, timeline: str | None, **opts) -> int:
    """The `run` command (its flags as keywords): validate, then launch the ranks; the exit code."""
    job, target = prepare_run(json_path=json_out, plan_path=plan, trace_path=trace, timeline_path=timeline, **opts)
    return launch(job, target)


def prepare_run(
    *,
    target: TargetFlags,
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
    compare: bool = False,
    json_path: str | None = None,
    cuda_graphs: bool = False,
    warmup: int = 1,
    repeats: int | None = None,
    trace_path: str | None = None,
    timeline_path: str | None = None,
    max_seqs: int = 1,
    max_batch_tokens: int = 4096,
) -> tuple[RunJob, Target]:
    """The checked job and the fitted target it runs on; BadInput names the first bad flag."""
    _check_batching(max_seqs, max_batch_tokens, prompts, compare, repeats, cuda_graphs, max_new_tokens)
    resolved = resolve_target(target)
    spec = resolved.spec
    if cuda_graphs and resolved.device != "cuda":
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
    if text and resolved.stand_in:
        raise BadInput(
            f"--ranks 1 computes rank 0's partial sums of tp {resolved.tp} alone: its text would be noise; "
            "time it with --seq-len N, or run every rank for text"
        )
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
        found = [
            Prompt(ids=random_prompt(512 if seq_len is None else seq_len, spec.vocab, resolved.seed), where="--seq-len")
        ]
    if max_new_tokens is None:
        max_new_tokens = NEW_TOKENS["text" if text else "ids"]
    if max_new_tokens < 0:
        raise BadInput(f"--max-new-tokens {max_new_tokens} must be 0 or more")
    if repeats is None:
        repeats = REPEATS if compare or not text else 0
    if repeats < (1 if compare else 0) or warmup < 0:
        raise BadInput("--repeats must be at least 1 with --compare (else 0 or more), --warmup 0 or more")
    longest = max(len(p.ids) for p in found)
    slots = min(max_seqs, len(found))  # a cache slot per sequence running at once
    prep = prepare(
        resolved,
        [len(p.ids) for p in found],
        max_len=longest + max_new_tokens,
        decode=max_new_tokens > 0,
        too_long=("prompt + new tokens =", "use a shorter prompt or fewer new tokens"),
        plan_paths=[plan_path] if plan_path else [],
        force=force,
        align=align,
        plan_ctas=True,
        slots=slots,
        prefill_tokens=min(max_batch_tokens, sum(len(p.ids) for p in found)) if max_seqs > 1 else None,
    )
    requests = _requests(found, prep, chunks, ratios)
    batching = None
    if max_seqs > 1:
        asked = asked_split(chunks, ratios) if not prep.plans and (chunks is not None or ratios is not None) else [1.0]
        plan = prep.plans[0].plan if prep.plans else None
        batching = Batching(max_seqs=slots, max_batch_tokens=max_batch_tokens, plan=plan, ratios=asked)
        if plan is not None:  # which kind of plan a pack's split comes from
            size = plan.study.get("pack")
            kind = f"packs of {size}-token prompts" if size else "single prompts"
            say(f"note: {plan_path}: searched on {kind}; each pack takes the bucket of its total tokens")
    for flag, path in (("--json", json_path), ("--trace", trace_path), ("--timeline", timeline_path)):
        if path:
            check_writable(path, flag)
    if timeline_path:
        from isotune.viz.png import pyplot

        pyplot()  # a missing matplotlib is a one-line hint now, not a failure after the run
    if not prep.plans and chunks is None and ratios is None:  # said once every flag has passed
        say(NO_SPLIT)
    for note in dict.fromkeys(r.note for r in requests if r.note and batching is None):  # packs split, not prompts
        say(note)
    job = RunJob(
        requests=requests,
        align=prep.align,
        text=text,
        jsonl=prompts is not None,
        trace_path=trace_path,
        timeline_path=timeline_path,
        max_new_tokens=max_new_tokens,
        compare=compare,
        json_path=json_path,
        graphs=cuda_graphs,
        warmup=warmup,
        repeats=0 if batching else repeats,
        batching=batching,
    )
    return job, prep.target


def _check_batching(
    max_seqs: int,
    max_batch_tokens: int,
    prompts: str | None,
    compare: bool,
    repeats: int | None,
    cuda_graphs: bool,
    max_new_tokens: int | None,
) -> None:
    """--max-seqs and --max-batch-tokens, and what batching cannot be combined with."""
    if max_seqs < 1:
        raise BadInput(f"--max-seqs {max_seqs}: use 1 (one prompt after another) or more (that many at once)")
    if max_batch_tokens < 1:
        raise BadInput(f"--max-batch-tokens {max_batch_tokens}: use a positive number of prompt tokens per pack")
    if max_seqs == 1:
        return
    if prompts is None:
        raise BadInput("--max-seqs runs many prompts together: give them with --prompts FILE")
    clash = [f for f, on in (("--compare", compare), ("--repeats", repeats is not None),
                             ("--cuda-graphs", cuda_graphs)) if on]  # fmt: skip
    if clash:
        raise BadInput(f"{clash[0]} times one prompt alone, and --max-seqs {max_seqs} runs them together: drop one")
    if max_new_tokens == 0:
        raise BadInput("--max-seqs batches decoding: give --max-new-tokens 1 or more")


def _requests(found: list[Prompt], prep: Prepared, chunks: int | None, ratios: str | None) -> list[Request]:
    """Each prompt with its split: the plan's bucket for its length, or --chunks/--ratios; a
    prompt too short for that split runs unsplit, with a note, never an error."""
    if prep.plans:
        given = prep.plans[0]
        requests = []
        for p in found:
            b, _ = lookup(given.plan, len(p.ids))
            requests.append(Request(ids=p.ids, ratios=given.splits[len(p.ids)], bucket=b.span))
    elif chunks is None and ratios is None:
        # no split unless asked: a short chat prompt split in two is slower, and only a plan knows where it pays
        requests = [Request(ids=p.ids, ratios=[1.0], bucket=None) for p in found]
    else:
        requests = [Request(ids=p.ids, ratios=asked_split(chunks, ratios), bucket=None) for p in found]
    for req, p in zip(requests, found, strict=True):
        req.text, req.where = p.text, p.where
        if not prep.plans:
            try:
                chunk_bounds(len(req.ids), req.ratios, prep.align)
            except BadInput:
                req.note = (
                    f"note: {p.where} has {len(req.ids)} tokens, too few for {len(req.ratios)} chunks of at least "
                    f"{prep.align}; running it unsplit"
                )
                req.ratios = [1.0]
    return requests


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
