"""The package's shape is a rule, not a habit: imports only go down the layers, no module imports
itself back through others (lazy and TYPE_CHECKING imports count), core never imports torch,
only cli.py imports typer, every module says its one job."""

import ast
from pathlib import Path

import pytest
from conftest import ROOT

PKG = ROOT / "isotune"
# layer -> the layers its modules may import (their own included); viz and engine sit side by
# side above core and never import each other
ALLOWED = {
    "core": {"core"},
    "engine": {"engine", "core"},
    "viz": {"viz", "core"},
    "tune": {"tune", "engine", "viz", "core"},
    "commands": {"commands", "tune", "engine", "viz", "core"},
    "cli": {"cli", "commands", "tune", "engine", "viz", "core"},
}
MAX_LINES = 600  # a module holds one concept; past this, it likely holds two


def _modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py"))


def _layer(path: Path) -> str | None:
    rel = path.relative_to(PKG)
    if rel.parts in (("cli.py",), ("__main__.py",)):
        return "cli"
    if rel.parts == ("__init__.py",):
        return None  # the package root: the version string, importable by every layer
    return rel.parts[0]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in the file, function-level ones included."""
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: use absolute imports"
            base = node.module or ""
            # `from isotune.engine import dist` imports isotune.engine.dist, `from isotune import
            # tune` isotune.tune: the names may be modules, so they count
            out += [(node.lineno, f"{base}.{a.name}" if base.count(".") <= 1 else base) for a in node.names]
    return out


def _target_layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "isotune" or len(parts) == 1 or parts[1] == "__version__":
        return None
    return "cli" if parts[1] in ("cli", "__main__") else parts[1]


def test_every_module_is_in_a_layer():
    layers = {_layer(p) for p in _modules()} - {None}
    assert layers == set(ALLOWED), layers


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_imports_only_go_down(path):
    layer = _layer(path)
    for line, module in _imports(path):
        assert module.split(".")[0] != "typer" or layer == "cli", f"{path}:{line}: only the cli layer imports typer"
        target = _target_layer(module)
        if layer is None or target is None:
            continue
        assert target in ALLOWED[layer], f"{path.relative_to(ROOT)}:{line}: {layer} may not import {module}"
    if layer == "core":
        bad = [(line, m) for line, m in _imports(path) if m.split(".")[0] in ("torch", "typer", "optuna", "rich")]
        assert not bad, f"{path.relative_to(ROOT)}: core imports {bad}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_each_module_says_its_job_and_stays_small(path):
    tree = ast.parse(path.read_text())
    assert ast.get_docstring(tree), f"{path.relative_to(ROOT)} has no module docstring"
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(ROOT)} has {n} lines: split it along its jobs"


def _module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _graph(paths: list[Path], root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the isotune modules it imports (a name imported from a package that is a module
    counts as that module; from a module, the module itself)."""
    names = {_module_name(p, root) for p in paths}
    graph = {}
    for p in paths:
        me, edges = _module_name(p, root), set()
        for _, module in _imports(p):
            while module and module not in names:  # `from isotune.engine.dist import DistInfo` -> the module
                module = module.rpartition(".")[0]
            if module and module != me and module != "isotune":
                edges.add(module)
        graph[me] = edges
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert _circles(_graph(_modules())) == []


def test_the_circle_rule_sees_lazy_and_type_checking_imports(tmp_path):
    pkg = tmp_path / "isotune"
    pkg.mkdir()
    (pkg / "a.py").write_text(
        '"""a"""\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from isotune.b import B\n'
    )
    (pkg / "b.py").write_text('"""b"""\ndef f():\n    from isotune import a\n')
    (pkg / "c.py").write_text('"""c"""\nfrom isotune.a import x\n')
    assert _circles(_graph(sorted(pkg.glob("*.py")), tmp_path)) == [["isotune.a", "isotune.b"]]


def test_the_rule_catches_an_upward_import(tmp_path):
    """The walk above must see lazy, aliased and from-package imports, or it proves nothing."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        '"""x"""\ndef f():\n    from isotune.engine import dist as d\n    import isotune.tune.search\n'
        "    from isotune import commands\n    from isotune import __version__\n"
    )
    found = {_target_layer(m) for _, m in _imports(bad)}
    assert found == {"engine", "tune", "commands", None}
