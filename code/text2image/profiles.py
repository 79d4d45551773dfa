"""Compute profiles: one environment variable picks sizes and steps everywhere.

``smoke`` is tiny (tests, CI), ``cpu`` (default) uses the shipped checkpoints
and trains CPU recipes only where one is missing, ``gpu`` retrains with the
full recipes. Quarto sets the variable through ``_environment-<profile>``.
"""

from __future__ import annotations

import os
from typing import Mapping, TypeVar

PROFILES = ("smoke", "cpu", "gpu")
DEFAULT = "cpu"
ENV_VAR = "TEXT2IMAGE_PROFILE"

T = TypeVar("T")


class ProfileError(ValueError):
    """An unknown profile name."""


def check(name: str) -> str:
    """Return ``name`` if it is a profile, else raise an error naming the three."""
    if name not in PROFILES:
        raise ProfileError(
            f"{ENV_VAR}={name!r} is not a profile; choose one of: {', '.join(PROFILES)}"
        )
    return name


def current() -> str:
    """The active profile, from ``TEXT2IMAGE_PROFILE`` (default ``cpu``)."""
    return check(os.environ.get(ENV_VAR, "").strip() or DEFAULT)


def pick(choices: Mapping[str, T], profile: str | None = None) -> T:
    """Select the value for the active profile from ``{"smoke": ..., "cpu": ..., "gpu": ...}``."""
    name = check(profile) if profile else current()
    missing = [p for p in PROFILES if p not in choices]
    if missing:
        raise KeyError(f"profile table lacks {', '.join(missing)}: {sorted(choices)}")
    return choices[name]
