"""Why a group of spawned ranks ended, in the one line the command prints: the root cause, not
its echoes (a dead rank's peers fail on their sockets; that is not news)."""

from __future__ import annotations

import signal

from isotune.core.errors import EXIT_BAD_INPUT, EXIT_FAILURE
from isotune.engine.memory import FIX as MEMORY_FIX


def why_ranks_ended(codes: list[int | None], messages: list[tuple[int, str]], oom_struck: bool) -> tuple[str, int]:
    """(the error line, the exit code) for ranks that did not all exit 0. `codes` are their exit
    codes (negative: killed by that signal), `messages` the (rank, one-line error) they
    reported, `oom_struck` whether the kernel's out-of-memory killer fired during the run."""
    killed = [(r, c) for r, c in enumerate(codes) if c is not None and c < 0]
    if killed:  # a rank that died by a signal is the cause; its peers' socket errors are not
        rank, code = killed[0]
        name = signal.Signals(-code).name
        if name == "SIGKILL" and oom_struck:
            return (
                f"error: rank {rank} was killed by the kernel's out-of-memory killer (SIGKILL) and the other ranks "
                f"were stopped; the ranks need more memory than this machine gives them: {MEMORY_FIX}",
                EXIT_FAILURE,
            )
        return f"error: rank {rank} was killed by {name}; the other ranks were stopped", EXIT_FAILURE
    bad_input = [m for r, m in messages if codes[r] == EXIT_BAD_INPUT]
    if bad_input:
        return f"error: {bad_input[0]}", EXIT_BAD_INPUT
    rank, code = next((r, c) for r, c in enumerate(codes) if c)
    if messages:
        rank, message = messages[0]
        return f"error: rank {rank} failed: {message}", EXIT_FAILURE
    return f"error: rank {rank} exited with code {code}; the other ranks were stopped", EXIT_FAILURE


# What gloo and NCCL say when the rank at the other end of a collective is gone
PEER_CLOSED = (
    "Connection reset by peer",
    "Connection closed by peer",
    "Socket closed",
    "Broken pipe",
    "remote process exited or there was a network error",
)
PEER_CLOSED_LINE = "a peer rank stopped during a collective (its connection closed): its own output says why"


def peer_closed(e: BaseException) -> bool:
    """Whether `e` is a collective failing because a peer rank died (under a launcher that does
    not watch its ranks, each survivor says so itself, in one line, instead of gloo's message)."""
    return isinstance(e, RuntimeError) and any(s in str(e) for s in PEER_CLOSED)
