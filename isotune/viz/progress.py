"""Progress for long work: rich's live bar on a terminal; on a pipe or a file, one plain line per
task as it finishes. A live bar cannot redraw there, so rich prints it once, when it stops:
after every line said while it ran, which is the order a reader of a log needs reversed."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import Progress, ProgressColumn


def progress_bar(*columns: ProgressColumn, console: Console, transient: bool = False):
    """A rich Progress on a terminal, else a LineProgress: the same calls either way."""
    if console.is_terminal:
        return Progress(*columns, console=console, transient=transient)
    return LineProgress(console)


class LineProgress:
    """The calls of rich.progress.Progress that isotune makes, printing one line per stopped
    task: its last description, its count and its time."""

    def __init__(self, console: Console):
        self.console = console
        self._tasks: dict[int, dict] = {}

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, **_) -> int:
        task = len(self._tasks)
        self._tasks[task] = {"description": description, "total": total, "completed": 0, "start": time.monotonic()}
        return task

    def update(self, task: int, *, completed=None, total=None, advance=None, description=None, **_) -> None:
        t = self._tasks[task]
        if completed is not None:
            t["completed"] = completed
        if advance is not None:
            t["completed"] += advance
        if total is not None:
            t["total"] = total
        if description is not None:
            t["description"] = description

    def stop_task(self, task: int) -> None:
        t = self._tasks[task]
        done = f"{t['completed']:g}" + (f"/{t['total']:g}" if t["total"] is not None else "")
        self.console.print(f"{t['description']}: {done} in {time.monotonic() - t['start']:.0f} s", highlight=False)
