"""What this run of the book uses: profile, language, versions, device.

The preface prints it so a reader can tell at a glance which recipe produced
the pages in front of them.
"""

from __future__ import annotations

import platform

import numpy as np

import text2image
from text2image import lang, profiles


def torch_device() -> tuple[str | None, str]:
    """The torch version (``None`` if torch is missing) and the device the models would use."""
    try:
        import torch
    except ImportError:
        return None, "cpu"
    if torch.cuda.is_available():
        return torch.__version__, f"cuda ({torch.cuda.get_device_name(0)})"
    return torch.__version__, "cpu"


def environment() -> dict[str, str]:
    """Profile, language and versions, as a dict of short strings."""
    torch_version, device = torch_device()
    return {
        "profile": profiles.current(),
        "lang": lang.current(),
        "text2image": text2image.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch_version or "-",
        "device": device,
    }


def environment_summary() -> str:
    """The same, one ``key: value`` per line, ready to print."""
    info = environment()
    width = max(map(len, info))
    return "\n".join(f"{key:<{width}}  {value}" for key, value in info.items())
