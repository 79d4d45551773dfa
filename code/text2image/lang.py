"""The edition's language, and numbers written the way each language writes them.

Chapters have the same code cells in French and English, so anything a reader
sees (figure labels, numbers quoted in prose) picks its language at run time.
"""

from __future__ import annotations

import os
from pathlib import Path

LANGS = ("fr", "en")
ENV_VAR = "TEXT2IMAGE_LANG"
NNBSP = "\u202f"  # narrow no-break space: French thousands separator and before %, :, ;


def current() -> str:
    """``TEXT2IMAGE_LANG`` if set, else the chapter folder (``book/fr`` or ``book/en``), else English."""
    value = os.environ.get(ENV_VAR, "").strip()
    if value:
        if value not in LANGS:
            raise ValueError(f"{ENV_VAR}={value!r} is not a language; choose one of: {', '.join(LANGS)}")
        return value
    folder = Path.cwd().name
    return folder if folder in LANGS else "en"


def tr(fr: str, en: str) -> str:
    """The French or the English text, for the active edition."""
    return fr if current() == "fr" else en


def number(value: float, digits: int = 2, lang: str | None = None) -> str:
    """``1234.5`` as ``1 234,50`` in French and ``1,234.50`` in English."""
    text = f"{value:,.{digits}f}"
    if (lang or current()) == "fr":
        text = text.replace(",", NNBSP).replace(".", ",")
    return text


def integer(value: int, lang: str | None = None) -> str:
    return number(value, 0, lang)


def percent(fraction: float, digits: int = 1, lang: str | None = None) -> str:
    """``0.953`` as ``95,3 %`` (narrow no-break space) in French and ``95.3%`` in English."""
    lang = lang or current()
    body = number(100 * fraction, digits, lang)
    return f"{body}{NNBSP}%" if lang == "fr" else f"{body}%"


def status(value: float, target: float) -> str:
    """Whether a measured value reaches its target, in words ("met" / "not met")."""
    return tr("atteint", "met") if value >= target else tr("non atteint", "not met")
