"""One figure style for the whole book, with tick labels in the edition's typography."""

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
