"""Figures and tables of the chapter "CLIP".

Every function draws one figure (and returns it) or builds one Markdown table;
words in figures go through ``lang.tr``. Captions of the world stay in English:
they are what the model reads.
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
from text2image.evaluate import clip as clip_eval
from text2image.charts.world import colour_name, shape_name
from text2image.plots import show_image, subplots, wrap
from text2image.tables import markdown_table
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


def model_name(name: str) -> str:
    return lang.tr(*MODEL_NAMES[name])


def attribute_name(attribute: str) -> str:
    return lang.tr(*ATTRIBUTE_NAMES[attribute])


def probe_name(kind: str) -> str:
    return lang.tr(*PROBE_NAMES[kind])


def label_name(attribute: str, label: str) -> str:
    if attribute == "shape":
        return shape_name(label)
    if attribute == "colour":
        return colour_name(label)
    if attribute == "size":
        return lang.tr(SIZE_FR[label], label)
    return lang.tr(NUMBER_FR[label], label)




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


def training_curves(histories: Mapping[str, tuple[list[dict], list[dict]]], init_gap: float):
    """Loss, modality gap, zero-shot shape accuracy and probe accuracy against the training step."""
    fig, axes = subplots(2, 2, figsize=(10, 6.6))
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
    axes[3].legend(handles=styles, fontsize=8, loc="lower right")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncol=len(histories), fontsize=9,
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
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


def rise_clause(step: int | None) -> str:
    """The clause of the prose saying when zero-shot shape passed twice chance (if it ever did)."""
    if step is None:
        return lang.tr("elle n'a jamais dépassé le double du hasard", "it never passed twice chance")
    return lang.tr(f"elle n'a dépassé le double du hasard qu'au pas {lang.integer(step)}",
                   f"it passed twice chance only at step {lang.integer(step)}")


def first_step_above(evals: Sequence[dict], key: str, level: float) -> int | None:
    """The first evaluated training step at which ``key`` exceeds ``level`` (``None`` if it never does)."""
    return next((e["step"] for e in evals if e[key] > level), None)


def steps_to_reach(evals: Sequence[dict], key: str, level: float, first_step: int) -> int | None:
    """How many steps of a fine-tuning (starting at ``first_step``) ``key`` took to exceed ``level``."""
    step = first_step_above(evals, key, level)
    return None if step is None else step - first_step


def reach_sentence(steps: Mapping[str, int | None], level: float) -> str:
    """The prose's sentence on how many fine-tuning steps each recipe took to pass ``level`` on the relation probe."""
    clauses = []
    for k, (name, n) in enumerate(steps.items()):
        model = lang.tr(f"«\u00a0{model_name(name)}\u00a0»", f"“{model_name(name)}”")
        if n is None:
            clauses.append(lang.tr(f"jamais pour {model}", f"never for {model}"))
        elif k == 0:
            clauses.append(lang.tr(f"après {lang.integer(n)}\u00a0pas d'affinage pour {model}",
                                   f"after {lang.integer(n)} steps of fine-tuning for {model}"))
        else:
            clauses.append(lang.tr(f"après {lang.integer(n)} pour {model}", f"after {lang.integer(n)} for {model}"))
    joined = clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + lang.tr(" et ", " and ") + clauses[-1]
    return lang.tr(f"Sur la validation, le test des relations a dépassé {lang.percent(level, 0)} {joined}.",
                   f"On the validation set, the relation probe passed {lang.percent(level, 0)} {joined}.")


def confusions(report: Mapping[str, dict]):
    """One confusion matrix (shares of each true class) per attribute."""
    attributes = list(report)
    fig, axes = subplots(1, len(attributes), figsize=(3.6 * len(attributes), 3.9))
    for ax, attribute in zip(np.ravel(axes), attributes):
        r = report[attribute]
        counts = np.asarray(r["confusion"], dtype=float)
        shares = counts / np.maximum(1, counts.sum(axis=1, keepdims=True))
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        names = [label_name(attribute, x) for x in r["labels"]]
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.grid(False)
        for i in range(len(names)):
            for j in range(len(names)):
                if counts[i, j]:
                    ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=7,
                            color="white" if shares[i, j] > 0.5 else "black")
        ax.set_title(f"{attribute_name(attribute)}\u00a0: {lang.percent(r['accuracy'], 1)}" if lang.current() == "fr"
                     else f"{attribute_name(attribute)}: {lang.percent(r['accuracy'], 1)}", fontsize=10)
        ax.set_xlabel(lang.tr("prédit", "predicted"), fontsize=9)
        ax.set_ylabel(lang.tr("vrai", "true"), fontsize=9)
    fig.tight_layout()
    return fig


def template_name(family: str) -> str:
    """A prompt family as the figures show it: the bare label and the ensembles in words, the frames as written."""
    named = {"{}": ("étiquette seule", "bare label"), "ensemble": ("ensemble", "ensemble"),
             "ensemble + frames": ("ensemble + tournures", "ensemble + frames")}
    return lang.tr(*named[family]) if family in named else family.replace("{}", "…")


def template_chart(report: Mapping[str, dict]):
    """Zero-shot accuracy per prompt family (bars), one group per attribute."""
    attributes = list(report)
    fig, axes = subplots(1, len(attributes), figsize=(3.4 * len(attributes), 3.8), sharey=True)
    for ax, attribute in zip(np.ravel(axes), attributes):
        by = report[attribute]["by_template"]
        names = list(by)
        values = [by[n] for n in names]
        colours = ["#999999" if n == "{}" else "#377eb8" if "ensemble" not in n else "#e41a1c" for n in names]
        ax.bar(range(len(names)), values, color=colours)
        ax.set_xticks(range(len(names)), [template_name(n) for n in names], rotation=50, ha="right", fontsize=8)
        ax.set_title(attribute_name(attribute))
        ax.set_ylim(0, 1.05)
        chance = 1 / len(report[attribute]["labels"])
        ax.axhline(chance, color="grey", ls=":", lw=0.8)
    np.ravel(axes)[0].set_ylabel(lang.tr("exactitude zero-shot", "zero-shot accuracy"))
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- ranking

def ranking_examples(pool: clip_eval.Pool, ranking: dict, n: int = 4):
    """Images with their three candidate captions and CLIP's cosine similarities."""
    fig, axes = subplots(1, n, figsize=(3.3 * n, 4.2))
    for ax, k in zip(np.ravel(axes), range(n)):
        i = ranking["images"][k]
        show_image(ax, pool.images[i])
        lines = []
        for name, caption, score in zip(("match", "partial", "unrelated"), ranking["triples"][k],
                                        ranking["scores"][k]):
            colon = lang.tr("\u00a0:", ":")
            lines.append(f"{lang.tr(*RANKING_NAMES[name])} ({lang.number(float(score), 2)}){colon}\n"
                         + wrap(caption, 30))
        ax.set_xlabel("\n".join(lines), fontsize=7.5, loc="left")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- bag of words

def probe_chart(results: Mapping[str, dict]):
    """Probe accuracies, zero-shot and retrieval of each model, side by side."""
    names = list(results)
    metrics = [("probe", k) for k in clip_eval.PROBES] + [("zero_shot", "shape"), ("zero_shot", "colour"),
                                                           ("retrieval", "t2i_r1"), ("retrieval", "i2t_r1")]
    labels = [probe_name(k) for k in clip_eval.PROBES] + [
        lang.tr("zero-shot forme", "zero-shot shape"), lang.tr("zero-shot couleur", "zero-shot colour"),
        lang.tr("texte → image R@1", "text → image R@1"), lang.tr("image → texte R@1", "image → text R@1")]
    fig, ax = subplots(figsize=(9, 3.8))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        r = results[name]
        values = [r["probe"][m] if group == "probe" else r["zero_shot"][m]["accuracy"] if group == "zero_shot"
                  else r["retrieval"][m] for group, m in metrics]
        ax.bar(np.arange(len(metrics)) + (k - (len(names) - 1) / 2) * width, values, width,
               color=COLOURS.get(name), label=model_name(name))
    ax.axhline(0.5, color="grey", ls=":", lw=0.8)
    ax.axvline(2.5, color="black", lw=0.6)
    ax.set_xticks(range(len(metrics)), labels, rotation=25, ha="right", fontsize=9)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(lang.tr("exactitude", "accuracy"))
    ax.legend(fontsize=9, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(names), frameon=False)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- geometry

def _pca2(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T


def gap_scatter(models: Mapping[str, torch.nn.Module], pool: clip_eval.Pool, n: int = 300):
    """Unit image and text embeddings projected on their first two principal axes, per model."""
    from text2image.models import clip as M

    fig, axes = subplots(1, len(models), figsize=(4.2 * len(models), 4.0))
    sub = pool.subset(range(min(n, len(pool))))
    for ax, (title, model) in zip(np.ravel(axes), models.items()):
        zi, zt = M.embed_images(model, sub.images), M.embed_texts(model, sub.captions)
        xy = _pca2(torch.cat([zi, zt]).numpy())
        ax.scatter(*xy[:len(zi)].T, s=6, alpha=0.6, color="#ff7f00", label=lang.tr("images", "images"))
        ax.scatter(*xy[len(zi):].T, s=6, alpha=0.6, color="#377eb8", label=lang.tr("légendes", "captions"))
        gap = clip_eval.modality_gap(zi, zt)
        ax.set_title(f"{title}\n{lang.tr('écart', 'gap')} = {lang.number(gap, 2)}", fontsize=10)
        ax.set_xlabel(lang.tr("axe principal 1", "principal axis 1"))
        ax.set_ylabel(lang.tr("axe principal 2", "principal axis 2"))
    np.ravel(axes)[0].legend(fontsize=8, markerscale=2)
    fig.tight_layout()
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
    fig, axes = subplots(1, len(series), figsize=(3.2 * len(series), 3.2))
    for ax, (title, x) in zip(np.ravel(axes), series.items()):
        norms = x.norm(dim=-1).numpy()
        ax.hist(norms, bins=30, color="#4daf4a")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(lang.tr("norme", "norm"), fontsize=9)
        shift = float(x.mean(0).norm() / x.norm(dim=-1).mean())
        cv = float(norms.std() / norms.mean())
        ax.text(0.02, 0.97, lang.tr(f"écart-type relatif {lang.percent(cv, 0)}\ncentre à {lang.percent(shift, 0)}",
                                    f"relative spread {lang.percent(cv, 0)}\ncentre at {lang.percent(shift, 0)}"),
                transform=ax.transAxes, va="top", fontsize=8)
    fig.tight_layout()
    return fig


def slerp_chart(path: Sequence[dict], pool: clip_eval.Pool):
    """Each point of a spherical path, decoded by retrieval: nearest image and nearest caption."""
    fig, axes = subplots(1, len(path), figsize=(1.9 * len(path), 3.2))
    for ax, point in zip(np.ravel(axes), path):
        show_image(ax, pool.images[point["image"]])
        ax.set_title(f"t = {lang.number(point['t'], 2)}", fontsize=9)
        ax.set_xlabel(wrap(point["captions"][0], 16), fontsize=7.5)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- tables

def zero_shot_table(results: Mapping[str, dict]):
    """Zero-shot accuracy per attribute (rows) and model (columns)."""
    names = list(results)
    headers = [lang.tr("attribut", "attribute")] + [model_name(n) for n in names] + [lang.tr("hasard", "chance")]
    rows = []
    for attribute in clip_eval.ATTRIBUTES:
        first = results[names[0]]["zero_shot"][attribute]
        rows.append([f"{attribute_name(attribute)} ({lang.integer(first['n'])} images)"]
                    + [lang.percent(results[n]["zero_shot"][attribute]["accuracy"], 1) for n in names]
                    + [lang.percent(1 / len(first["labels"]), 1)])
    return markdown_table(headers, rows)


def comparison_table(results: Mapping[str, dict]):
    """Probe, ranking and retrieval of each model."""
    names = list(results)
    headers = [lang.tr("mesure", "measure")] + [model_name(n) for n in names]
    rows = []
    for kind in clip_eval.PROBES:
        rows.append([lang.tr(f"sac de mots\u00a0: {probe_name(kind)}", f"bag of words: {probe_name(kind)}")]
                    + [lang.percent(results[n]["probe"][kind], 1) for n in names])
    rows.append([lang.tr("classement des trois légendes", "three captions ranked right")]
                + [lang.percent(results[n]["ranking"]["order"], 1) for n in names])
    for key, fr, en in (("t2i_r1", "texte → image, R@1", "text → image, R@1"),
                        ("t2i_r5", "texte → image, R@5", "text → image, R@5"),
                        ("i2t_r1", "image → texte, R@1", "image → text, R@1"),
                        ("i2t_r5", "image → texte, R@5", "image → text, R@5")):
        rows.append([lang.tr(fr, en)] + [lang.percent(results[n]["retrieval"][key], 1) for n in names])
    return markdown_table(headers, rows)


def measured_table(results: Mapping[str, dict], manifests: Mapping[str, dict], init_geometry: Mapping[str, float]):
    """The chapter's closing table: every recipe side by side, with the published reference where there is one."""
    names = list(results)
    pct = lambda x: lang.percent(x, 1)  # noqa: E731

    def row(fr: str, en: str, cell, reference: str = "—") -> list[str]:
        return [lang.tr(fr, en), *(cell(n) for n in names), reference]

    headers = [lang.tr("mesure", "measure"), *(model_name(n) for n in names),
               lang.tr("référence publiée", "published reference")]
    rows = [
        row("paramètres", "parameters", lambda n: lang.integer(manifests[n]["parameters"])),
        row("entraînement (minutes, CPU)", "training (minutes, CPU)",
            lambda n: lang.number(manifests[n]["train_seconds"] / 60, 1)),
        row("débit (paires par seconde)", "throughput (pairs per second)",
            lambda n: lang.integer(manifests[n]["samples_per_second"])),
    ]
    for attribute in clip_eval.ATTRIBUTES:
        rows.append(row(f"zero-shot\u00a0: {attribute_name(attribute)}", f"zero-shot: {attribute_name(attribute)}",
                        lambda n: pct(results[n]["zero_shot"][attribute]["accuracy"])))
    for family, fr, en, ref in (
            ("{}", "taille, étiquette seule", "size, bare label", "—"),
            ("ensemble + frames", "taille, ensemble + tournures", "size, ensemble + frames",
             lang.tr("gabarit\u00a0: +1,3 point\u00a0; 80 gabarits\u00a0: +3,5 (ImageNet)",
                     "template: +1.3 points; 80 templates: +3.5 (ImageNet)"))):
        rows.append(row(fr, en, lambda n: pct(results[n]["zero_shot"]["size"]["by_template"][family]), ref))
    rows.append(row("trois légendes bien classées", "three captions ranked right",
                    lambda n: pct(results[n]["ranking"]["order"])))
    for key, fr, en in (("t2i_r1", "texte → image, R@1", "text → image, R@1"),
                        ("i2t_r1", "image → texte, R@1", "image → text, R@1")):
        rows.append(row(fr, en, lambda n: pct(results[n]["retrieval"][key])))
    refs = {"relation": lang.tr("ARO VG-Relation\u00a0: 0,59 → 0,81 (NegCLIP)", "ARO VG-Relation: 0.59 → 0.81 (NegCLIP)"),
            "attribute": lang.tr("ARO VG-Attribution\u00a0: 0,62 → 0,71", "ARO VG-Attribution: 0.62 → 0.71"),
            "exchange": "—"}
    for kind in clip_eval.PROBES:
        rows.append(row(f"sac de mots\u00a0: {probe_name(kind)}", f"bag of words: {probe_name(kind)}",
                        lambda n: pct(results[n]["probe"][kind]), refs[kind]))
    rows.append(row("écart entre modalités (initialisation\u00a0: " + lang.number(init_geometry["gap"], 2) + ")",
                    "modality gap (initialisation: " + lang.number(init_geometry["gap"], 2) + ")",
                    lambda n: lang.number(results[n]["geometry"]["gap"], 2),
                    lang.tr("0,82 (CLIP, Liang et al.)", "0.82 (CLIP, Liang et al.)")))
    return markdown_table(headers, rows, align="l" + "r" * len(names) + "l")


def real_weights_note(pool, limit: int = 500) -> str:
    """One sentence for the real-weights section: CLIP ViT-B/32's ranking on our images, or why it did not run."""
    if not pretrained.clip_available():
        return lang.tr(
            "Les poids de openai/clip-vit-base-patch32 ne sont pas sur cette machine\u00a0: cette section n'a pas été exécutée.",
            "The weights of openai/clip-vit-base-patch32 are not on this machine: this section was not run.")
    model, processor = pretrained.load_clip()
    order = pretrained.world_caption_ranking(model, processor, pool.subset(range(min(limit, len(pool)))))["order"]
    return lang.tr(
        f"Sur nos images, CLIP ViT-B/32 range les trois légendes dans le bon ordre pour {lang.percent(order, 1)} d'entre elles.",
        f"On our images, CLIP ViT-B/32 puts the three captions in the right order for {lang.percent(order, 1)} of them.")
