"""Figures of the chapter "Foundations": the sigmoid, the toy data, decision boundaries, loss curves.

Each function draws one figure and returns it; every word inside it goes
through ``lang.tr`` so the French edition gets French figures.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from text2image import lang
from text2image.models import neuron as nn
from text2image.plots import subplots

# Two classes, told apart by colour *and* marker (readable in grey and by colour-blind readers).
CLASS_COLOURS = ("#1f77b4", "#d62728")
CLASS_MARKERS = ("o", "^")
REGION_COLOURS = ("#c6dbef", "#fcbba1")
CURVE_COLOURS = ("#444444", "#2ca02c", "#9467bd", "#ff7f0e")


# Two panels side by side, as wide as their smallest text (the 10 pt legend) allows in the column.
WIDE = 7.4  # plots.max_width_in(10) is 7.6 in


def _class_names() -> tuple[str, str]:
    return lang.tr("classe 0", "class 0"), lang.tr("classe 1", "class 1")


def _scatter(ax, X, y, size: float = 18) -> None:
    for label, name in enumerate(_class_names()):
        points = X[y == label]
        ax.scatter(points[:, 0], points[:, 1], s=size, c=CLASS_COLOURS[label], marker=CLASS_MARKERS[label],
                   edgecolors="white", linewidths=0.5, label=name, zorder=3)


def _square(ax, X, margin: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Axis limits around the data, and the x, y ranges of a grid covering them."""
    low, high = X.min(axis=0) - margin, X.max(axis=0) + margin
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    return low, high


def _boundary(ax, model, X, y, resolution: int = 250) -> None:
    """The two predicted regions, the line where p = 0.5, and the points on top."""
    low, high = _square(ax, X)
    g1, g2 = np.meshgrid(np.linspace(low[0], high[0], resolution), np.linspace(low[1], high[1], resolution))
    p = model.predict_proba(np.column_stack([g1.ravel(), g2.ravel()])).reshape(g1.shape)
    ax.contourf(g1, g2, p, levels=[0.0, 0.5, 1.0], colors=REGION_COLOURS, alpha=0.8, zorder=1)
    ax.contour(g1, g2, p, levels=[0.5], colors="black", linewidths=1.5, zorder=2)
    ax.grid(False)
    _scatter(ax, X, y)


def _legend_below(fig, ax, with_boundary: bool = True) -> None:
    """One legend under the axes, so it never hides a point."""
    handles, labels = ax.get_legend_handles_labels()
    if with_boundary:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="black", linewidth=1.5))
        labels.append(lang.tr("frontière (p = 0,5)", "boundary (p = 0.5)"))
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, markerscale=1.6)


def sigmoid() -> object:
    """The sigmoid and its derivative, the two curves the gradient derivation uses."""
    fig, ax = subplots(figsize=(6.4, 3.4))
    z = np.linspace(-6, 6, 400)
    s = nn.sigmoid(z)
    ax.plot(z, s, color=CURVE_COLOURS[0], linewidth=2, label=r"$\sigma(z) = 1 / (1 + e^{-z})$")
    ax.plot(z, s * (1 - s), color=CURVE_COLOURS[1], linewidth=2, linestyle="--",
            label=r"$\sigma'(z) = \sigma(z)\,(1 - \sigma(z))$")
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel(lang.tr("pré-activation $z$", "pre-activation $z$"))
    ax.set_ylabel(lang.tr("valeur", "value"))
    ax.set_ylim(-0.05, 1.05)
    ax.legend(loc="upper left", frameon=False)
    fig.tight_layout()
    return fig


def datasets(separable, non_linear) -> object:
    """The two toy problems side by side: ``separable`` and ``non_linear`` are ``(X, y)`` pairs."""
    fig, axes = subplots(1, 2, figsize=(WIDE, 4.0))
    titles = (lang.tr("deux nuages (séparables)", "two blobs (separable)"),
              lang.tr("deux lunes (non séparables)", "two moons (not separable)"))
    for ax, (X, y), title in zip(axes, (separable, non_linear), titles):
        _square(ax, X)
        _scatter(ax, X, y)
        ax.set_title(title)
    _legend_below(fig, axes[0], with_boundary=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def boundary(model, X, y, title: str | None = None) -> object:
    """One model's decision regions over its data."""
    fig, ax = subplots(figsize=(5.4, 5.0))
    _boundary(ax, model, X, y)
    if title:
        ax.set_title(title)
    _legend_below(fig, ax)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def boundaries(models: Mapping[str, object], X, y) -> object:
    """Several models' decision regions on the same data, one panel each (keys are the titles)."""
    fig, axes = subplots(1, len(models), figsize=(WIDE / 2 * len(models), 3.6), squeeze=False)
    for ax, (title, model) in zip(axes[0], models.items()):
        _boundary(ax, model, X, y)
        ax.set_title(title)
    _legend_below(fig, axes[0][0])
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    return fig


def _log_axis(axis) -> None:
    """Log scale labelled 0.01, 0.02, 0.05, 0.1, ... in the edition's decimal style (no ``10^-2`` clutter)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.axes.set_yscale("log")
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}".replace(".", lang.tr(",", "."))))
    axis.set_minor_formatter(NullFormatter())


def history(histories: Mapping[str, nn.History], accuracy: bool = True) -> object:
    """Training loss (log scale) and, if asked, training accuracy, per gradient step; keys are the legend."""
    fig, axes = subplots(1, 2 if accuracy else 1, figsize=(WIDE if accuracy else 6.0, 3.6), squeeze=False)
    loss_ax = axes[0][0]
    for colour, (name, h) in zip(CURVE_COLOURS, histories.items()):
        steps = np.arange(len(h.loss))
        loss_ax.plot(steps, h.loss, color=colour, linewidth=2, label=name)
        if accuracy:
            axes[0][1].plot(steps, 100 * np.asarray(h.accuracy), color=colour, linewidth=2, label=name)
    _log_axis(loss_ax.yaxis)
    loss_ax.set_xlabel(lang.tr("pas de descente de gradient", "gradient step"))
    loss_ax.set_ylabel(lang.tr("perte logistique (échelle log)", "log-loss (log scale)"))
    loss_ax.legend(loc="upper right", frameon=False)
    if accuracy:
        acc_ax = axes[0][1]
        acc_ax.set_xlabel(lang.tr("pas de descente de gradient", "gradient step"))
        acc_ax.set_ylabel(lang.tr("exactitude (%)", "accuracy (%)"))
        acc_ax.set_ylim(40, 101)
        acc_ax.legend(loc="lower right", frameon=False)
    fig.tight_layout()
    return fig


NAMES = {
    "neuron": ("un neurone", "one neuron"),
    "mlp": ("perceptron multicouche", "multi-layer perceptron"),
    "blobs": ("deux nuages", "two blobs"),
    "moons": ("deux lunes", "two moons"),
}


def name(key: str) -> str:
    """The edition's word for a model or a problem of the chapter (``neuron``, ``mlp``, ``blobs``, ``moons``)."""
    return lang.tr(*NAMES[key])


def measured(rows, n_test: int | None = None):
    """The chapter's closing table, one row per ``(model_key, problem_key, model, history, test_accuracy, gradient_error)``.

    ``gradient_error`` may be ``None`` (no check on that run). With ``n_test``, the size of every test set,
    the test accuracy (a share estimated on a sample) comes with its 95 % Wilson interval, in percent.
    """
    from text2image.evaluate import intervals
    from text2image.tables import interval, markdown_table, scientific

    def on_test(accuracy: float) -> str:
        if n_test is None:
            return lang.percent(accuracy)
        share = intervals.share(round(accuracy * n_test), n_test)
        return interval({"p": share.p, "lo": share.lo, "hi": share.hi})

    headers = [lang.tr("modèle", "model"), lang.tr("problème", "problem"), lang.tr("paramètres", "parameters"),
               lang.tr("pas", "steps"), lang.tr("perte finale", "final loss"),
               lang.tr("exactitude (entraînement)", "accuracy (training)"),
               lang.tr("exactitude (test)", "accuracy (test)") if n_test is None
               else lang.tr("exactitude (test, %)", "accuracy (test, %)"),
               lang.tr("erreur relative du gradient", "gradient relative error")]
    body = [[name(m), name(p), lang.integer(model.n_parameters()), lang.integer(h.steps),
             lang.number(h.loss[-1], 4),
             lang.percent(h.accuracy[-1]), on_test(test),
             "–" if error is None else scientific(error, 1)]
            for m, p, model, h, test, error in rows]
    return markdown_table(headers, body, align="llrrrrrr")
