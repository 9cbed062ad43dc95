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
