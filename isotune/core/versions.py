"""Release versions as numbers: (major, minor) of a version string such as torch's "2.10.0a0+git12"."""

from __future__ import annotations


def minor(version: str) -> tuple[int, int]:
    """(2, 10) for "2.10.0a0+git12", (2, 13) for "2.13.0+cpu": local and pre-release parts dropped."""
    parts = version.split("+")[0].split(".")
    nums = [int("".join(c for c in p if c.isdigit()) or 0) for p in (parts + ["0"])[:2]]
    return nums[0], nums[1]
