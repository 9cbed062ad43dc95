"""The README's links and the files it names exist: samples get regenerated and renamed, and a
dead link is what a new user clicks first."""

import re

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_and_anchor_resolves():
    links = re.findall(r"\]\(([^)\s]+)\)", README)
    files = [x for x in links if not x.startswith(("http://", "https://", "#"))]
    assert files and [x for x in files if not (ROOT / x.split("#")[0]).exists()] == []
    headings = {_slug(h) for h in re.findall(r"^#+ (.+)$", README, flags=re.M)}
    anchors = [x[1:] for x in links if x.startswith("#")]
    assert anchors and [a for a in anchors if a not in headings] == []


def test_every_sample_and_script_it_names_exists():
    named = set(re.findall(r"`((?:profiles|benchmarks)/[\w./\-]+)`", README))
    named |= set(re.findall(r"bash ((?:benchmarks)/[\w./\-]+)", README))
    assert len(named) >= 5
    assert sorted(p for p in named if not (ROOT / p.rstrip(".")).exists()) == []


def test_the_layout_lists_every_module_and_nothing_else():
    """The Layout block names each module once under its folder ('isotune/engine/' at the left
    edge), a package by its folder name ('run/'), with its modules on its line and on the lines
    indented under it; a module added, moved or removed shows here."""
    block = README.split("## Layout", 1)[1].split("```", 2)[1]
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
