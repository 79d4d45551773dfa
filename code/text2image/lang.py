"""The edition's language, and numbers written the way each language writes them.

Chapters have the same code cells in French and English, so anything a reader
sees (figure labels, numbers quoted in prose) picks its language at run time.

Numbers and words for prose are ``Text``: a ``str`` that Jupyter also shows as
Markdown. Quarto writes an inline `` `{python} x` `` from its ``text/markdown``
form when there is one, else from ``repr`` with the quotes stripped
(``jupyter-inline.ts``), and ``repr`` turns the narrow no-break space of
``3 072`` into the six characters ``\u202f``.
"""

from __future__ import annotations

import os
from pathlib import Path

LANGS = ("fr", "en")
ENV_VAR = "TEXT2IMAGE_LANG"
NNBSP = "\u202f"  # narrow no-break space: French thousands separator and before %, :, ;


class Text(str):
    """A ``str`` whose Markdown is itself: inline in a chapter, Quarto shows it as written, not as its repr."""

    __slots__ = ()

    def _repr_markdown_(self) -> str:
        return str(self)


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
    """The French or the English text, for the active edition (as ``Text``: prose, inline in a chapter)."""
    return Text(fr if current() == "fr" else en)


def number(value: float, digits: int = 2, lang: str | None = None) -> str:
    """``1234.5`` as ``1 234,50`` in French and ``1,234.50`` in English."""
    text = f"{value:,.{digits}f}"
    if (lang or current()) == "fr":
        text = text.replace(",", NNBSP).replace(".", ",")
    return Text(text)


def integer(value: int, lang: str | None = None) -> str:
    return number(value, 0, lang)


def percent(fraction: float, digits: int = 1, lang: str | None = None) -> str:
    """``0.953`` as ``95,3 %`` (narrow no-break space) in French and ``95.3%`` in English."""
    lang = lang or current()
    body = number(100 * fraction, digits, lang)
    return Text(f"{body}{NNBSP}%" if lang == "fr" else f"{body}%")


SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def power_of_ten(value: float) -> str:
    """``1e4`` as ``10⁴`` and ``1e-4`` as ``10⁻⁴`` (the same in both editions); refuses a value that is no
    power of ten."""
    import math

    exponent = round(math.log10(value)) if value > 0 else None
    if exponent is None or not math.isclose(value, 10.0 ** exponent, rel_tol=1e-9):
        raise ValueError(f"{value!r} is not a power of ten")
    return Text("10" + str(exponent).translate(SUPERSCRIPTS))


def quoted(text: str, lang: str | None = None) -> str:
    """A prompt or a word as each edition quotes it: « a red circle » (narrow no-break spaces) or “a red circle”."""
    return Text(f"«{NNBSP}{text}{NNBSP}»" if (lang or current()) == "fr" else f"“{text}”")


def colon(lang: str | None = None) -> str:
    """The colon of a label (``name: value``): French puts a no-break space before it, English none."""
    return Text("\u00a0:" if (lang or current()) == "fr" else ":")


def listing(words, lang: str | None = None) -> str:
    """``a, b et c`` in French and ``a, b and c`` in English (no serial comma, as the book's prose)."""
    words = [str(w) for w in words]
    if len(words) < 2:
        return Text("".join(words))
    last = " et " if (lang or current()) == "fr" else " and "
    return Text(", ".join(words[:-1]) + last + words[-1])


def series(values, lang: str | None = None) -> str:
    """Numbers one after another: ``3,0 ; 1,6 ; 0,5`` in French, where the decimal comma cannot also
    separate them (narrow no-break space before the semicolon), and ``3.0, 1.6, 0.5`` in English."""
    separator = f"{NNBSP}; " if (lang or current()) == "fr" else ", "
    return Text(separator.join(str(v) for v in values))
