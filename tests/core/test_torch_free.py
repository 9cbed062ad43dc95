"""core is pure Python: every core module imports where torch cannot be imported at all."""

import os
import pkgutil
import subprocess
import sys

from conftest import ROOT

import isotune.core


def test_core_imports_without_torch(tmp_path):
    poisoned = tmp_path / "torch"
    poisoned.mkdir()
    (poisoned / "__init__.py").write_text('raise ImportError("torch is poisoned in this test")\n')
    names = [m.name for m in pkgutil.iter_modules(isotune.core.__path__, "isotune.core.")]
    assert len(names) >= 10, names
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "try:\n"
        "    import torch\n"
        "except ImportError as e:\n"
        "    print('torch blocked:', e)\n"
        "assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules if sys.modules[m]), 'torch loaded'\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "torch blocked: torch is poisoned" in r.stdout  # the poison really stood in for torch
