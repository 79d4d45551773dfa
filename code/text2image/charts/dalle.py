"""Figures of the DALL·E chapter: image tokens, training on val, the sampler's knobs, CLIP reranking, candidates.

Every figure is at most :data:`WIDTH` inches wide with text of at least 9 pt,
so that it shows at its size in the book's column; the numbers come from
:mod:`text2image.recipes.dalle` and are only drawn here.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from text2image import lang
from text2image.charts.benchmark import CATEGORY_NAMES, category_share, interval_text, name, verdict_text
from text2image.plots import show_image, subplots, wrap
from text2image.tables import markdown_table

WIDTH = 6.8  # inches: the book's column at the figures' dpi
MODEL_NAMES = {"dalle": ("DALL·E", "DALL·E"), "dalle-mini": ("DALL·E mini", "DALL·E mini")}
MODEL_COLOURS = {"dalle": "#1b9e77", "dalle-mini": "#d95f02"}
# What the sweeps and the rerank curve plot: the thesis's categories, and their mean.
SHOWN = ("colours", "colour_attribution", "position", "overall")
SHOWN_STYLES = {"colours": "-", "colour_attribution": "--", "position": ":", "overall": "-."}
JUDGE_NAMES = {"clip": ("CLIP de base", "baseline CLIP"), "clip-negatives": ("CLIP à négatifs", "hard-negative CLIP"),
               "oracle": ("plafond (l'oracle choisit)", "ceiling (the oracle picks)")}
JUDGE_COLOURS = {"clip": "#7570b3", "clip-negatives": "#e7298a", "oracle": "#666666"}
DIVERSITY_COLOUR = "#999999"
# Published facts the chapter sets beside its measurements (Ramesh et al., 2021; dalle-mini's report and code;
# GenEval, Ghosh et al., 2023), as gathered in the project's ANCHORS.md.
PUBLISHED = {
    "dalle_reranked": 512,                 # DALL·E: CLIP reranks 512 samples per prompt
    "dalle_mini_candidates": (8, 128),     # dalle-mini: CLIP reranks 8 to 128 candidates
    "dalle_mini_guidance": (10, 16),       # dalle-mini's super-conditioning scale
    "sdxl_geneval": {"colours": 0.85, "colour_attribution": 0.23, "position": 0.15},
}


def model_name(model: str) -> str:
    return name(MODEL_NAMES, model)


def _quoted(prompt: str) -> str:
    return lang.quoted(prompt)


def tokens(examples: Sequence[Mapping]):
    """Per example: the scene and its caption, its 8 x 8 grid of codes written out, and what they decode to."""
    fig, axes = subplots(len(examples), 3, figsize=(WIDTH, 2.2 * len(examples)), squeeze=False,
                         gridspec_kw={"width_ratios": [1, 1.9, 1]})
    for row, example in zip(axes, examples):
        show_image(row[0], example["image"])
        row[0].set_title(wrap(_quoted(example["caption"]), 22), fontsize=9)
        codes = np.asarray(example["codes"])
        row[1].imshow(codes, cmap="Pastel1", interpolation="nearest", vmin=0, vmax=255, aspect="auto")
        for (i, j), code in np.ndenumerate(codes):
            row[1].text(j, i, str(code), ha="center", va="center", fontsize=9)
        row[1].set_xticks([])
        row[1].set_yticks([])
        row[1].grid(False)
        row[1].set_title(lang.tr("ses 64 codes, ligne par ligne", "its 64 codes, row by row"), fontsize=9)
        show_image(row[2], example["decoded"])
        row[2].set_title(lang.tr("les codes décodés", "the codes decoded"), fontsize=9)
    fig.tight_layout()
    return fig


def _line(ax, x, shares: Sequence[Mapping], **style) -> None:
    p = np.array([100 * s["p"] for s in shares])
    ax.plot(x, p, marker="o", markersize=3, **style)
    ax.fill_between(x, [100 * s["lo"] for s in shares], [100 * s["hi"] for s in shares], alpha=0.15,
                    color=style.get("color"))


def training(histories: Mapping[str, list[dict]]):
    """Per model, on val: the codes' cross-entropy, and the share of sampled images the oracle reads right."""
    fig, (loss, right) = subplots(1, 2, figsize=(WIDTH, 2.8))
    for model, evals in histories.items():
        steps = [e["step"] for e in evals]
        style = dict(color=MODEL_COLOURS[model], label=model_name(model), marker="o", markersize=3)
        loss.plot(steps, [e["val_image_loss"] for e in evals], **style)
        right.plot(steps, [100 * e["val_correct"] for e in evals], **style)
    loss.set_ylabel(lang.tr("entropie croisée des codes (nats)", "codes' cross-entropy (nats)"))
    right.set_ylabel(lang.tr("images correctes (%)", "correct images (%)"))
    right.set_ylim(0, 100)
    for ax in (loss, right):
        ax.set_xlabel(lang.tr("pas d'entraînement", "training step"))
    right.legend(frameon=False, fontsize=9)
    fig.tight_layout()
    return fig


def setting(value) -> str:
    """A sweep's setting as the book writes it: ``None`` (no cut) is "all", 0.95 keeps its two decimals."""
    if value is None:
        return lang.tr("tous", "all")
    if isinstance(value, float) and value != int(value):
        return lang.number(value, 1 if round(value, 1) == value else 2)
    return str(int(value))


def cut_text(value, symbol: str) -> str:
    """A top-k or top-p setting in prose: ``p = 0.95``, or "no cut" for ``None``."""
    if value is None:
        return lang.Text(lang.tr("aucune coupure", "no cut"))
    return lang.Text(f"{symbol} = {setting(value)}")


def sweep(curves: Mapping[str, Sequence[tuple[object, Mapping]]], knob_label: str,
          diversity: Mapping[str, Mapping[object, Mapping]] | None = None):
    """One panel per model: the shown categories against one knob of the sampler, each with its 95 % band,
    and (grey) the share of codes that differ between two draws of a prompt at each setting."""
    fig, axes = subplots(1, len(curves), figsize=(WIDTH, 3.3), sharey=True, squeeze=False)
    for ax, (model, points) in zip(axes[0], curves.items()):
        labels = [setting(v) for v, _ in points]
        x = np.arange(len(points))
        for category in SHOWN:
            _line(ax, x, [category_share(r, category) for _, r in points], linestyle=SHOWN_STYLES[category],
                  color="k" if category == "overall" else None, label=name(CATEGORY_NAMES, category))
        if diversity:
            ax.plot(x, [100 * diversity[model][v]["pixels_differ"] for v, _ in points], color=DIVERSITY_COLOUR,
                    linewidth=3,
                    alpha=0.8, label=lang.tr("pixels qui diffèrent", "pixels that differ"))
        ax.set_xticks(x, labels)
        ax.set_title(model_name(model), fontsize=10)
        ax.set_xlabel(knob_label)
        ax.set_ylim(0, 100)
    axes[0, 0].set_ylabel(lang.tr("images correctes (%)", "correct images (%)"))
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=3, frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    return fig


def rerank(curves: Mapping[str, Mapping], category: str = "overall"):
    """One panel per model: a category against the number of candidates N, one line per judge and the ceiling."""
    fig, axes = subplots(1, len(curves), figsize=(WIDTH, 3.0), sharey=True, squeeze=False)
    for ax, (model, curve) in zip(axes[0], curves.items()):
        x = np.arange(len(curve["candidates"]))
        for judge, points in curve["curves"].items():
            _line(ax, x, [category_share(r, category) for r in points], color=JUDGE_COLOURS.get(judge),
                  linestyle=":" if judge == "oracle" else "-", label=name(JUDGE_NAMES, judge))
        ax.set_xticks(x, [str(n) for n in curve["candidates"]])
        ax.set_xlabel(lang.tr("candidats par invite N", "candidates per prompt N"))
        ax.set_title(model_name(model), fontsize=10)
        ax.set_ylim(0, 100)
    axes[0, 0].set_ylabel(wrap(lang.tr(f"{name(CATEGORY_NAMES, category)} : images correctes (%)",
                                       f"{name(CATEGORY_NAMES, category)}: correct images (%)"), 30))
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=3, frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def candidates(drawn, verdicts_of: Sequence[Sequence], shown: int = 6):
    """Per prompt, its first ``shown`` candidates with the oracle's verdict; CLIP's pick framed."""
    fig, axes = subplots(len(drawn.prompts), shown + 1, figsize=(WIDTH, 1.35 * len(drawn.prompts) + 0.3),
                         squeeze=False, gridspec_kw={"width_ratios": [2.2] + [1] * shown})
    for r, prompt in enumerate(drawn.prompts):
        axes[r, 0].axis("off")
        axes[r, 0].text(0, 0.5, wrap(_quoted(prompt), 20), va="center", ha="left", fontsize=9,
                        transform=axes[r, 0].transAxes)
        for c in range(shown):
            ax = axes[r, c + 1]
            show_image(ax, drawn.images[r, c])
            ax.set_xlabel(wrap(verdict_text(verdicts_of[r][c]), 10), fontsize=9)
            if drawn.scores is not None and c == int(drawn.picks[r]):
                for spine in ax.spines.values():
                    spine.set_visible(True)
                    spine.set_color("#e7298a")
                    spine.set_linewidth(3)
    fig.tight_layout(h_pad=0.2, w_pad=0.2)
    return fig


# ----------------------------------------------------------------------------- words and tables

def uniform_loss(codebook: int) -> float:
    """The cross-entropy of a model that gives every code the same probability: ln K nats."""
    return float(np.log(codebook))


def overlap(a: Mapping, b: Mapping) -> bool:
    return a["lo"] <= b["hi"] and b["lo"] <= a["hi"]


def tie_word(a: Mapping, b: Mapping) -> str:
    """How two measured shares compare, in the edition's words: a tie when their intervals overlap."""
    if overlap(a, b):
        return lang.Text(lang.tr("égalité, les intervalles se recouvrent", "a tie, the intervals overlap"))
    return lang.Text(lang.tr("une vraie différence, les intervalles sont disjoints",
                             "a real difference, the intervals do not meet"))


def compare_word(a: Mapping, b: Mapping) -> str:
    """``a`` against ``b``: below, tied with, above (intervals that overlap are a tie)."""
    if overlap(a, b):
        return lang.Text(lang.tr("à égalité avec", "tied with"))
    return lang.Text(lang.tr("au-dessous de", "below") if a["p"] < b["p"] else lang.tr("au-dessus de", "above"))


def variant_name(variant) -> str:
    """``DALL·E mini, s = 3, best of 8 (hard-negative CLIP)``: a variant of :func:`recipes.dalle.final_variants`."""
    parts = [model_name(variant.model) if variant.model in MODEL_NAMES else variant.model]
    if variant.sampling.guidance != 1:
        parts.append(f"s = {lang.number(variant.sampling.guidance, 0)}")
    if variant.sampling.candidates > 1:
        parts.append(lang.tr(f"meilleure de {variant.sampling.candidates}",
                             f"best of {variant.sampling.candidates}"))
    return ", ".join(parts)


def best_variant(results: Mapping[str, Mapping]) -> str:
    """The variant with the highest overall score (the first of equals)."""
    return max(results, key=lambda k: results[k]["overall"]["p"])


def models_table(manifests: Mapping[str, Mapping]):
    """Architecture, size, training time and speed, and the final validation losses of each model."""
    headers = [lang.tr("modèle", "model"), lang.tr("architecture", "architecture"), lang.tr("couches", "layers"),
               lang.tr("paramètres", "parameters"), lang.tr("minutes", "minutes"),
               lang.tr("séquences/s", "sequences/s"), lang.tr("perte des codes", "codes' loss"),
               lang.tr("perte du texte", "text loss")]
    rows = []
    for model, m in manifests.items():
        size = m["recipe"]["extra"]["size"]
        gpt = "text_weight" in m["recipe"]["extra"]
        layers = str(size["gpt_layers"]) if gpt else f"{size['encoder_layers']} + {size['decoder_layers']}"
        text = m["metrics"].get("val_text_loss")
        rows.append([model, "GPT-2" if gpt else "BART", layers, lang.integer(m["parameters"]),
                     lang.integer(round(m["train_seconds"] / 60)), lang.number(m["samples_per_second"], 0),
                     lang.number(m["metrics"]["val_image_loss"], 3),
                     lang.number(text, 2) if text is not None else "–"])
    return markdown_table(headers, rows, align="llrrrrrr")


def seven_table(m: Mapping):
    """The seven differences between DALL·E and DALL·E mini: as published (Ramesh et al., 2021; dalle-mini's
    report and code), as rebuilt here, and what this chapter measured (``m``: :func:`recipes.dalle.seven_differences`)."""
    tr, pct, num, integer = lang.tr, lang.percent, lang.number, lang.integer
    top = m["overall"]
    rows = [
        [tr("1. tokeniseur d'images", "1. image tokenizer"),
         tr("dVAE, 32 × 32 codes parmi 8 192", "dVAE, 32 × 32 codes of 8,192"),
         tr("VQGAN f16, 16 × 16 codes parmi 16 384", "VQGAN f16, 16 × 16 codes of 16,384"),
         tr(f"VQ-VAE, 8 × 8 codes parmi {m['codebook']}", f"VQ-VAE, 8 × 8 codes of {m['codebook']}"),
         tr(f"scènes relues : {pct(m['ceiling'], 2)} (dVAE : {pct(m['dvae'], 2)})",
            f"scenes read back: {pct(m['ceiling'], 2)} (dVAE: {pct(m['dvae'], 2)})")],
        [tr("2. architecture", "2. architecture"), tr("décodeur seul", "decoder only"),
         tr("encodeur-décodeur (BART)", "encoder-decoder (BART)"), tr("les deux, même taille", "both, same size"),
         tr(f"global : {interval_text(top['dalle'])} contre {interval_text(top['dalle-mini'])}",
            f"overall: {interval_text(top['dalle'])} against {interval_text(top['dalle-mini'])}")],
        [tr("3. attention", "3. attention"), tr("creuse (lignes, colonnes, convolution)",
                                                  "sparse (row, column, convolutional)"),
         tr("dense", "dense"), tr("dense, les deux", "dense, both"),
         tr(f"images/s : {num(m['speed']['dalle'], 0)} contre {num(m['speed']['dalle-mini'], 0)}",
            f"images/s: {num(m['speed']['dalle'], 0)} against {num(m['speed']['dalle-mini'], 0)}")],
        [tr("4. données", "4. data"), tr("250 M paires du web", "250M web pairs"),
         tr("environ 15 M paires", "about 15M pairs"),
         tr(f"{integer(m['examples'])} scènes du monde", f"{integer(m['examples'])} world scenes"),
         tr(f"compositions jamais vues : {interval_text(m['heldout'])}",
            f"unseen compositions: {interval_text(m['heldout'])}")],
        [tr("5. échantillonnage", "5. sampling"), "–",
         tr("top-k 256, guidage 10 à 16", "top-k 256, guidance 10 to 16"),
         tr("température, top-k, guidage", "temperature, top-k, guidance"),
         tr(f"meilleur guidage : {num(m['guidance']['dalle'], 0)} et {num(m['guidance']['dalle-mini'], 0)}",
            f"best guidance: {num(m['guidance']['dalle'], 0)} and {num(m['guidance']['dalle-mini'], 0)}")],
        [tr("6. reclassement", "6. reranking"), tr("CLIP, 512 candidats", "CLIP, 512 candidates"),
         tr("CLIP, 8 à 128 candidats", "CLIP, 8 to 128 candidates"),
         tr(f"nos CLIP, jusqu'à {m['candidates']} candidats", f"our CLIPs, up to {m['candidates']} candidates"),
         tr(f"global : {interval_text(m['rerank'][0])} → {interval_text(m['rerank'][1])}",
            f"overall: {interval_text(m['rerank'][0])} → {interval_text(m['rerank'][1])}")],
        [tr("7. échelle", "7. scale"), tr("12 G paramètres", "12B parameters"),
         tr(f"{num(m['published_mini'] / 1e6, 0)} M paramètres", f"{num(m['published_mini'] / 1e6, 0)}M parameters"),
         tr(f"{num(m['parameters']['dalle'] / 1e6, 2)} M et {num(m['parameters']['dalle-mini'] / 1e6, 2)} M",
            f"{num(m['parameters']['dalle'] / 1e6, 2)}M and {num(m['parameters']['dalle-mini'] / 1e6, 2)}M"),
         tr(f"{m['minutes']['dalle']} et {m['minutes']['dalle-mini']} minutes d'entraînement",
            f"{m['minutes']['dalle']} and {m['minutes']['dalle-mini']} minutes of training")],
    ]
    headers = [tr("différence", "difference"), "DALL·E", "DALL·E mini", tr("ce chapitre", "this chapter"),
               tr("mesuré ici", "measured here")]
    return markdown_table(headers, rows, align="lllll")
