"""One figure style for the whole book, with tick labels in the edition's typography, and its size rule.

The size rule: every text of a figure is at least ``MIN_TEXT_PT`` (9 pt) once
the figure is shown in the book's column, ``COLUMN_PX`` (752 px) wide. A page
shows a figure at its own width up to the column's and shrinks a wider one,
text included, so a figure ``w`` inches wide at the book's dpi is fine up to
``COLUMN_IN`` (6.84 in at 110 dpi) and, beyond, needs its text enlarged by
``w / COLUMN_IN``: a 14-inch row of panels with 11 pt labels shows them at
5.4 pt. ``text_on_page`` is the arithmetic, ``max_width_in`` the widest
figure whose smallest text stays readable; the chapter runner checks every
figure of the book with them (``book.checks.check_figure_text``).
"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
from matplotlib.ticker import ScalarFormatter

from text2image import lang

STYLE = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "image.interpolation": "nearest",
    "svg.hashsalt": "text2image",  # deterministic SVG ids
}


COLUMN_PX = 752  # the text column of the book's pages (Quarto's cosmo book layout; the preview's .content)
MIN_TEXT_PT = 9.0  # the smallest text a figure may show, in points, once scaled to the column
BOOK_DPI = STYLE["figure.dpi"]  # the book's fig-dpi (_quarto.yml), at which points are counted on the page
COLUMN_IN = COLUMN_PX / BOOK_DPI  # a figure up to this wide (at the book's dpi) is shown at its size
WIDTH = 6.8  # inches: what the charts draw a full-column figure at, 4 px inside COLUMN_IN. The saved PNG is
# its tight bounding box (margins trimmed, 0.1 in padded), so a chart whose artists reach its very edges
# keeps 0.1 in of margin itself (token_grids)


def text_on_page(points: float, dpi: float, width_px: float | None, book_dpi: float = BOOK_DPI) -> float:
    """The size, in points at ``book_dpi``, of text of ``points`` in a figure drawn at ``dpi``, ``width_px`` wide.

    The figure's pixels show one for one up to the column's width, and are
    shrunk to it beyond; a figure drawn at another dpi than the book's is
    shown by its pixels, so its text grows or shrinks with ``dpi / book_dpi``.
    """
    scale = min(1.0, COLUMN_PX / width_px) if width_px else 1.0
    return points * dpi / book_dpi * scale


def max_width_in(smallest_pt: float, dpi: float = BOOK_DPI) -> float:
    """The widest figure (inches, at ``dpi``) whose smallest text of ``smallest_pt`` still shows at ``MIN_TEXT_PT``."""
    if smallest_pt * dpi / BOOK_DPI < MIN_TEXT_PT:
        return 0.0
    return smallest_pt * COLUMN_PX / (BOOK_DPI * MIN_TEXT_PT)


def setup() -> None:
    """Apply the book's style (called on import; idempotent)."""
    plt.rcParams.update(STYLE)


class CommaFormatter(ScalarFormatter):
    """Matplotlib's default tick labels, with a decimal comma."""

    def __call__(self, value, position=None):
        return super().__call__(value, position).replace(".", ",")

    def get_offset(self):
        return super().get_offset().replace(".", ",")


def localise(ax) -> None:
    """Decimal commas on numeric axes in the French edition."""
    if lang.current() != "fr":
        return
    for axis in (ax.xaxis, ax.yaxis):
        if type(axis.get_major_formatter()) is ScalarFormatter:
            axis.set_major_formatter(CommaFormatter())


def subplots(*args, **kwargs):
    """``plt.subplots`` with the book's style and localised axes."""
    fig, axes = plt.subplots(*args, **kwargs)
    for ax in getattr(axes, "flat", [axes]):
        localise(ax)
    return fig, axes


def mosaic(layout, **kwargs):
    """``plt.subplot_mosaic`` with the book's style and localised axes: panels of unequal widths laid out in rows,
    so that a figure too wide for the column can wrap onto a second row."""
    fig, axes = plt.subplot_mosaic(layout, **kwargs)
    for ax in axes.values():
        localise(ax)
    return fig, axes


def show_image(ax, image) -> None:
    """An image as pixels: nearest interpolation (32 px images stay sharp), no ticks, grid or frame."""
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def wrap(text: str, width: int = 26) -> str:
    """A caption over a small panel, broken into lines of at most ``width`` characters."""
    return "\n".join(textwrap.wrap(text, width))


setup()
