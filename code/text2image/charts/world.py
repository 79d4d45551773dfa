"""Figures and tables of the chapter "The shapes world".

Every function draws one figure (and returns it) or builds one Markdown table;
words inside figures go through ``lang.tr``. Images of 32 px are shown large,
pixel by pixel (nearest-neighbour), so what the reader sees is what the models see.
"""

from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

import numpy as np
from matplotlib.patches import Rectangle

from text2image import lang
from text2image.plots import MIN_TEXT_PT, WIDTH, mosaic, show_image, subplots, wrap
from text2image.tables import markdown_table
from text2image.world import captions as C
from text2image.world import degrade, oracle, splits
from text2image.world.render import render
from text2image.world.scene import COLOUR_NAMES, COLOURS, SHAPES, Scene

SHAPE_FR = {"circle": "cercle", "square": "carré", "triangle": "triangle", "diamond": "losange", "cross": "croix"}
COLOUR_FR = {"red": "rouge", "yellow": "jaune", "green": "vert", "cyan": "cyan", "blue": "bleu", "magenta": "magenta"}
KIND_NAMES = {"single": ("un objet", "single"), "count": ("nombre", "count"),
              "list": ("liste", "list"), "relation": ("relation", "relation")}
DEGRADATION_NAMES = {"clean": ("image propre", "clean image"), "noise": ("bruit gaussien", "Gaussian noise"),
                     "blur": ("flou", "blur"), "colour_drift": ("dérive des couleurs", "colour drift"),
                     "specks": ("taches parasites", "stray specks"), "jpeg": ("JPEG", "JPEG")}
MASK_COLOURS = ("#e41a1c", "#377eb8", "#4daf4a", "#ff7f00", "#984ea3")
FEMININE = {"cross"}  # the shapes whose French noun is feminine: « une croix »
COLOUR_FR_FEMININE = {"green": "verte", "blue": "bleue"}  # the other colour names are invariable
SIZE_FR = {"small": ("petit", "petite"), "large": ("grand", "grande")}


def shape_name(shape: str) -> str:
    return lang.tr(SHAPE_FR[shape], shape)


def colour_name(colour: str) -> str:
    return lang.tr(COLOUR_FR[colour], colour)


def object_name(shape: str, colour: str, size: str) -> str:
    """One object in words, ordered and agreed as each language wants: « grande croix bleue », "large blue cross"."""
    feminine = shape in FEMININE
    colour_fr = COLOUR_FR_FEMININE.get(colour, COLOUR_FR[colour]) if feminine else COLOUR_FR[colour]
    return lang.tr(f"{SIZE_FR[size][feminine]} {SHAPE_FR[shape]} {colour_fr}", f"{size} {colour} {shape}")




def sample_examples(per_kind: int = 3, split: str = "train") -> list[splits.Example]:
    """The first ``per_kind`` examples of each prompt kind in ``split``, kinds interleaved."""
    found: dict[str, list] = {k: [] for k in C.KINDS}
    i = 0
    while any(len(v) < per_kind for v in found.values()):
        e = splits.example(split, i)
        if len(found[e.prompt.kind]) < per_kind:
            found[e.prompt.kind].append(e)
        i += 1
    return [found[k][j] for j in range(per_kind) for k in C.KINDS]


def gallery(examples: Sequence[splits.Example], resolution: int = 32, columns: int = 4):
    """Scenes with their captions, pixel for pixel, in the column's width (captions wrapped to fit it at 9 pt)."""
    images, _ = render([e.scene for e in examples], resolution)
    rows = int(np.ceil(len(examples) / columns))
    titles = [wrap(e.caption.text, 21) for e in examples]
    lines = [max([t.count("\n") + 1 for t in titles[r * columns:(r + 1) * columns]]) for r in range(rows)]
    fig, axes = subplots(rows, columns, figsize=(WIDTH, sum(1.75 + 0.16 * n for n in lines)),
                         gridspec_kw={"height_ratios": [1.75 + 0.16 * n for n in lines]}, squeeze=False)
    for ax, title, image in zip(np.ravel(axes), titles, images):
        show_image(ax, image)
        ax.set_title(title, fontsize=MIN_TEXT_PT, loc="left")
    for ax in np.ravel(axes)[len(examples):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def resolutions(example: splits.Example):
    """One scene at 32 and 64 px, and its object masks at 32 px."""
    small, masks = render([example.scene], 32)
    large, _ = render([example.scene], 64)
    n = len(example.scene)
    fig, axes = subplots(1, 3, figsize=(WIDTH, 2.9))
    show_image(axes[0], small[0])
    axes[0].set_title("32 × 32 px")
    show_image(axes[1], large[0])
    axes[1].set_title("64 × 64 px")
    overlay = np.zeros((32, 32, 3))
    for k in range(n):
        rgb = np.array([int(MASK_COLOURS[k][i:i + 2], 16) for i in (1, 3, 5)]) / 255
        overlay[masks[0, k]] = rgb
    show_image(axes[2], overlay)
    axes[2].set_title(lang.tr(f"{n} masques exacts", f"{n} exact masks"))
    fig.suptitle(wrap(example.caption.text, 70), fontsize=10)
    fig.tight_layout()
    return fig


def grounding(example: splits.Example, resolution: int = 32):
    """The caption's nouns, their token positions, and the masks they point to."""
    images, masks = render([example.scene], resolution)
    nouns = example.caption.nouns
    fig, axes = subplots(1, 1 + len(nouns), figsize=(2.4 * (1 + len(nouns)), 3.0))
    axes = np.ravel(axes)
    show_image(axes[0], images[0])
    axes[0].set_title(lang.tr("image", "image"))
    for ax, g in zip(axes[1:], nouns):
        union = masks[0, list(g.objects)].any(axis=0)
        shown = images[0].astype(float) * 0.25 / 255
        shown[union] = images[0][union] / 255
        show_image(ax, shown)
        ax.contour(union.astype(float), levels=[0.5], colors="white", linewidths=1.2)
        ax.set_title(lang.tr(f"« {g.word} » (jeton {g.token_index})", f'"{g.word}" (token {g.token_index})'),
                     fontsize=10)
    fig.suptitle(wrap(example.caption.text, 90), fontsize=10)
    fig.tight_layout()
    return fig


def pair_counts(examples: Sequence[splits.Example]) -> np.ndarray:
    """How many objects of each colour (rows) and shape (columns) the examples hold."""
    counts = np.zeros((len(COLOUR_NAMES), len(SHAPES)), dtype=int)
    for e in examples:
        for o in e.scene:
            counts[COLOUR_NAMES.index(o.colour), SHAPES.index(o.shape)] += 1
    return counts


def split_statistics(train: Sequence[splits.Example], heldout: Sequence[splits.Example]):
    """Kinds of prompts and objects per scene in the training set, and colour-shape pairs (train vs held out).

    Two bar charts side by side, the colour-by-shape grid under them across the
    column: in one row, the grid's counts would be too small to read.
    """
    fig, named = mosaic([["kinds", "sizes"], ["pairs", "pairs"]], figsize=(WIDTH, 7.0),
                        gridspec_kw={"height_ratios": [1, 1.45]})
    axes = [named["kinds"], named["sizes"], named["pairs"]]
    kinds = Counter(e.prompt.kind for e in train)
    axes[0].bar(range(len(C.KINDS)), [kinds[k] / len(train) for k in C.KINDS], color="#4c72b0")
    axes[0].set_xticks(range(len(C.KINDS)), [lang.tr(*KIND_NAMES[k]) for k in C.KINDS],
                       rotation=25, ha="right", rotation_mode="anchor")
    axes[0].set_title(lang.tr("types de légendes", "kinds of caption"))
    axes[0].set_ylabel(lang.tr("part de l'entraînement", "share of training"))
    sizes = Counter(len(e.scene) for e in train)
    xs = sorted(sizes)
    axes[1].bar(xs, [sizes[x] / len(train) for x in xs], color="#4c72b0")
    axes[1].set_xticks(xs)
    axes[1].set_xlabel(lang.tr("objets par scène", "objects per scene"))
    axes[1].set_title(lang.tr("nombre d'objets", "number of objects"))
    counts = pair_counts(train)
    held = {(c, s) for c, s in splits.HELDOUT_PAIRS}
    ax = axes[2]
    ax.imshow(counts, cmap="Blues", aspect="auto", vmin=0)
    ax.grid(False)
    for i, c in enumerate(COLOUR_NAMES):
        for j, s in enumerate(SHAPES):
            text = lang.integer(counts[i, j])
            if (c, s) in held:
                text = lang.tr("réservé", "held out")
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False,
                                       edgecolor="#d62728", linewidth=2))
            ax.text(j, i, text, ha="center", va="center", fontsize=10,
                    color="white" if counts[i, j] > counts.max() / 2 else "black")
    ax.set_xticks(range(len(SHAPES)), [shape_name(s) for s in SHAPES])
    ax.set_yticks(range(len(COLOUR_NAMES)), [colour_name(c) for c in COLOUR_NAMES])
    ax.set_title(lang.tr("objets par couleur et forme (entraînement)", "objects by colour and shape (training)"))
    fig.tight_layout()
    return fig


def degradations(example: splits.Example, resolution: int = 32, seed: int = 0):
    """One scene under each moderate degradation, with what the oracle reads in each."""
    images, _ = render([example.scene], resolution)
    names = ["clean", *degrade.DEGRADATIONS]
    columns = 3  # two rows of three: six in a row would shrink the verdicts under 9 pt in the column
    rows = -(-len(names) // columns)
    fig, axes = subplots(rows, columns, figsize=(WIDTH, 2.6 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names):
        image = images[0] if name == "clean" else degrade.degrade(images[0], name, np.random.default_rng(seed))
        found = oracle.parse(image)
        show_image(ax, image)
        ok = _same(example.scene, found)
        ax.set_title(lang.tr(*DEGRADATION_NAMES[name]), fontsize=11)
        mark = "✓" if ok else "✗"
        ax.set_xlabel(lang.tr(f"{mark} {len(found)} objet{'s' * (len(found) > 1)} lu{'s' * (len(found) > 1)}",
                              f"{mark} {len(found)} object{'s' * (len(found) != 1)} read"),
                      fontsize=10, color="#2ca02c" if ok else "#d62728")
    fig.tight_layout()
    return fig


def _same(scene: Scene, found) -> bool:
    from text2image.world.bench import DEGRADED_TOLERANCE, same_scene

    return same_scene(scene.objects, found, DEGRADED_TOLERANCE)


STRENGTH_NAMES = {"noise": ("écart type (part de l'échelle)", "standard deviation (share of the range)"),
                  "blur": ("écart type (pixels)", "standard deviation (pixels)"),
                  "colour_drift": ("amplitude", "strength"), "specks": ("rayon (pixels)", "radius (pixels)"),
                  "jpeg": ("qualité", "quality")}


def breaking_chart(sweep: Mapping[str, Sequence[tuple[float, int, int]]], level: float = 0.9):
    """Share of scenes read exactly against the strength of each degradation, with 95 % Wilson bands;
    dotted, the moderate strength of the oracle table; dashed, the ``level`` below which it counts as broken."""
    from text2image.evaluate.intervals import wilson

    fig, axes = subplots(2, 3, figsize=(WIDTH, 4.6), sharey=True)
    for ax, (name, points) in zip(axes.flat, sweep.items()):
        parameter = degrade.SWEEP[name][0]
        x = [v for v, _, _ in points]
        bands = np.array([wilson(k, n) for _, k, n in points])
        ax.fill_between(x, 100 * bands[:, 0], 100 * bands[:, 1], alpha=0.25, color="#1f77b4", linewidth=0)
        ax.plot(x, [100 * k / n for _, k, n in points], "o-", color="#1f77b4", markersize=3)
        ax.axvline(degrade.MODERATE[name][parameter], color="grey", linestyle=":")
        ax.axhline(100 * level, color="#d62728", linestyle="--", linewidth=1)
        if name == "jpeg":
            ax.invert_xaxis()  # a lower quality is a stronger degradation
        ax.set_title(degradation_name(name), fontsize=10)
        ax.set_xlabel(lang.tr(*STRENGTH_NAMES[name]), fontsize=9)
        ax.tick_params(labelsize=9)
    for ax in axes[:, 0]:
        ax.set_ylabel(lang.tr("scènes lues exactement (%)", "scenes read exactly (%)"), fontsize=9)
    for ax in list(axes.flat)[len(sweep):]:
        ax.axis("off")
    ax.set_ylim(0, 104)
    fig.tight_layout()
    return fig


def degradation_name(name: str) -> str:
    return lang.tr(*DEGRADATION_NAMES[name])


def share_interval(fraction: float, n: int, digits: int = 2) -> str:
    """A share of ``n`` trials (scenes read back exactly, scenes with a collision), in percent with its 95 % Wilson
    interval: ``99.90 (99.64–99.97)``."""
    from text2image.evaluate import intervals
    from text2image.tables import interval

    share = intervals.share(round(fraction * n), n)
    return interval({"p": share.p, "lo": share.lo, "hi": share.hi}, digits)


def oracle_table(accuracy: Mapping[int, Mapping[str, float]], n_clean: int, n_degraded: int):
    """Markdown table: oracle accuracy per condition (rows) and resolution (columns), in percent with its
    95 % Wilson interval."""
    resolutions_ = sorted(accuracy)
    headers = [lang.tr("condition", "condition")] + [f"{r} px (%)" for r in resolutions_]
    rows = []
    for name in ["clean", *degrade.DEGRADATIONS]:
        n = n_clean if name == "clean" else n_degraded
        label = lang.tr(*DEGRADATION_NAMES[name])
        label += lang.tr(f" ({lang.integer(n)} scènes)", f" ({lang.integer(n)} scenes)")
        rows.append([label] + [share_interval(accuracy[r][name], n) for r in resolutions_])
    return markdown_table(headers, rows)


def objects_table(scene: Scene, found) -> object:
    """What the scene holds next to what the oracle read (Markdown)."""
    headers = [lang.tr("objet", "object"), lang.tr("forme", "shape"), lang.tr("couleur", "colour"),
               lang.tr("taille", "size"), lang.tr("centre (x, y)", "centre (x, y)")]
    rows = []
    for tag, objects in ((lang.tr("vérité", "truth"), scene.objects), (lang.tr("oracle", "oracle"), found)):
        for k, o in enumerate(sorted(objects, key=lambda o: (o.y, o.x))):  # reading order, as the oracle
            size = lang.tr({"small": "petit", "large": "grand"}[o.size], o.size)
            rows.append([f"{tag} {k + 1}", shape_name(o.shape), colour_name(o.colour), size,
                         f"({lang.number(o.x, 3)} ; {lang.number(o.y, 3)})" if lang.current() == "fr"
                         else f"({lang.number(o.x, 3)}, {lang.number(o.y, 3)})"])
    return markdown_table(headers, rows, align="lllll")


def palette():
    """The five shapes, large (top) and small (bottom), in the six colours, at 32 px."""
    from text2image.world.scene import Object

    scenes = [Scene((Object(shape, COLOUR_NAMES[(k + 5 * row) % len(COLOUR_NAMES)], size, 0.5, 0.5),))
              for row, size in enumerate(("large", "small")) for k, shape in enumerate(SHAPES)]
    images, _ = render(scenes, 32)
    fig, axes = subplots(2, len(SHAPES), figsize=(WIDTH, 3.9))
    for ax, image, s in zip(np.ravel(axes), images, scenes):
        show_image(ax, image)
        o = s.objects[0]
        ax.set_title(wrap(object_name(o.shape, o.colour, o.size), 14), fontsize=10)
    fig.tight_layout(h_pad=1.5)
    return fig
