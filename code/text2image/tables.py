"""Small tables and numbers for the prose: Markdown tables that cells display, scientific notation.

A chapter ends with a table of what it measured; a cell returns
``markdown_table(...)`` and the runner writes it into the page as Markdown.
"""

from __future__ import annotations

import math
from typing import Sequence

from text2image import lang

SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def scientific(value: float, digits: int = 1, language: str | None = None) -> str:
    """``3.2e-11`` as ``3,2 × 10⁻¹¹`` (French) or ``3.2 × 10⁻¹¹`` (English): plain text, no LaTeX needed."""
    if value == 0 or not math.isfinite(value):
        return lang.number(value, digits, language)
    exponent = math.floor(math.log10(abs(value)))
    mantissa = value / 10**exponent
    if round(abs(mantissa), digits) >= 10:  # 9.96 rounds to 10.0: carry into the exponent
        mantissa, exponent = mantissa / 10, exponent + 1
    if exponent == 0:
        return lang.number(mantissa, digits, language)
    return f"{lang.number(mantissa, digits, language)} × 10{str(exponent).translate(SUPERSCRIPT)}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None):
    """A pipe table as an IPython ``Markdown`` object (shown as a table in the book, as text elsewhere).

    ``align`` is one letter per column, ``l`` or ``r`` (default: first column left, the others right).
    """
    from IPython.display import Markdown

    align = align or "l" + "r" * (len(headers) - 1)
    if len(align) != len(headers) or any(len(row) != len(headers) for row in rows):
        raise ValueError("every row and the alignment need one entry per header")
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = [headers, rule, *[[str(cell) for cell in row] for row in rows]]
    return Markdown("\n".join("| " + " | ".join(line) + " |" for line in lines))


def interval(share, digits: int = 1) -> str:
    """``95.3 (93.1–96.9)``: a share in percent and its 95 % interval (a mapping with ``p``, ``lo``, ``hi``);
    word joiners keep the interval on one line."""
    if share is None or share.get("n") == 0:
        return "–"  # nothing to measure (e.g. no image where both objects of a relation were found)
    p, lo, hi = (lang.number(100 * share[k], digits) for k in ("p", "lo", "hi"))
    return f"{p} ({lo}\u2060–\u2060{hi})"
