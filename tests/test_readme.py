"""The README's and docs/'s links and the files they name exist: samples get regenerated and
renamed, and a dead link is what a new user clicks first."""

import re

import pytest
from conftest import ROOT

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page) -> set[str]:
    """The anchors a page's headings make (outside code blocks, where '#' starts a comment)."""
    prose = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", prose, flags=re.M)}


def _links(page) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", page.read_text())


def test_the_pages_are_there():
    assert {"commands.md", "design.md", "gpu.md", "results.md"} <= {p.name for p in DOCS}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    """A link is relative to its page's own folder; an anchor names a heading of the page it
    points into (its own page for a bare '#anchor')."""
    dead = []
    for link in _links(page):
        if link.startswith(("http://", "https://")):
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            dead.append(link)
        elif anchor and (target.suffix != ".md" or anchor not in _anchors(target)):
            dead.append(link)
    assert dead == [], f"{page.name}: dead links {dead}"


def test_the_readme_links_to_every_doc():
    linked = {(README.parent / x.partition("#")[0]).resolve() for x in _links(README)}
    assert sorted(p.name for p in DOCS if p.resolve() not in linked) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_and_script_it_names_exists(page):
    """Paths in backticks (`profiles/samples/...`, `benchmarks/hero.sh`) and scripts run with bash
    are named from the repository's root."""
    text = page.read_text()
    named = set(re.findall(r"`((?:profiles|benchmarks|examples|tests|docs|isotune)/[\w./\-]+)`", text))
    named |= set(re.findall(r"bash ((?:benchmarks)/[\w./\-]+)", text))
    assert sorted(p for p in named if not (ROOT / p.rstrip(".")).exists()) == []


def test_the_pages_name_enough_files_for_the_check_to_mean_something():
    named = set()
    for page in PAGES:
        named |= set(re.findall(r"`((?:profiles|benchmarks|examples|tests)/[\w./\-]+)`", page.read_text()))
    assert len(named) >= 20


def test_the_readme_test_command_is_what_ci_runs():
    """CI runs exactly the README's test command: the bash block after 'Run the tests:'."""
    block = README.read_text().split("Run the tests:", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    assert block.strip() == "python3 -m pytest -q"


def test_the_readme_stays_short():
    assert len(README.read_text().splitlines()) <= 300


def test_the_layout_lists_every_module_and_nothing_else():
    """The Layout block of docs/design.md names each module once under its folder
    ('isotune/engine/' at the left edge), a package by its folder name ('run/'), with its modules
    on its line and on the lines indented under it; a module added, moved or removed shows here."""
    block = (ROOT / "docs" / "design.md").read_text().split("## Layout", 1)[1].split("```", 2)[1]
    named, folder, pkg, pkg_indent = set(), None, None, 0
    for line in block.splitlines():
        indent, first = len(line) - len(line.lstrip()), (line.split() or [""])[0]
        if indent == 0:
            folder, pkg = (first.rstrip("/"), None) if first.startswith("isotune") else (None, None)
            continue
        if folder is None:
            continue
        if first.endswith("/"):
            pkg, pkg_indent = f"{folder}/{first.rstrip('/')}", indent
            named.add(f"{pkg}/__init__.py")
        elif not (pkg and indent > pkg_indent):
            pkg = None
        named |= {f"{pkg or folder}/{m}" for m in re.findall(r"\b\w+\.py\b", line)}
    named |= {f"isotune/{layer}/__init__.py" for layer in ("commands", "core", "engine", "tune", "viz")}
    tree = {str(p.relative_to(ROOT)) for p in (ROOT / "isotune").rglob("*.py")}
    assert sorted(tree - named) == [] and sorted(named - tree) == []
