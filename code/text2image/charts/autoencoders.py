"""Figures and tables of the chapter "Autoencoders".

Each function draws one figure and returns it; every word inside goes through
``lang.tr``. Images of the world are 32 px: they are shown large, pixel by
pixel (nearest interpolation), never smoothed.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from text2image import lang
from text2image.charts import diagrams
from text2image.charts.world import colour_name, shape_name
from text2image.evaluate.reconstruction import ERRORS
from text2image.models import autoencoders as ae
from text2image.plots import MIN_TEXT_PT, WIDTH, show_image, subplots, wrap
from text2image.recipes import autoencoders as R
from text2image.world.scene import COLOURS, SHAPES, place
from text2image.world.tensors import RESOLUTION, to_tensor, to_uint8

MODEL_COLOURS = {"ae": "#444444", "vae": "#1f77b4", "vqvae": "#2ca02c", "vqvae-nofix": "#98df8a",
                 "dvae": "#9467bd", "vqgan": "#d62728", "vqvae-paper": "#17becf", "vqgan-nodisc": "#ff9896",
                 "vae-long": "#1f77b4", "vqvae-long": "#17becf"}  # a continuation wears its base's colour
SHAPE_COLOURS = dict(zip(SHAPES, ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b")))
SHAPE_MARKERS = dict(zip(SHAPES, ("o", "s", "^", "D", "P")))


def model_name(name: str) -> str:
    """How the text names each model."""
    return {
        "ae": lang.tr("AE", "AE"),
        "vae": "VAE",
        "vqvae": "VQ-VAE",
        "vqvae-nofix": lang.tr("VQ-VAE sans relance", "VQ-VAE, no restarts"),
        "dvae": "dVAE",
        "vqgan": "VQGAN",
        "vae-long": lang.tr("VAE prolongé", "VAE, trained on"),
        "vqvae-long": lang.tr("VQ-VAE prolongé", "VQ-VAE, trained on"),
        "vqvae-paper": lang.tr("VQ-VAE, pondération de l'article", "VQ-VAE, the paper's weighting"),
        "vqgan-nodisc": lang.tr("VQGAN sans discriminateur", "VQGAN without discriminator"),
    }.get(name, name)



# ----------------------------------------------------------------------------- architecture

ARCHITECTURES = ("ae", "vae", "vqvae", "dvae", "vqgan")  # one of each bottleneck (the controls share these)


def architecture(models: Mapping[str, torch.nn.Module], images: torch.Tensor):
    """The encoder, the five bottlenecks and the decoder, each shape read from a reconstruction of ``images[0]``
    by the models themselves (:func:`text2image.charts.diagrams.autoencoder_diagram`)."""
    return diagrams.autoencoder_diagram({n: models[n] for n in ARCHITECTURES if n in models}, images, model_name)


def vq_lookup(model: torch.nn.Module, images: torch.Tensor):
    """The VQ-VAE's nearest-code lookup at an object's cell of ``images[0]``, and the straight-through gradient
    (:func:`text2image.charts.diagrams.vq_lookup`)."""
    return diagrams.vq_lookup(model, images[0])


# ----------------------------------------------------------------------------- reconstructions

LABEL_IN = 1.15  # inches left of the image rows for their labels (a model's name, wrapped, and a number)


def image_rows(rows: Sequence[tuple[str, np.ndarray]], columns: int, titles: Sequence[str] | None = None):
    """Rows of images in the column's width, each labelled on its left; ``titles`` over the first row.

    The labels get a fixed margin (``LABEL_IN``) rather than a share of the
    figure, so that the tight bounding box never widens the figure past the column.
    """
    side = (WIDTH - LABEL_IN) / columns
    top = 0.3 if titles else 0.05
    height = side * len(rows) + top
    fig, axes = subplots(len(rows), columns, figsize=(WIDTH, height), squeeze=False)
    for r, (label, batch) in enumerate(rows):
        for c in range(columns):
            show_image(axes[r][c], batch[c])
            if titles and r == 0:
                axes[r][c].set_title(titles[c], fontsize=MIN_TEXT_PT, pad=3)
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=10, labelpad=6)
    fig.subplots_adjust(left=LABEL_IN / WIDTH, right=0.995, top=1 - top / height, bottom=0.005,
                        wspace=0.06, hspace=0.06)
    return fig


def reconstructions(models: Mapping[str, torch.nn.Module], images: torch.Tensor, n: int = 8):
    """One row per model under the originals; the row label says the model and its PSNR on these images."""
    images = images[:n]
    rows = [(lang.tr("original", "original"), to_uint8(images))]
    for name, model in models.items():
        rec = ae.reconstruct(model, images)
        db = float(ae.psnr(images, rec).mean())
        rows.append((f"{wrap(model_name(name), 12)}\n{lang.number(db, 1)} dB", to_uint8(rec)))
    return image_rows(rows, n)


# ----------------------------------------------------------------------------- codebooks

def code_frequencies(models: Mapping[str, torch.nn.Module], images: torch.Tensor):
    """Code frequencies sorted from most to least used, one curve per model (log scale)."""
    fig, ax = subplots(figsize=(WIDTH, 5.0))
    for name, model in models.items():
        grid = ae.codes(model, images)
        size = ae.codebook_size(model)
        counts = torch.bincount(grid.flatten(), minlength=size).float()
        share = (counts / counts.sum()).sort(descending=True).values.numpy()
        stats = ae.codebook_stats(grid, size)
        label = (f"{model_name(name)}: {lang.percent(stats['usage'], 0)} "
                 + lang.tr("des codes, perplexité ", "of codes, perplexity ") + lang.number(stats["perplexity"], 0))
        ax.plot(np.arange(1, size + 1), np.where(share > 0, share, np.nan), color=MODEL_COLOURS.get(name),
                linewidth=2, label=label)
    ax.axhline(1 / size, color="grey", linestyle=":", linewidth=1)
    ax.text(1, 1 / size, lang.tr("usage uniforme", "uniform use"), va="bottom", ha="left", color="grey", fontsize=9)
    ax.set_yscale("log")
    ax.set_xlabel(lang.tr("rang du code (du plus utilisé au moins utilisé)", "code rank (most to least used)"))
    ax.set_ylabel(lang.tr("part des positions", "share of positions"))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1, frameon=False, fontsize=9)
    fig.tight_layout()
    return fig


def token_grids(model: torch.nn.Module, images: torch.Tensor, n: int = 4, per_row: int = 2):
    """Images beside their 8x8 grids of token ids (the DALL·E chapter's input), ids written in each cell.

    ``per_row`` pairs to a row, the grid wider than its image: three-digit ids
    of 9 pt need cells of about 0.3 inch, a grid of 2.4 inches of the column.
    """
    import matplotlib.pyplot as plt

    images = images[:n]
    grid = ae.codes(model, images).numpy()
    rows = -(-n // per_row)
    fig = plt.figure(figsize=(WIDTH, 2.55 * rows + 0.25))
    outer = fig.add_gridspec(rows, per_row, left=0.015, right=0.985, bottom=0.0,  # + the 0.1 in pad of a tight box
                             top=1 - 0.25 / (2.55 * rows + 0.25),
                             wspace=0.06, hspace=0.1)
    pictures = to_uint8(images)
    for k in range(n):
        inner = outer[k // per_row, k % per_row].subgridspec(1, 2, width_ratios=[0.85, 2.45], wspace=0.05)
        picture_ax, ax = fig.add_subplot(inner[0]), fig.add_subplot(inner[1])
        show_image(picture_ax, pictures[k])
        show_image(ax, grid[k] % 20)
        ax.images[0].set(cmap="tab20", clim=(0, 19), alpha=0.55)
        for i in range(grid.shape[1]):
            for j in range(grid.shape[2]):
                ax.text(j, i, str(grid[k, i, j]), ha="center", va="center", fontsize=MIN_TEXT_PT)
        if k < per_row:
            picture_ax.set_title(lang.tr("image", "image"), fontsize=10)
            ax.set_title(lang.tr("jetons", "tokens"), fontsize=10)
    return fig


# ----------------------------------------------------------------------------- rate-distortion

def rate_distortion(results: Sequence[dict], references: Mapping[str, float] | None = None):
    """PSNR against bits per image, one point per codebook size; latent-diffusion references as lines."""
    fig, ax = subplots(figsize=(6.4, 4.0))
    bits = [r["bits_per_image"] for r in results]
    db = [r["psnr"] for r in results]
    ax.plot(bits, db, "o-", color=MODEL_COLOURS["vqvae"], linewidth=2, markersize=7)
    for r in results:  # under each point, as the caption says; the references are named at the right end
        ax.annotate(f"K = {r['codebook_size']}\n{lang.percent(r['codebook_usage'], 0)}",
                    (r["bits_per_image"], r["psnr"]), textcoords="offset points", xytext=(0, -9),
                    ha="center", va="top", fontsize=MIN_TEXT_PT, zorder=3,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})  # over a reference line
    merged: list[tuple[list[str], float]] = []  # references closer than 1 dB share one line
    for label, value in sorted((references or {}).items(), key=lambda item: item[1]):
        if merged and abs(merged[-1][1] - value) < 1.0:
            merged[-1][0].append(label)
        else:
            merged.append(([label], value))
    for labels, value in merged:
        ax.axhline(value, color="grey", linestyle="--", linewidth=1)
        text = " / ".join(labels) + lang.tr(" (photographies)", " (photographs)")
        ax.text(max(bits), value, f"{text} ", va="bottom", ha="right", color="grey", fontsize=MIN_TEXT_PT)
    ax.set_xscale("log", base=2)
    ax.set_xticks(bits)
    ax.set_xticklabels([lang.integer(b) for b in bits])
    ax.minorticks_off()
    ax.set_xlabel(lang.tr("débit : bits par image (64 positions × log₂ K)",
                          "rate: bits per image (64 positions × log₂ K)"))
    ax.set_ylabel(lang.tr("PSNR (dB) sur le test", "test PSNR (dB)"))
    top = max(db + list((references or {}).values()))
    ax.set_ylim(min(db) - 2, top + 3)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- interpolation

def two_scenes():
    """The two scenes the interpolation goes between (fixed, so the figure is the same every run)."""
    rng = np.random.default_rng(7)
    a = place(rng, [("circle", "red", "large"), ("triangle", "yellow", "small")])
    b = place(rng, [("square", "blue", "large"), ("cross", "green", "small")])
    return a, b


def interpolation(models: Mapping[str, torch.nn.Module], steps: int = 8):
    """Straight lines between the latents of two scenes, decoded; the first row blends pixels."""
    from text2image.world.render import render

    images, _ = render(list(two_scenes()), RESOLUTION)
    x = to_tensor(images)
    t = torch.linspace(0, 1, steps)
    rows = [(lang.tr("pixels", "pixels"), (1 - t)[:, None, None, None] * x[0] + t[:, None, None, None] * x[1])]
    for name, model in models.items():
        z = ae.encode(model, x)
        path = (1 - t)[:, None, None, None] * z[0] + t[:, None, None, None] * z[1]
        rows.append((model_name(name), ae.decode(model, path)))
    rows = [(wrap(label, 12), to_uint8(batch)) for label, batch in rows]
    return image_rows(rows, steps, [f"t = {lang.number(float(v), 2)}" for v in t])


# ----------------------------------------------------------------------------- latent map

def cell_labels(scenes: Sequence, masks: np.ndarray, grid: int = 8) -> list[tuple[int, int, int, str, str]]:
    """(image, row, column, shape, colour) for each latent cell mostly covered by one object.

    Background cells get shape and colour ``"background"``; cells half covered are skipped.
    """
    n, _, res, _ = masks.shape
    step = res // grid
    cover = masks.reshape(n, masks.shape[1], grid, step, grid, step).mean(axis=(3, 5))  # n, k, g, g
    out = []
    for i in range(n):
        for r in range(grid):
            for c in range(grid):
                k = int(cover[i, :, r, c].argmax())
                share = cover[i, k, r, c]
                if share >= 0.5 and k < len(scenes[i]):
                    obj = scenes[i][k]
                    out.append((i, r, c, obj.shape, obj.colour))
                elif cover[i, :, r, c].sum() == 0:
                    out.append((i, r, c, "background", "background"))
    return out


def latent_points(model: torch.nn.Module, scenes: Sequence, images: torch.Tensor, masks: np.ndarray,
                  background: int = 300, seed: int = 0):
    """2D PCA coordinates of the latent vectors of labelled cells, and their labels."""
    z = ae.encode(model, images).permute(0, 2, 3, 1).numpy()  # n, 8, 8, C
    labels = cell_labels(scenes, masks, z.shape[1])
    rng = np.random.default_rng(seed)
    objects = [lab for lab in labels if lab[3] != "background"]
    backs = [lab for lab in labels if lab[3] == "background"]
    keep = objects + [backs[k] for k in rng.permutation(len(backs))[:background]]
    vectors = np.stack([z[i, r, c] for i, r, c, _, _ in keep])
    centred = vectors - vectors.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    explained = float((s[:2] ** 2).sum() / (s ** 2).sum())
    return xy, [lab[3] for lab in keep], [lab[4] for lab in keep], explained


def latent_map(points):
    """The latent cells of :func:`latent_points` in the plane of their two principal axes, by colour and by shape."""
    xy, shapes, colours, _ = points
    fig, axes = subplots(1, 2, figsize=(WIDTH, 4.9), sharex=True, sharey=True)
    back = np.array([s == "background" for s in shapes])
    for ax in axes:
        ax.scatter(xy[back, 0], xy[back, 1], s=8, c="#bbbbbb", label=lang.tr("fond", "background"),
                   edgecolors="none")
        ax.set_xlabel(lang.tr("axe principal 1", "principal axis 1"))
    axes[0].set_ylabel(lang.tr("axe principal 2", "principal axis 2"))
    for colour, rgb in COLOURS.items():
        pick = np.array([c == colour for c in colours])
        axes[0].scatter(xy[pick, 0], xy[pick, 1], s=10, c=[np.array(rgb) / 255], label=colour_name(colour),
                        edgecolors="none", alpha=0.8)
    for shape in SHAPES:
        pick = np.array([s == shape for s in shapes])
        axes[1].scatter(xy[pick, 0], xy[pick, 1], s=12, c=SHAPE_COLOURS[shape], marker=SHAPE_MARKERS[shape],
                        label=shape_name(shape), edgecolors="none", alpha=0.7)
    axes[0].set_title(wrap(lang.tr("couleur de l'objet sous la case", "colour of the object under the cell"), 20),
                      fontsize=11)
    axes[1].set_title(wrap(lang.tr("forme de l'objet sous la case", "shape of the object under the cell"), 20),
                      fontsize=11)
    for ax in axes:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=3, frameon=False, fontsize=MIN_TEXT_PT,
                  markerscale=2, columnspacing=1.0, handletextpad=0.3)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- training curves

def training_curves(logs: Mapping[str, list[dict]], evals: Mapping[str, list[dict]]):
    """Training reconstruction error per step (logged), then test PSNR and oracle agreement at each evaluation.

    Two rows of two in the column: the three panels in reading order, the
    legend in the fourth place.
    """
    fig, grid = subplots(2, 2, figsize=(WIDTH, 6.0))
    axes, key_ax = grid.flat[:3], grid.flat[3]
    for name, rows in logs.items():
        key = "mse" if "mse" in rows[0] else "loss"
        if name == "vqgan":
            continue  # trained on L1 + perceptual + GAN: its loss is not on the same scale
        axes[0].plot([r["step"] for r in rows], [r[key] for r in rows], color=MODEL_COLOURS.get(name),
                     linewidth=1.6, label=model_name(name))
    axes[0].set_yscale("log")
    axes[0].set_ylabel(lang.tr("erreur quadratique (entraînement)", "squared error (training)"))
    for name, rows in evals.items():
        style = dict(color=MODEL_COLOURS.get(name), linewidth=1.6, markersize=4, label=model_name(name))
        axes[1].plot([r["step"] for r in rows], [r["psnr"] for r in rows], "o-", **style)
        if rows and "oracle_agreement" in rows[0]:
            axes[2].plot([r["step"] for r in rows], [100 * r["oracle_agreement"] for r in rows], "o-", **style)
    axes[1].set_ylabel("PSNR (dB)")
    axes[2].set_ylabel(lang.tr("accord de l'oracle (%)", "oracle agreement (%)"))
    axes[2].axhline(100 * TARGETS["oracle"], color="0.4", linestyle=":", linewidth=1.2)
    for ax in axes:
        ax.set_xlabel(lang.tr("pas d'entraînement", "training step"))
    handles, labels = axes[1].get_legend_handles_labels()
    key_ax.axis("off")
    key_ax.legend(handles, labels, loc="center", frameon=False, fontsize=10)
    fig.tight_layout()
    return fig


def continued_curves(evals: Mapping[str, list[dict]], first_steps: Mapping[str, int]):
    """Scenes the oracle misreads (log scale, so that the last percent shows) and PSNR of each comparison
    model and of its continuation, on one step axis.

    ``evals`` holds the evaluations of the bases of :data:`R.LONG` and of their ``-long`` runs;
    ``first_steps`` the step at which each continuation started. A log scale has no zero: a check without
    any misread scene is drawn as a downward triangle on the panel's bottom edge.
    """
    fig, axes = subplots(1, 2, figsize=(WIDTH, 4.4))
    perfect = []  # (step, colour) of the checks without an error
    for long, base in R.LONG.items():
        for name, offset, style in ((base, 0, "o-"), (long, first_steps[long], "s--")):
            rows = evals[name]
            steps = [offset + r["step"] for r in rows]
            kw = dict(color=MODEL_COLOURS[name], linewidth=1.6, markersize=4, label=model_name(name))
            misread = [100 * (1 - r["oracle_agreement"]) or np.nan for r in rows]
            axes[0].plot(steps, misread, style, **kw)
            axes[1].plot(steps, [r["psnr"] for r in rows], style, **kw)
            perfect += [(step, MODEL_COLOURS[name]) for step, m in zip(steps, misread) if np.isnan(m)]
        for ax in axes:
            ax.axvline(first_steps[long], color="0.8", linewidth=1.0, zorder=0)
    axes[0].set_yscale("log")
    if perfect:
        bottom = axes[0].get_ylim()[0]
        axes[0].set_ylim(bottom=bottom)
        for step, colour in perfect:
            axes[0].plot([step], [bottom], "v", color=colour, markersize=7, clip_on=False, zorder=5)
    axes[0].axhline(100 * (1 - TARGETS["oracle"]), color="0.4", linestyle=":", linewidth=1.2)
    axes[0].set_ylabel(lang.tr("scènes mal relues par l'oracle (%)", "scenes the oracle misreads (%)"),
                       fontsize=10)
    axes[1].set_ylabel("PSNR (dB)", fontsize=10)
    for ax in axes:
        ax.set_xlabel(lang.tr("pas d'entraînement", "training step"), fontsize=10)
        ax.tick_params(labelsize=MIN_TEXT_PT)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, frameon=False, fontsize=MIN_TEXT_PT)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig


# ----------------------------------------------------------------------------- tables

# Latent-diffusion autoencoders on natural images (Rombach et al., 2022, via ANCHORS.md).
LDM_PSNR = {"KL f4": 27.5, "VQ f4": 27.4, "VQ f16": 20.8}
# What the chapter quotes from DALL·E's paper (Ramesh et al., 2021): its images' side in pixels, and the
# weight of its dVAE's KL term (beta = 6.6, "promotes better codebook usage")
PUBLISHED = {"dalle_resolution": 256, "dalle_kl_weight": 6.6}
TARGETS = {"usage": 0.90, "oracle": 0.99}


def _percent(value) -> str:
    return "—" if value is None or value != value else lang.percent(value, 2)


def _num(value, digits: int = 1) -> str:
    return "—" if value is None or value != value else lang.number(value, digits)


def agreement(m: Mapping, n: int) -> str:
    """Oracle agreement on ``n`` scenes in percent, with its 95 % Wilson interval."""
    from text2image.evaluate.intervals import share
    from text2image.tables import interval

    value = m.get("oracle_agreement")
    return "–" if value is None else interval(share(round(value * n), n).as_dict(), 2)


def quality_table(measured: Mapping[str, dict], n: int):
    """PSNR, oracle agreement (with its 95 % interval over the ``n`` test scenes) and codebook statistics."""
    from text2image.tables import markdown_table

    headers = [lang.tr("modèle", "model"), "PSNR (dB)", lang.tr("accord de l'oracle (%)", "oracle agreement (%)"),
               lang.tr("codes utilisés", "codes in use"), lang.tr("perplexité", "perplexity")]
    rows = [[model_name(name), _num(m["psnr"]), agreement(m, n),
             _percent(m.get("codebook_usage")), _num(m.get("codebook_perplexity"), 0)]
            for name, m in measured.items()]
    return markdown_table(headers, rows)


def tokenizer_table(seen: int, codebook: int, grid: int):
    """DALL·E, DALL·E mini and our VQ-VAE side by side: resolution, grid, codebook, training images (``seen``)."""
    from text2image.tables import markdown_table

    headers = ["", "DALL·E (dVAE)", "DALL·E mini (VQGAN)", lang.tr("ce livre (VQ-VAE)", "this book (VQ-VAE)")]
    rows = [
        [lang.tr("résolution", "resolution"), f"{PUBLISHED['dalle_resolution']} px", "256 px", f"{RESOLUTION} px"],
        [lang.tr("grille de jetons", "token grid"), "32 × 32", "16 × 16", f"{grid} × {grid}"],
        [lang.tr("facteur de réduction", "downsampling factor"), "8", "16", str(RESOLUTION // grid)],
        [lang.tr("taille du dictionnaire", "codebook size"), lang.integer(8192), lang.integer(16384),
         lang.integer(codebook)],
        [lang.tr("images d'entraînement", "training images"),
         lang.tr("250 millions de paires texte-image", "250 million text-image pairs"),
         lang.tr("non précisé dans nos sources", "not stated in our sources"),
         lang.tr(f"{lang.integer(seen)} scènes, toutes différentes", f"{lang.integer(seen)} scenes, all different")],
    ]
    return markdown_table(headers, rows, align="llll")


def measured_table(measured: Mapping[str, dict], manifests: Mapping[str, dict], n: int):
    """The chapter's summary: size, quality (oracle agreement with its 95 % interval over ``n`` test scenes),
    codebook, and cost of each model."""
    from text2image.tables import markdown_table

    headers = [lang.tr("modèle", "model"), lang.tr("paramètres", "parameters"), "PSNR (dB)",
               lang.tr("accord oracle (%)", "oracle agr. (%)"), lang.tr("codes utilisés", "codes used"),
               lang.tr("perplexité", "perplexity"), lang.tr("images/s", "images/s"),
               lang.tr("minutes", "minutes")]
    rows = []
    for name, m in measured.items():
        man = manifests[name]
        rows.append([model_name(name), lang.integer(man["parameters"]), _num(m["psnr"]),
                     agreement(m, n), _percent(m.get("codebook_usage")),
                     _num(m.get("codebook_perplexity"), 0), _num(man["samples_per_second"], 0),
                     _num(man["train_seconds"] / 60, 1)])
    return markdown_table(headers, rows)


def error_table(errors: Mapping[str, dict]):
    """For each model, the share of test reconstructions by the first thing the oracle reads wrong."""
    from text2image.tables import markdown_table

    names = {"exact": lang.tr("scène exacte", "exact scene"), "count": lang.tr("nombre d'objets", "object count"),
             "colour": lang.tr("couleur", "colour"), "shape": lang.tr("forme", "shape"),
             "size": lang.tr("taille", "size"), "position": lang.tr("position", "position")}
    headers = [lang.tr("modèle", "model"), *(names[e] for e in ERRORS)]
    rows = [[model_name(name), *(_percent(shares.get(e)) for e in ERRORS)] for name, shares in errors.items()]
    return markdown_table(headers, rows)


FAKE_NAMES = {"reconstruction": ("reconstructions du VQ-VAE", "the VQ-VAE's reconstructions"),
              "blur": ("scènes floutées (3 × 3)", "blurred scenes (3 × 3)")}
SETTING_NAMES = {"autoencoder": ("réglages de l'auto-encodeur", "the autoencoder's settings"),
                 "taming": ("réglages de taming-transformers", "taming-transformers' settings")}


def discriminator_table(check: Mapping[str, Mapping[str, Mapping]]):
    """The discriminator trained alone: balanced accuracy (%) with its 95 % interval, per fake and setting."""
    from text2image.tables import interval, markdown_table

    settings = list(next(iter(check.values())))
    headers = [lang.tr("images à distinguer des vraies", "images told apart from real ones"),
               *(lang.tr(*SETTING_NAMES[s]) for s in settings)]
    rows = [[lang.tr(*FAKE_NAMES[kind]), *(interval(by[s]) for s in settings)] for kind, by in check.items()]
    return markdown_table(headers, rows)
