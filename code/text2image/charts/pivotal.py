"""Figures, tables and words of the chapter "Pivotal tuning".

Every function draws one figure (and returns it), builds one Markdown table,
or returns numbers and words for the prose, whose sentences stay in the
chapter. Shares come with their 95 % Wilson interval.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from text2image import lang
from text2image.charts import generative as G
from text2image.evaluate import intervals
from text2image.plots import MIN_TEXT_PT, WIDTH, show_image, subplots, wrap
from text2image.tables import interval, markdown_table
from text2image.world import bench, degrade, names
from text2image.world.scene import ALL_SHAPES, SHAPES

SMALL = MIN_TEXT_PT
LR_COLOURS = ["#377eb8", "#4daf4a", "#ff7f00", "#e41a1c", "#984ea3"]
BASE_COLOUR = "#999999"


def _style(ax) -> None:
    G._style(ax)
    ax.grid(alpha=0.3, lw=0.5)


def rate_text(value: float) -> str:
    """``5 × 10⁻⁴``: a learning rate as the figures and tables write it."""
    mantissa, exponent = f"{value:.0e}".split("e")
    power = lang.power_of_ten(10.0 ** int(exponent))
    return power if mantissa == "1" else f"{mantissa} × {power}"


def share(value: Mapping) -> str:
    """``37,3 % (33,5–41,3)``: a share with its interval, as the prose quotes it."""
    return G.share_text(value)


def percent(value: Mapping) -> str:
    """``37,3 %``: a share without its interval."""
    return lang.percent(value["p"], 1)


# ----------------------------------------------------------------------------- the concept

def examples_chart(examples, word: str):
    """The concept's training images with their captions."""
    fig, axes = subplots(1, len(examples), figsize=(WIDTH, 1.55))
    for ax, image, caption in zip(np.ravel(axes), examples.images, examples.captions(word)):
        show_image(ax, image)
        ax.set_title(wrap(caption, 12), fontsize=SMALL)
    fig.tight_layout()
    return fig


READING_N = 300  # clean renders per shape in the oracle's table
BLUR = "blur"     # the degradation of the table: the strong blur, the closest to a generated image's softness


def oracle_readings(n: int = READING_N) -> dict:
    """The oracle's exact readings (:func:`text2image.world.bench.shape_accuracy`) of ``n`` renders per shape,
    clean and strongly blurred: ``{"base": ...}`` with the base templates on the base shapes, ``{"star": ...}``
    with the star's added, on every shape."""
    return {key: bench.shape_accuracy(n, shapes=shapes, read_with=shapes, degradations=(BLUR,),
                                      strengths=degrade.STRONG)
            for key, shapes in (("base", SHAPES), ("star", ALL_SHAPES))}


def oracle_table(readings: Mapping, n: int = READING_N):
    """One row a shape: the share read exactly, clean and blurred, by the base oracle and by the one that knows
    the star."""
    def cell(key, condition, shape):
        value = readings[key][condition].get(shape)
        return "–" if value is None else interval(intervals.share(round(value * n), n).as_dict())

    rows = [[names.shape(shape), *(cell(k, c, shape) for k in ("base", "star") for c in ("clean", BLUR))]
            for shape in ALL_SHAPES]
    clean, blurred = lang.tr("net", "clean"), lang.tr("flou fort", "strong blur")
    return markdown_table([lang.tr("forme", "shape"),
                           *(f"{lang.tr(*who)}, {c}" for who in (("oracle de base", "base oracle"),
                                                                 ("avec l'étoile", "with the star"))
                             for c in (clean, blurred))], rows, "lrrrr")


# ----------------------------------------------------------------------------- the inversion

def distance_chart(histories: Mapping[float, Sequence[Mapping]]):
    """How far the word walks: ``||e_t - e_0||`` against the step for each learning rate, next to
    ``steps x lr`` (dashed) and AdamW's bound (dotted)."""
    fig, ax = subplots(figsize=(WIDTH * 0.62, 3.0))
    for colour, (lr, history) in zip(LR_COLOURS, histories.items()):
        steps = [h["step"] for h in history if h["step"] > 0]
        pick = [h for h in history if h["step"] > 0]
        ax.plot(steps, [h["distance"] for h in pick], "-", color=colour, lw=1.4, label=f"lr = {rate_text(lr)}")
        ax.plot(steps, [h["steps_lr"] for h in pick], "--", color=colour, lw=0.9)
        ax.plot(steps, [h["bound"] for h in pick], ":", color=colour, lw=0.9)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(lang.tr("pas", "step"))
    ax.set_ylabel(lang.tr("distance au mot de départ", "distance from the initial word"))
    ax.plot([], [], "k--", lw=0.9, label=lang.tr("pas × lr", "steps × lr"))
    ax.plot([], [], "k:", lw=0.9, label=lang.tr("borne d'AdamW", "AdamW's bound"))
    ax.legend(fontsize=SMALL, frameon=False, loc="upper left")
    _style(ax)
    fig.tight_layout()
    return fig


def _points(series: Mapping[float, Sequence[Mapping]], key: str):
    for colour, (lr, points) in zip(LR_COLOURS, series.items()):
        yield colour, lr, points, [p[key] for p in points]


def _with_bars(ax, xs, shares, colour, label, marker="o-"):
    ps = np.array([s["p"] for s in shares]) * 100
    lo = ps - np.array([s["lo"] for s in shares]) * 100
    hi = np.array([s["hi"] for s in shares]) * 100 - ps
    ax.errorbar(xs, ps, yerr=[lo, hi], fmt=marker, color=colour, ms=3.5, lw=1.2, capsize=2, label=label)


def inversion_chart(series: Mapping[float, Sequence[Mapping]], base: Mapping, start: Mapping):
    """Reconstruction (the star read where the prompt asks for it) and editability (the composition kept, the
    star's shape left free; and the base model's with base shapes, grey band) against the distance travelled,
    from the initial word (``start``, black)."""
    fig, axes = subplots(1, 2, figsize=(WIDTH, 2.9), sharey=True)
    _with_bars(axes[0], [0.0], [start["reconstruction"]["star"]], "black", lang.tr("mot de départ", "initial word"),
               "o")
    _with_bars(axes[1], [0.0], [start["editability"]["composed"]], "black", lang.tr("mot de départ", "initial word"),
               "o")
    for colour, lr, points, distances in _points(series, "distance"):
        label = f"lr = {rate_text(lr)}"
        _with_bars(axes[0], distances, [p["reconstruction"]["star"] for p in points], colour, label)
        _with_bars(axes[1], distances, [p["editability"]["composed"] for p in points], colour, label)
    reference = base["editability"]["composed"]
    axes[1].axhspan(100 * reference["lo"], 100 * reference["hi"], color=BASE_COLOUR, alpha=0.3, lw=0,
                    label=lang.tr("base, formes connues", "base, known shapes"))
    axes[0].set_title(lang.tr("reconstruction : une étoile", "reconstruction: a star"))
    axes[1].set_title(lang.tr("éditabilité : la composition", "editability: the composition"))
    for ax in axes:
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlabel(lang.tr("distance au mot de départ", "distance from the initial word"))
        ax.set_ylim(-3, 103)
        _style(ax)
    axes[0].set_ylabel(lang.tr("images (%)", "images (%)"))
    axes[1].legend(fontsize=SMALL, frameon=False, loc="lower left")
    fig.tight_layout()
    return fig


def readings(points: Sequence[Mapping]) -> dict:
    """What the oracle reads where the star should be, over several points: ``{shape: share}``, most read first."""
    counts: dict[str, int] = {}
    for p in points:
        for shape, k in p["reconstruction"]["read_as"].items():
            counts[shape] = counts.get(shape, 0) + k
    total = sum(counts.values())
    return dict(sorted(((s, k / total) for s, k in counts.items() if k), key=lambda kv: -kv[1]))


# ----------------------------------------------------------------------------- the LoRA

LORA_PANELS = (("reconstruction", "star", ("reconstruction : une étoile", "reconstruction: a star")),
               ("editability", "position", ("éditabilité : position exacte", "editability: exact position")),
               ("reconstruction", "size_unseen", ("taille demandée, paires jamais vues",
                                                  "asked size, pairs never shown")),
               ("reconstruction", "copied", ("étoile à la place d'un exemple", "star where an example had it")))


def lora_chart(series: Mapping[float, Sequence[Mapping]], base: Mapping, inversion: Mapping):
    """The LoRA's sweep against its steps, one colour a learning rate: reconstruction, editability (the exact
    position check), the asked size on colour-size pairs the examples never showed, and stars drawn where the
    example of their colour had its own (grey: the base's editability, and the share for the world's scenes)."""
    fig, axes = subplots(2, 2, figsize=(WIDTH, 4.8), sharex=True)
    for ax, (group, key, title) in zip(np.ravel(axes), LORA_PANELS):
        for colour, lr, points, steps in _points(series, "steps"):
            starts = [0] + list(steps)
            _with_bars(ax, starts, [inversion[group][key]] + [p[group][key] for p in points], colour,
                       f"lr = {rate_text(lr)}")
        if key == "position":
            ref = base["editability"]["position"]
            ax.axhspan(100 * ref["lo"], 100 * ref["hi"], color=BASE_COLOUR, alpha=0.3, lw=0,
                       label=lang.tr("base, formes connues", "base, known shapes"))
        if key == "copied":
            ref = inversion["reconstruction"]["copied_world"]
            ax.axhline(100 * ref["p"], color=BASE_COLOUR, lw=1.0, ls=":", label=lang.tr("scènes du monde",
                                                                                         "world's scenes"))
        ax.set_title(lang.tr(*title))
        ax.set_ylim(-3, 103)
        ax.set_xscale("symlog", linthresh=10)
        _style(ax)
    for ax in axes[1]:
        ax.set_xlabel(lang.tr("pas de LoRA", "LoRA steps"))
    for ax in axes[:, 0]:
        ax.set_ylabel(lang.tr("images (%)", "images (%)"))
    handles, labels = [], []
    for ax in np.ravel(axes):
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    fig.legend(handles, labels, loc="upper center", ncol=4, fontsize=SMALL, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return fig


# ----------------------------------------------------------------------------- the shells, the final table

def shells_table(found: Mapping):
    """Norms of the text states at the inner position and at the end token, raw and centred."""
    rows = []
    for key, name in (("inner", ("mot intérieur (5e jeton)", "inner word (5th token)")),
                      ("eos", ("jeton de fin", "end token"))):
        raw, centred = found[key]["raw"], found[key]["centred"]
        rows.append([lang.tr(*name), lang.number(raw["norm_mean"], 2), lang.percent(raw["norm_cv"], 1),
                     lang.percent(raw["centre_shift"], 0), lang.number(centred["norm_mean"], 2),
                     lang.percent(centred["norm_cv"], 1)])
    return markdown_table([lang.tr("position", "position"), lang.tr("norme brute", "raw norm"),
                           lang.tr("écart relatif brut", "raw relative spread"),
                           lang.tr("centre / norme", "centre / norm"), lang.tr("norme centrée", "centred norm"),
                           lang.tr("écart relatif centré", "centred relative spread")], rows, "lrrrrr")


FINAL_COLUMNS = ((("reconstruction", "star"), ("étoile", "star")),
                 (("reconstruction", "size_unseen"), ("taille, paires nouvelles", "size, new pairs")),
                 (("reconstruction", "copied"), ("copiée", "copied")),
                 (("editability", "position"), ("position exacte", "exact position")),
                 (("editability", "composed"), ("composition", "composition")))


def final_table(rows: Sequence[tuple[str, Mapping]]):
    """One row a model (``(name in words, measures)``): every measure with its interval."""
    def cell(measures, group, key):
        return interval(measures.get(group, {}).get(key)) if key in measures.get(group, {}) else "–"

    return markdown_table([lang.tr("modèle", "model"), *(lang.tr(*name) for _, name in FINAL_COLUMNS)],
                          [[name, *(cell(m, g, k) for (g, k), _ in FINAL_COLUMNS)] for name, m in rows],
                          "l" + "r" * len(FINAL_COLUMNS))


def samples_chart(images: Mapping[str, np.ndarray], prompts: Sequence[str]):
    """One row a model (its name), one column a prompt (above the first row)."""
    names = list(images)
    fig, axes = subplots(len(names), len(prompts), figsize=(WIDTH, 1.2 * len(names) + 0.9), squeeze=False)
    for r, name in enumerate(names):
        for c, prompt in enumerate(prompts):
            show_image(axes[r, c], images[name][c])
            if r == 0:
                axes[r, c].set_title(wrap(prompt, 16), fontsize=SMALL)
        axes[r, 0].set_ylabel(wrap(name, 14), fontsize=SMALL, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- words for the prose

def walk(histories: Mapping[float, Sequence[Mapping]], early: int = 100) -> dict:
    """The walk of the middle rate of the sweep: its distance and steps x lr at the first logged step from
    ``early`` on and at the last, and the norm of the row it started from."""
    lr = sorted(histories)[len(histories) // 2]
    history = [h for h in histories[lr] if h["step"] > 0]
    first = next((h for h in history if h["step"] >= early), history[0])
    last = history[-1]
    return {"lr": lr, "early_step": first["step"], "early": first["distance"], "early_steps_lr": first["steps_lr"],
            "last_step": last["step"], "last": last["distance"], "last_steps_lr": last["steps_lr"],
            "start_norm": float(np.linalg.norm(histories[lr][0]["row"]))}


def minutes(seconds: float) -> str:
    """Minutes, rounded, as the prose writes them."""
    return lang.number(seconds / 60, 0)


def best(series: Mapping[float, Sequence[Mapping]], group: str, key: str) -> dict:
    """The point of the sweep with the highest share ``group/key``: its ``lr``, ``step`` and ``share``."""
    lr, point = max(((lr, p) for lr, points in series.items() for p in points), key=lambda lp: lp[1][group][key]["p"])
    return {"lr": lr, "step": point["step"], "share": point[group][key]}


def farthest(series: Mapping[float, Sequence[Mapping]]) -> dict:
    """The point of the inversion's sweep farthest from the initial word: its ``distance`` and editability."""
    point = max((p for points in series.values() for p in points), key=lambda p: p["distance"])
    return {"distance": point["distance"], "share": point["editability"]["composed"]}


def loss_drop(histories: Mapping[float, Sequence[Mapping]], lr: float | None = None) -> dict:
    """The diffusion loss on fixed draws at the start and at the end of one path (the default rate's)."""
    from text2image.methods import textual_inversion as TI

    history = histories[lr if lr is not None else min(histories, key=lambda r: abs(np.log(r / TI.LR)))]
    return {"start": history[0]["eval_loss"], "end": history[-1]["eval_loss"]}
