"""Output files: checked before work starts, written atomically (temp file + rename)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from isotune.core.errors import BadInput


def check_writable(path: str | Path, flag: str) -> Path:
    """Fail fast (before any rank starts) when `path` cannot be written."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise BadInput(f"{flag} {p} is a folder: give a file path")
    if not parent.is_dir():
        raise BadInput(f"{flag} {p}: folder {parent} does not exist: create it or pick another path")
    if (p.exists() and not os.access(p, os.W_OK)) or not can_create_in(parent):
        raise BadInput(f"{flag} {p}: folder {parent} is not writable: pick another path")
    return p


def can_create_in(folder: Path) -> bool:
    """Whether a file can be made in `folder`, found by making (and removing) the kind of temp file
    an atomic write makes: permission bits do not say (root passes every os.access check, yet
    cannot create files in /proc or on a read-only mount)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".isotune-check.", suffix=".tmp")
    except OSError:
        return False
    os.close(fd)
    os.unlink(tmp)
    return True


def atomic_write_text(path: str | Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    p = Path(path)
    fd, tmp = tempfile.mkstemp(dir=p.parent if str(p.parent) else ".", prefix=f".{p.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a plan or profile is for everyone who may read it
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_yaml(path: str | Path, what: str, producer: str):
    """The parsed YAML of a file `producer` (e.g. "isotune search") writes, or a one-line BadInput."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{what} {path} does not exist: run '{producer} ... -o {path}' first")
    try:
        return yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise BadInput(f"{what} {path} is not valid YAML ({str(e).splitlines()[0]}): re-run {producer}") from None


def first_key(path: str | Path) -> str | None:
    """The first top-level key of a YAML file (comments skipped), without parsing all of it: what
    kind of isotune file it is (isotune_plan, isotune_profile, isotune_hardware)."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip() and not line.lstrip().startswith("#"):
                    return line.split(":", 1)[0].strip() if ":" in line else None
    except (OSError, UnicodeDecodeError):
        return None
    return None
