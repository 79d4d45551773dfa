"""Figures and tables of the chapter "CLIP".

Every function draws one figure (and returns it) or builds one Markdown table;
words in figures go through ``lang.tr``. Captions of the world stay in English:
they are what the model reads. Tables give every measured proportion with its
95 % Wilson interval (:func:`text2image.evaluate.clip.share_of`); the numbers
the chapter quotes from papers live in :data:`PUBLISHED`, with their source.
Sentences stay in the chapter: these helpers return figures, tables, numbers
and words.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.lines import Line2D

from text2image import lang, pretrained, recipes
from text2image.charts import diagrams
from text2image.charts.world import colour_name, shape_name
from text2image.evaluate import clip as clip_eval
from text2image.evaluate import intervals
from text2image.plots import MIN_TEXT_PT, WIDTH, show_image, subplots, wrap
from text2image.tables import interval, markdown_table
from text2image.train import read_log
from text2image.world.scene import SHAPES

MODEL_NAMES = {"clip": ("CLIP de base", "baseline CLIP"),
               "clip-continued": ("CLIP prolongé", "CLIP, trained longer"),
               "clip-negatives": ("CLIP + négatifs difficiles", "CLIP + hard negatives"),
               "clip-relation-twins": ("CLIP + négatifs + jumeaux de relation", "CLIP + negatives + relation twins")}
ATTRIBUTE_NAMES = {"shape": ("forme", "shape"), "colour": ("couleur", "colour"), "size": ("taille", "size"),
                   "count": ("nombre", "count")}
PROBE_NAMES = {"relation": ("relation inversée", "relation reversed"),
               "attribute": ("attributs échangés", "attributes swapped"),
               "exchange": ("objets permutés", "objects exchanged")}
SIZE_FR = {"small": "petit", "large": "grand"}
NUMBER_FR = {"two": "deux", "three": "trois", "four": "quatre"}
RANKING_NAMES = {"match": ("correspond", "matching"), "partial": ("en partie", "partly"),
                 "unrelated": ("sans rapport", "unrelated")}
COLOURS = {"clip": "#377eb8", "clip-continued": "#984ea3", "clip-negatives": "#e41a1c",
           "clip-relation-twins": "#4daf4a"}
SPLIT_NAMES = {"test": ("test", "test"), "heldout_pairs": ("paires réservées", "held-out pairs"),
               "heldout_relations": ("relations réservées", "held-out relations")}

# What the chapter quotes from papers, each with its source (the chapter cites them by name).
PUBLISHED = {
    # Radford et al. (2021): ImageNet zero-shot, "A photo of a {label}." over the bare label, and an
    # ensemble of 80 templates over that; CLIP's training set
    "template_gain": 1.3, "ensemble_gain": 3.5, "ensemble_templates": 80, "clip_pairs": 400_000_000,
    # Yuksekgonul et al. (2023), ARO: CLIP ViT-B/32 and NegCLIP, chance 0.5
    "vg_relation": {"clip": 0.59, "negclip": 0.81}, "vg_attribution": {"clip": 0.62, "negclip": 0.71},
    "aro_chance": 0.5,
    # Liang et al. (2022): the modality gap of CLIP
    "gap": 0.82,
    # the NegCLIP repository (mertyg/vision-language-models-are-bows): its training batch of COCO pairs
    "negclip_batch": 256,
    # the student report behind the book: its caption-ranking protocol on COCO
    "report_images": 100,
}


def model_name(name: str) -> str:
    return lang.tr(*MODEL_NAMES[name])


def attribute_name(attribute: str) -> str:
    return lang.tr(*ATTRIBUTE_NAMES[attribute])


def probe_name(kind: str) -> str:
    return lang.tr(*PROBE_NAMES[kind])


def split_name(split: str) -> str:
    return lang.tr(*SPLIT_NAMES[split])


def share_cell(share) -> str:
    """``95.3 (93.1–96.9)``: a measured share in percent and its 95 % interval."""
    return interval(share.as_dict())


def share_text(share) -> str:
    """``95.3 % (93.1–96.9)``: a measured share as the prose quotes it, with its 95 % interval in points."""
    lo, hi = (lang.number(100 * x, 1) for x in (share.lo, share.hi))
    return lang.Text(f"{lang.percent(share.p, 1)} ({lo}\u2060–\u2060{hi})")


def label_name(attribute: str, label: str) -> str:
    if attribute == "shape":
        return shape_name(label)
    if attribute == "colour":
        return colour_name(label)
    if attribute == "size":
        return lang.tr(SIZE_FR[label], label)
    return lang.tr(NUMBER_FR[label], label)




# ----------------------------------------------------------------------------- architecture

def architecture(model, recipe: Mapping):
    """The two towers and the B x B similarities of the first training batch of ``recipe``, every shape read by
    running ``model`` on it (:func:`text2image.charts.diagrams.clip_diagram`)."""
    return diagrams.clip_diagram(model, recipe)


# ----------------------------------------------------------------------------- training

def history(name: str, profile: str | None = None) -> tuple[list[dict], list[dict]]:
    """The shipped training log (rows of log.csv) and evaluation history (eval.json) of a checkpoint.

    Steps are counted from the start of the baseline: a fine-tuned recipe
    (``first_step`` in its recipe) continues where its baseline stopped.
    """
    folder = recipes.checkpoint_folder(name, profile or _profile())
    log = read_log(folder) if (folder / "log.csv").is_file() else []
    evals = json.loads((folder / "eval.json").read_text()) if (folder / "eval.json").is_file() else []
    manifest = folder / "manifest.json"
    offset = json.loads(manifest.read_text())["recipe"]["extra"].get("first_step", 0) if manifest.is_file() else 0
    shift = lambda rows: [{**r, "step": r["step"] + offset} for r in rows]  # noqa: E731
    return shift(log), shift(evals)


def _profile() -> str:
    from text2image import profiles
    return profiles.current()


PROBE_STYLES = {"relation": "-", "attribute": "--"}
SMALL = MIN_TEXT_PT  # the smallest font size of the chapter's figures, drawn WIDTH wide (plots.py's rule)


def _grid(n: int, columns: int = 2):
    """Rows and columns for ``n`` panels, ``columns`` to a row."""
    return -(-n // columns), min(n, columns)


def training_curves(histories: Mapping[str, tuple[list[dict], list[dict]]], init_gap: float):
    """Loss, modality gap, zero-shot shape accuracy and probe accuracy against the training step."""
    fig, axes = subplots(2, 2, figsize=(WIDTH, 6.4))
    axes = np.ravel(axes)
    for name, (log, evals) in histories.items():
        colour = COLOURS[name]
        if log:
            axes[0].plot([r["step"] for r in log], [r["loss"] for r in log], color=colour, lw=1.2,
                         label=model_name(name))
        first = [] if name != "clip" else [0]
        axes[1].plot(first + [e["step"] for e in evals], [init_gap] * len(first) + [e["gap"] for e in evals], "o-",
                     color=colour, ms=3, label=model_name(name))
        axes[2].plot([e["step"] for e in evals], [e["zero_shot_shape"] for e in evals], "o-", color=colour, ms=3,
                     label=model_name(name))
        for kind, style in PROBE_STYLES.items():
            axes[3].plot([e["step"] for e in evals], [e[f"probe_{kind}"] for e in evals], style, color=colour,
                         marker="o", ms=3)
    axes[0].set_title(lang.tr("perte contrastive", "contrastive loss"))
    axes[1].set_title(lang.tr("écart entre modalités", "modality gap"))
    axes[2].set_title(lang.tr("forme sans exemple (validation)", "zero-shot shape (validation)"))
    axes[2].axhline(1 / len(SHAPES), color="grey", lw=0.8, ls=":")
    axes[2].set_ylim(0, 1.02)
    axes[3].set_title(lang.tr("test sac de mots (validation)", "bag-of-words probe (validation)"))
    axes[3].axhline(0.5, color="grey", lw=0.8, ls=":")
    axes[3].set_ylim(0.0, 1.02)
    for ax in axes:
        ax.set_xlabel(lang.tr("pas d'entraînement", "training step"))
    # colours name the recipes (one legend above the panels), line styles the probes
    styles = [Line2D([], [], color="black", ls=style, lw=1.2, label=probe_name(kind))
              for kind, style in PROBE_STYLES.items()]
    axes[3].legend(handles=styles, fontsize=SMALL, loc="lower right")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncol=2, fontsize=SMALL,
               frameon=False)
    for ax in axes:
        ax.title.set_fontsize(10)
        ax.xaxis.label.set_fontsize(SMALL)
        ax.tick_params(labelsize=SMALL)
    fig.tight_layout(rect=(0, 0, 1, 0.91))
    return fig


# ----------------------------------------------------------------------------- zero-shot

def worst_confusion(report: Mapping[str, dict], attribute: str) -> tuple[str, str, float]:
    """The most frequent mistake of a zero-shot report: (true class, class predicted, share of the true class)."""
    counts = np.asarray(report[attribute]["confusion"], dtype=float)
    shares = counts / np.maximum(1, counts.sum(axis=1, keepdims=True))
    np.fill_diagonal(shares, 0)
    i, j = np.unravel_index(int(shares.argmax()), shares.shape)
    labels = report[attribute]["labels"]
    return label_name(attribute, labels[i]), label_name(attribute, labels[j]), float(shares[i, j])


def first_step_above(evals: Sequence[dict], key: str, level: float) -> int | None:
    """The first evaluated training step at which ``key`` exceeds ``level`` (``None`` if it never does)."""
    return next((e["step"] for e in evals if e[key] > level), None)


def steps_to_reach(evals: Sequence[dict], key: str, level: float, first_step: int) -> int | None:
    """How many steps of a fine-tuning (starting at ``first_step``) ``key`` took to exceed ``level``."""
    step = first_step_above(evals, key, level)
    return None if step is None else step - first_step


def plateau(evals: Sequence[dict], key: str, level: float, first_step: int = 0) -> dict:
    """The evaluations before ``key`` first exceeds ``level``: how many, their lowest and highest
    value, the last step among them, and the ``steps`` it covers from ``first_step`` (what a curve
    did before it took off)."""
    before = []
    for e in evals:
        if e[key] > level:
            break
        before.append(e)
    values = [e[key] for e in before]
    return {"n": len(before), "low": min(values, default=float("nan")),
            "high": max(values, default=float("nan")), "last_step": before[-1]["step"] if before else None,
            "steps": before[-1]["step"] - first_step if before else None}


def steps(n: int | None) -> str:
    """A number of steps for the prose, or a dash where a curve never got there (the smoke profile)."""
    return lang.Text("—") if n is None else lang.integer(n)


def claim(holds: bool, what: str) -> None:
    """Check, on the trained models, a statement that the chapter's prose makes about its numbers.

    The prose is written once for the shipped checkpoints; a retrained model
    that no longer supports it stops the render here rather than let the text
    say something false. The smoke profile's models are untrained (its figures
    mean nothing), so there the check is skipped.
    """
    from text2image import profiles

    if profiles.current() != "smoke" and not holds:
        raise AssertionError(f"the chapter says that {what}, which its measurements no longer support")


def threads(manifest: Mapping) -> int:
    """The processor threads a checkpoint was trained with (its manifest's ``hardware``: "..., 1 threads")."""
    return int(manifest["hardware"].rsplit(",", 1)[1].split()[0])


def confusions(report: Mapping[str, dict]):
    """One confusion matrix (shares of each true class) per attribute."""
    attributes = list(report)
    fig, axes = subplots(*_grid(len(attributes)), figsize=(WIDTH, 6.6))
    for ax, attribute in zip(np.ravel(axes), attributes):
        r = report[attribute]
        counts = np.asarray(r["confusion"], dtype=float)
        shares = counts / np.maximum(1, counts.sum(axis=1, keepdims=True))
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        names = [label_name(attribute, x) for x in r["labels"]]
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=SMALL)
        ax.set_yticks(range(len(names)), names, fontsize=SMALL)
        ax.grid(False)
        for i in range(len(names)):
            for j in range(len(names)):
                if counts[i, j]:
                    ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=SMALL,
                            color="white" if shares[i, j] > 0.5 else "black")
        ax.set_title(f"{attribute_name(attribute)}\u00a0: {lang.percent(r['accuracy'], 1)}" if lang.current() == "fr"
                     else f"{attribute_name(attribute)}: {lang.percent(r['accuracy'], 1)}", fontsize=10)
        ax.set_xlabel(lang.tr("prédit", "predicted"), fontsize=SMALL)
        ax.set_ylabel(lang.tr("vrai", "true"), fontsize=SMALL)
    fig.tight_layout()
    return fig


def template_name(family: str) -> str:
    """A prompt family as the figures show it: the bare label and the ensembles in words, the frames as written."""
    named = {"{}": ("étiquette seule", "bare label"), "ensemble": ("ensemble", "ensemble"),
             "ensemble + frames": ("ensemble + tournures", "ensemble + frames")}
    return lang.tr(*named[family]) if family in named else family.replace("{}", "…")


def template_chart(report: Mapping[str, dict]):
    """Zero-shot accuracy per prompt family (bars, with 95 % intervals), one group per attribute."""
    attributes = list(report)
    fig, axes = subplots(*_grid(len(attributes)), figsize=(WIDTH, 7.0), sharey=True)
    for ax, attribute in zip(np.ravel(axes), attributes):
        by = report[attribute]["by_template"]
        names = list(by)
        shares = [clip_eval.share_of({"zero_shot": report}, "zero_shot", attribute, family) for family in names]
        values = np.array([s.p for s in shares])
        err = np.clip([[s.p - s.lo for s in shares], [s.hi - s.p for s in shares]], 0, None)
        colours = ["#999999" if n == "{}" else "#377eb8" if "ensemble" not in n else "#e41a1c" for n in names]
        ax.bar(range(len(names)), values, color=colours, yerr=err, capsize=2, error_kw={"lw": 0.8})
        ax.set_xticks(range(len(names)), [template_name(n) for n in names], rotation=50, ha="right",
                      fontsize=SMALL)
        ax.tick_params(axis="y", labelsize=SMALL)
        ax.set_title(attribute_name(attribute), fontsize=10)
        ax.set_ylim(0, 1.05)
        chance = 1 / len(report[attribute]["labels"])
        ax.axhline(chance, color="grey", ls=":", lw=0.8)
    for ax in np.ravel(axes)[::2]:
        ax.set_ylabel(lang.tr("exactitude sans exemple", "zero-shot accuracy"), fontsize=SMALL)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- ranking

def ranking_examples(pool: clip_eval.Pool, ranking: dict, n: int = 4):
    """Images with their three candidate captions and CLIP's cosine similarities, one image a row."""
    fig, axes = subplots(n, 2, figsize=(WIDTH, 1.55 * n), gridspec_kw={"width_ratios": [1, 3.6]})
    colon = lang.tr("\u00a0:", ":")
    for k, (image_ax, text_ax) in enumerate(np.reshape(axes, (n, 2))):
        show_image(image_ax, pool.images[ranking["images"][k]])
        text_ax.axis("off")
        lines = []
        for name, caption, score in zip(("match", "partial", "unrelated"), ranking["triples"][k],
                                        ranking["scores"][k]):
            head = f"{lang.tr(*RANKING_NAMES[name])} ({lang.number(float(score), 2)}){colon} "
            lines.append(wrap(head + caption, 62))
        text_ax.text(0, 0.5, "\n".join(lines), fontsize=SMALL, va="center", ha="left",
                     transform=text_ax.transAxes)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- bag of words

PROBE_CHART_METRICS = [("probe", k) for k in clip_eval.PROBES] + [
    ("zero_shot", "shape"), ("zero_shot", "colour"), ("retrieval", "t2i_r1"), ("retrieval", "i2t_r1")]


def probe_chart(results: Mapping[str, dict]):
    """Probe accuracies, zero-shot and retrieval of each model, side by side, with 95 % intervals."""
    names = list(results)
    labels = [probe_name(k) for k in clip_eval.PROBES] + [
        lang.tr("forme sans exemple", "zero-shot shape"), lang.tr("couleur sans exemple", "zero-shot colour"),
        lang.tr("texte → image R@1", "text → image R@1"), lang.tr("image → texte R@1", "image → text R@1")]
    fig, ax = subplots(figsize=(WIDTH, 4.4))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        shares = [clip_eval.share_of(results[name], group, key) for group, key in PROBE_CHART_METRICS]
        values = np.array([s.p for s in shares])
        err = np.clip([[s.p - s.lo for s in shares], [s.hi - s.p for s in shares]], 0, None)
        ax.bar(np.arange(len(shares)) + (k - (len(names) - 1) / 2) * width, values, width,
               yerr=err, capsize=1.5, error_kw={"lw": 0.8}, color=COLOURS.get(name), label=model_name(name))
    ax.axhline(0.5, color="grey", ls=":", lw=0.8)
    ax.axvline(len(clip_eval.PROBES) - 0.5, color="black", lw=0.6)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=SMALL)
    ax.tick_params(axis="y", labelsize=SMALL)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(lang.tr("exactitude", "accuracy"), fontsize=SMALL)
    ax.legend(fontsize=SMALL, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- geometry

def _pca2(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T


def gap_scatter(models: Mapping[str, torch.nn.Module], pool: clip_eval.Pool, n: int = 300):
    """Unit image and text embeddings projected on their first two principal axes, per model.

    The first ``n`` pairs are drawn; the gap in each title is measured on the whole
    pool, the number the chapter quotes.
    """
    from text2image.models import clip as M

    fig, axes = subplots(1, len(models), figsize=(WIDTH, 3.9))
    shown = min(n, len(pool))
    for ax, (title, model) in zip(np.ravel(axes), models.items()):
        zi, zt = M.embed_images(model, pool.images), M.embed_texts(model, pool.captions)
        xy = _pca2(torch.cat([zi[:shown], zt[:shown]]).numpy())
        ax.scatter(*xy[:shown].T, s=6, alpha=0.6, color="#ff7f00", label=lang.tr("images", "images"))
        ax.scatter(*xy[shown:].T, s=6, alpha=0.6, color="#377eb8", label=lang.tr("légendes", "captions"))
        gap = clip_eval.modality_gap(zi, zt)
        ax.set_title(f"{title}\n{lang.tr('écart', 'gap')} = {lang.number(gap, 2)}", fontsize=10)
        ax.set_xlabel(lang.tr("axe principal 1", "principal axis 1"), fontsize=SMALL)
        ax.set_ylabel(lang.tr("axe principal 2", "principal axis 2"), fontsize=SMALL)
        ax.tick_params(labelsize=SMALL)
    np.ravel(axes)[0].legend(fontsize=SMALL, markerscale=2)
    fig.text(0.5, 0.005, lang.tr(f"{lang.integer(shown)} paires dessinées\u00a0; écart mesuré sur "
                                 f"{lang.integer(len(pool))} paires",
                                 f"{lang.integer(shown)} pairs drawn; gap measured on {lang.integer(len(pool))} pairs"),
             ha="center", va="bottom", fontsize=SMALL)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


@torch.no_grad()
def norms_chart(model, pool: clip_eval.Pool, inner: int = 1):
    """Histograms of the norms of raw vectors: projected embeddings, and text states at [EOS] and at token ``inner``."""
    from text2image.models import clip as M

    enc = M.tokens(pool.captions)
    hidden, pooled = M.text_states(model, enc["input_ids"], enc["attention_mask"])
    series = {
        lang.tr("images (projetées)", "images (projected)"): M.embed_images(model, pool.images, normalize=False),
        lang.tr("légendes (projetées)", "captions (projected)"): model.text_projection(pooled),
        lang.tr("état du texte à [EOS]", "text state at [EOS]"): pooled,
        lang.tr(f"état du texte au jeton {inner}", f"text state at token {inner}"): hidden[:, inner],
    }
    fig, axes = subplots(*_grid(len(series)), figsize=(WIDTH, 5.6))
    for ax, (title, x) in zip(np.ravel(axes), series.items()):
        norms = x.norm(dim=-1).numpy()
        ax.hist(norms, bins=30, color="#4daf4a")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(lang.tr("norme", "norm"), fontsize=SMALL)
        ax.tick_params(labelsize=SMALL)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.35)  # room for the annotation
        shift = float(x.mean(0).norm() / x.norm(dim=-1).mean())
        cv = float(norms.std() / norms.mean())
        ax.text(0.02, 0.97, lang.tr(f"écart-type relatif {lang.percent(cv, 0)}\ncentre à {lang.percent(shift, 0)}",
                                    f"relative spread {lang.percent(cv, 0)}\ncentre at {lang.percent(shift, 0)}"),
                transform=ax.transAxes, va="top", fontsize=SMALL)
    fig.tight_layout()
    return fig


def slerp_chart(path: Sequence[dict], pool: clip_eval.Pool):
    """Each point of a spherical path, decoded by retrieval: nearest image and nearest caption."""
    columns = 4
    rows = -(-len(path) // columns)
    fig, axes = subplots(rows, columns, figsize=(WIDTH, 2.75 * rows))
    for ax in np.ravel(axes)[len(path):]:
        ax.set_visible(False)
    for ax, point in zip(np.ravel(axes), path):
        show_image(ax, pool.images[point["image"]])
        ax.set_title(f"t = {lang.number(point['t'], 2)}", fontsize=10)
        ax.set_xlabel(wrap(point["captions"][0], 18), fontsize=SMALL)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- tables

def zero_shot_table(results: Mapping[str, dict]):
    """Zero-shot accuracy per attribute (rows) and model (columns), with 95 % intervals."""
    names = list(results)
    headers = [lang.tr("attribut", "attribute")] + [model_name(n) for n in names] + [lang.tr("hasard", "chance")]
    rows = []
    for attribute in clip_eval.ATTRIBUTES:
        first = results[names[0]]["zero_shot"][attribute]
        rows.append([f"{attribute_name(attribute)} ({lang.integer(first['n'])} images)"]
                    + [share_cell(clip_eval.share_of(results[n], "zero_shot", attribute)) for n in names]
                    + [lang.number(100 / len(first["labels"]), 1)])
    return markdown_table(headers, rows)


def _probe_label(kind: str) -> str:
    return lang.tr(f"sac de mots\u00a0: {probe_name(kind)}", f"bag of words: {probe_name(kind)}")


RETRIEVAL_ROWS = (("t2i_r1", "texte → image, R@1", "text → image, R@1"),
                  ("t2i_r5", "texte → image, R@5", "text → image, R@5"),
                  ("i2t_r1", "image → texte, R@1", "image → text, R@1"),
                  ("i2t_r5", "image → texte, R@5", "image → text, R@5"))


def comparison_table(results: Mapping[str, dict]):
    """Probe, ranking and retrieval of each model, with 95 % intervals (and the number of items)."""
    names = list(results)
    headers = [lang.tr("mesure", "measure"), "n"] + [model_name(n) for n in names]
    rows = []

    def row(label: str, group: str, key: str) -> list[str]:
        shares = [clip_eval.share_of(results[n], group, key) for n in names]
        return [label, lang.integer(shares[0].n)] + [share_cell(s) for s in shares]

    for kind in clip_eval.PROBES:
        rows.append(row(_probe_label(kind), "probe", kind))
    rows.append(row(lang.tr("trois légendes bien classées", "three captions ranked right"), "ranking", "order"))
    for key, fr, en in RETRIEVAL_ROWS:
        rows.append(row(lang.tr(fr, en), "retrieval", key))
    return markdown_table(headers, rows)


def heldout_table(by_split: Mapping[str, Mapping[str, dict]]):
    """Every recipe on the test split and on the held-out compositions, with 95 % intervals.

    ``by_split``: ``{split: {recipe: analysis}}`` for ``test``, ``heldout_pairs`` and
    ``heldout_relations``. Zero-shot rows compare the same classes: the shapes
    (and colours) of the held-out pairs, on test images and on held-out images.
    Each measure is named on its first row; the split column gives the number of items.
    """
    test = by_split["test"]
    names = list(test)
    headers = ([lang.tr("mesure", "measure"), lang.tr("partition (n)", "split (n)")]
               + [model_name(n) for n in names])
    rows, named = [], set()

    def add(label: str, split: str, shares: list) -> None:
        where = f"{split_name(split)} ({lang.integer(shares[0].n)})"
        rows.append([label if label not in named else "", where] + [share_cell(s) for s in shares])
        named.add(label)

    for attribute in ("shape", "colour"):
        labels = clip_eval.heldout_labels(attribute)
        label = lang.tr(f"{attribute_name(attribute)} sans exemple", f"zero-shot {attribute_name(attribute)}")
        for split in ("test", "heldout_pairs"):
            add(label, split, [clip_eval.class_share(by_split[split][n]["zero_shot"], attribute, labels)
                               for n in names])
    measures = [(probe_name(kind), "probe", kind) for kind in clip_eval.PROBES]
    measures.append((lang.tr("trois légendes bien classées", "three captions ranked right"), "ranking", "order"))
    for label, group, key in measures:
        for split in ("test", "heldout_pairs", "heldout_relations"):
            add(label, split, [clip_eval.share_of(by_split[split][n], group, key) for n in names])
    return markdown_table(headers, rows, align="ll" + "r" * len(names))


def measured_table(results: Mapping[str, dict], manifests: Mapping[str, dict], init_geometry: Mapping[str, float]):
    """The chapter's closing table: every recipe side by side, with 95 % intervals, and the published
    reference, where there is one, beside the name of the measure."""
    names = list(results)
    pub = PUBLISHED

    def row(fr: str, en: str, cell, reference: str = "") -> list[str]:
        label = lang.tr(fr, en)
        return [f"{label} ({reference})" if reference else label, *(cell(n) for n in names)]

    def share(group: str, key: str):
        return lambda n: share_cell(clip_eval.share_of(results[n], group, key))

    def gap(n: str) -> str:
        g = results[n]["geometry"]
        return f"{lang.number(g['gap'], 2)} ({lang.number(g['gap_lo'], 2)}\u2060–\u2060{lang.number(g['gap_hi'], 2)})"

    headers = [lang.tr("mesure (référence publiée)", "measure (published reference)"),
               *(model_name(n) for n in names)]
    rows = [
        row("paramètres", "parameters", lambda n: lang.integer(manifests[n]["parameters"])),
        row("entraînement (minutes, processeur)", "training (minutes, CPU)",
            lambda n: lang.number(manifests[n]["train_seconds"] / 60, 1)),
        row("débit (paires par seconde)", "throughput (pairs per second)",
            lambda n: lang.integer(manifests[n]["samples_per_second"])),
    ]
    for attribute in clip_eval.ATTRIBUTES:
        rows.append(row(f"sans exemple\u00a0: {attribute_name(attribute)}",
                        f"zero-shot: {attribute_name(attribute)}", share("zero_shot", attribute)))
    gains = (lang.number(pub["template_gain"], 1), pub["ensemble_templates"], lang.number(pub["ensemble_gain"], 1))
    rows.append(row("sans exemple\u00a0: nombre, étiquette seule", "zero-shot: count, bare label",
                    lambda n: share_cell(clip_eval.share_of(results[n], "zero_shot", "count", "{}")),
                    lang.tr("CLIP sur ImageNet\u00a0: gabarit +{} point, {} gabarits +{} de plus".format(*gains),
                            "CLIP on ImageNet: template +{} points, {} templates +{} more".format(*gains))))
    rows.append(row("trois légendes bien classées", "three captions ranked right", share("ranking", "order")))
    for key, fr, en in RETRIEVAL_ROWS[::2]:
        rows.append(row(fr, en, share("retrieval", key)))
    num = lambda x: lang.number(x, 2)  # noqa: E731

    def aro(test: str) -> tuple[str, str]:
        key = {"VG-Relation": "vg_relation", "VG-Attribution": "vg_attribution"}[test]
        clip_, neg = num(pub[key]["clip"]), num(pub[key]["negclip"])
        return (f"ARO {test}\u00a0: CLIP {clip_}, NegCLIP {neg}", f"ARO {test}: CLIP {clip_}, NegCLIP {neg}")

    refs = {"relation": lang.tr(*aro("VG-Relation")), "attribute": lang.tr(*aro("VG-Attribution")),
            "exchange": ""}
    for kind in clip_eval.PROBES:
        rows.append(row(f"sac de mots\u00a0: {probe_name(kind)}", f"bag of words: {probe_name(kind)}",
                        share("probe", kind), refs[kind]))
    init = num(init_geometry["gap"])
    rows.append(row(f"écart entre modalités, initialisation à {init}", f"modality gap, {init} at initialisation",
                    gap, lang.tr(f"CLIP\u00a0: {num(pub['gap'])}, Liang et al.",
                                 f"CLIP: {num(pub['gap'])}, Liang et al.")))
    return markdown_table(headers, rows)


def real_weights_ranking(pool, limit: int = 500):
    """CLIP ViT-B/32's caption ranking on our images as a share with its interval, or ``None`` when
    the weights are not on this machine (nothing is downloaded)."""
    if not pretrained.clip_available():
        return None
    model, processor = pretrained.load_clip()
    result = pretrained.world_caption_ranking(model, processor, pool.subset(range(min(limit, len(pool)))))
    return intervals.share(int(round(result["order"] * result["n"])), result["n"])


def real_weights_result(share) -> str:
    """The measured share in words, or why there is none."""
    if share is None:
        return lang.tr("non mesuré, faute des poids sur cette machine",
                       "not measured, the weights are not on this machine")
    return share_text(share)
