"""What the project ships says what it does, not how it was made: no issue or session numbers, no
review requests, no borrowed machines, and no path outside the repository (a reader has only the
repository). Technical uses of the same words stay: `start_new_session=True`, "the host issues
a kernel", docs/design.md."""

import os
import re

from conftest import ROOT

SCANNED = ("README.md", "docs", "benchmarks", "isotune", "tests", "examples")
PATTERNS = [
    re.compile(r"\bissue \d+", re.I),  # "issue 12", not "the host issues a kernel"
    re.compile(r"\bsessions? \d+", re.I),
    re.compile(r"\bthis session\b", re.I),
    re.compile(r"\breview(ed|er)? asked", re.I),
    re.compile(r"\ba review\b", re.I),
    re.compile(r"\blent\b", re.I),
    re.compile(r"\.\./shared", re.I),
    re.compile(r"netlab", re.I),  # an outside testbed: the project's own is benchmarks/netns.py
    re.compile(r"DESIGN\.md"),  # an outside design note; the project's own is docs/design.md
]


def scanned_files(root=ROOT, tops=SCANNED):
    """Every text file under the scanned paths, symlinks not followed (isotune/catalog points at
    profiles/hardware, whose sources cite upstream issues by number), this file left out: it
    spells the patterns."""
    for top in tops:
        path = root / top
        if path.is_file():
            yield path
            continue
        for folder, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                f = os.path.join(folder, name)
                if not os.path.islink(f) and os.path.abspath(f) != os.path.abspath(__file__):
                    yield root / os.path.relpath(f, root)


def violations(files, root=ROOT) -> list[str]:
    found = []
    for f in files:
        try:
            lines = f.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:  # images and other binary files
            continue
        for n, line in enumerate(lines, 1):
            hits = [m.group(0) for p in PATTERNS for m in p.finditer(line)]
            if hits:
                found.append(f"{f.relative_to(root)}:{n}: {', '.join(hits)}")
    return found


def test_nothing_shipped_says_how_it_was_made_or_points_outside_the_repository():
    files = list(scanned_files())
    assert any(f.name == "README.md" for f in files) and any(f.suffix == ".py" for f in files)
    assert violations(files) == []


def test_the_check_finds_each_pattern_and_names_file_and_line(tmp_path):
    bad = [
        "fixed in issue 12",
        "measured in session 3",
        "as this session found",
        "the reviewer asked for it",
        "a review wanted more tests",
        "on a lent GPU",
        "see ../shared/notes",
        "run it under netlab",
        "as DESIGN.md says",
    ]
    good = [
        "the host issues 20 kernels",
        "subprocess.Popen(..., start_new_session=True)",
        "a profiler run",
        "excellent",
        "see docs/design.md",
        "reviewed by nobody",
    ]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("\n".join(good + bad) + "\n")
    found = violations(scanned_files(tmp_path, ("docs",)), tmp_path)
    assert [x.split(": ", 1)[0] for x in found] == [f"docs/page.md:{len(good) + i}" for i in range(1, len(bad) + 1)]
    assert found[0] == "docs/page.md:7: issue 12"
