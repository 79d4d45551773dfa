"""The benchmark's figures and tables, the same in every generative chapter and in both editions.

``chart(rows)``: categories on one axis, one bar per model with its 95 %
interval, and the reference rows drawn as marks across each category;
``table(rows)``: the same numbers with their intervals, plus what the
categories leave out (MG-k, relation given both objects, the held-out splits,
the Fréchet distance and its floor); ``samples(...)``: prompts, images and the
oracle's verdict on each.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from text2image import lang
from text2image.evaluate import benchmark as B
from text2image.evaluate import verdicts
from text2image.plots import show_image, subplots, wrap
from text2image.tables import interval, markdown_table

CATEGORY_NAMES = {
    "single_object": ("objet seul", "single object"), "two_objects": ("deux objets", "two objects"),
    "counting": ("comptage", "counting"), "colours": ("couleurs", "colours"), "position": ("position", "position"),
    "colour_attribution": ("attribution des couleurs", "colour attribution"), "overall": ("global", "overall"),
}
REFERENCE_NAMES = {"world": ("rendus du monde", "world renders"), "retrieval": ("plus proche légende", "nearest caption"),
                   "random": ("image au hasard", "random image")}
FAILURE_NAMES = {
    "missing": ("objet manquant", "object missing"), "leaked": ("couleur passée à l'autre objet", "colour leaked"),
    "colour": ("mauvaise couleur", "wrong colour"), "reversed": ("relation inversée", "relation reversed"),
    "relation": ("autre relation", "other relation"), "too_few": ("trop peu d'objets", "too few objects"),
    "too_many": ("trop d'objets", "too many objects"), "other": ("autre", "other"),
}
GROUP_NAMES = {"single": ("un objet", "one object"), "counting": ("comptage", "counting"),
               "pair": ("deux objets", "two objects"), "relation": ("relation", "relation"),
               "heldout_pairs": ("paires réservées", "held-out pairs"),
               "heldout_relations": ("relations réservées", "held-out relations"), "multigen": ("MultiGen", "MultiGen")}
REFERENCE_MARKS = {"world": ("k", "-"), "retrieval": ("#d95f02", "--"), "random": ("#7570b3", ":")}
COLUMNS = (*verdicts.CATEGORIES, "overall")


def name(table: Mapping[str, tuple[str, str]], key: str) -> str:
    return lang.tr(*table[key])


def category_share(result: Mapping, category: str) -> Mapping:
    return result["overall"] if category == "overall" else result["categories"][category]


def chart(models: Mapping[str, Mapping], references: Mapping[str, Mapping] | None = None, legend_columns: int = 3):
    """Accuracy per category with 95 % intervals: models as bars, references as marks across each category
    (fewer ``legend_columns`` when the models' names are long, so the legend stays within the column)."""
    references = references or {}
    fig, ax = subplots(figsize=(6.6, 3.9))
    x = np.arange(len(COLUMNS))
    width = 0.8 / max(1, len(models))
    for k, (label, result) in enumerate(models.items()):
        shares = [category_share(result, c) for c in COLUMNS]
        p = np.array([s["p"] for s in shares])
        err = np.clip([[s["p"] - s["lo"] for s in shares], [s["hi"] - s["p"] for s in shares]], 0, None)
        ax.bar(x - 0.4 + width * (k + 0.5), 100 * p, width * 0.9, yerr=100 * err, capsize=2, label=label)
    for ref, result in references.items():
        colour, style = REFERENCE_MARKS.get(ref, ("grey", "-."))
        for i, c in enumerate(COLUMNS):
            ax.hlines(100 * category_share(result, c)["p"], i - 0.45, i + 0.45, colors=colour, linestyles=style,
                      linewidth=2, zorder=3, label=name(REFERENCE_NAMES, ref) if i == 0 else None)
    ax.set_xticks(x, [wrap(name(CATEGORY_NAMES, c), 12) for c in COLUMNS], fontsize=9)
    ax.set_ylim(0, 104)
    ax.set_ylabel(lang.tr("images correctes (%)", "correct images (%)"))
    ax.grid(axis="x", visible=False)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=legend_columns, frameon=False, fontsize=9)
    fig.tight_layout()
    return fig


def interval_text(share: Mapping) -> str:
    """``95.3 % (93.1–96.9)``: a measured share as the prose quotes it, with its 95 % interval in points."""
    if share is None:
        return lang.Text("–")
    lo, hi = (lang.number(100 * share[k], 1) for k in ("lo", "hi"))
    return lang.Text(f"{lang.percent(share['p'], 1)} ({lo}\u2060–\u2060{hi})")


def half_width(result: Mapping) -> float:
    """The mean half-width of a result's category intervals, in points (how precise a sweep's part is)."""
    shares = list(result["categories"].values())
    return 100 * sum((s["hi"] - s["lo"]) / 2 for s in shares) / len(shares)


def frechet(result: Mapping) -> str:
    """The Fréchet distance and its floor, in thousandths (the CLIP space is small and unit-norm)."""
    fd = result.get("frechet")
    if not fd:
        return "–"
    return f"{lang.number(1000 * fd['distance'], 2)} ({lang.number(1000 * fd['floor'], 2)})"


def _columns(rows: Mapping[str, Mapping], measures: Sequence[tuple[str, Callable]], digits: int):
    """One row per measure, one column per generator (a table stays readable with many generators)."""
    headers = [lang.tr("mesure", "measure"), *rows]
    body = [[label, *(value(r) for r in rows.values())] for label, value in measures]
    return markdown_table(headers, body)


def table(rows: Mapping[str, Mapping], digits: int = 1):
    """The six categories and ``overall`` of each generator, with their 95 % intervals (in points)."""
    measures = [(name(CATEGORY_NAMES, c), lambda r, c=c: interval(category_share(r, c), digits)) for c in COLUMNS]
    return _columns(rows, measures, digits)


def beyond_table(rows: Mapping[str, Mapping], digits: int = 1):
    """MG-2 to MG-5, the relation given both objects, the held-out splits and the Fréchet distance."""
    measures = [(f"MG-{k}", lambda r, k=k: interval(r["mg"][str(k)], digits)) for k in range(2, 6)]
    measures.append((lang.tr("relation, objets présents", "relation, both present"),
                     lambda r: interval(r["relation"], digits)))
    measures += [(name(GROUP_NAMES, g), lambda r, g=g: interval(r["heldout"][g], digits)) for g in B.HELDOUT_GROUPS]
    measures.append((lang.tr("Fréchet ×10³ (plancher)", "Fréchet ×10³ (floor)"), frechet))
    return _columns(rows, measures, digits)


def verdict_text(verdict: verdicts.Verdict) -> str:
    kind = B.failure(verdict)
    return "✓" if kind is None else "✗ " + name(FAILURE_NAMES, kind)


def sample_prompts(per_group: int = 1, profile: str | None = None) -> list[str]:
    """The first prompts of each group of the set, groups in order."""
    return [p for prompts in B.prompt_set(profile).values() for p in prompts[:per_group]]


def samples(rows: Mapping[str, Callable], prompts: Sequence[str], seed: int = 0, width: float = 6.8):
    """One row per prompt, one column per generator: its image, and the oracle's verdict under it (``width``
    in inches: narrower with more generators, whose columns leave the prompts less room)."""
    fig, axes = subplots(len(prompts), len(rows) + 1, figsize=(width, 1.3 * len(prompts) + 0.4), squeeze=False,
                         gridspec_kw={"width_ratios": [2.4] + [1] * len(rows)})
    for r, prompt in enumerate(prompts):
        axes[r, 0].axis("off")
        quoted = lang.quoted(prompt)
        axes[r, 0].text(0, 0.5, wrap(quoted, 30),
                        va="center", ha="left", fontsize=9, transform=axes[r, 0].transAxes)
    for c, (label, generate) in enumerate(rows.items(), start=1):
        images = B.check_images(generate(list(prompts), seed), prompts)
        axes[0, c].set_title(wrap(label, 14), fontsize=9)
        for r, (image, verdict) in enumerate(zip(images, verdicts.score_batch(prompts, images))):
            show_image(axes[r, c], image)
            axes[r, c].set_xlabel(wrap(verdict_text(verdict), 16), fontsize=9)
    fig.tight_layout(h_pad=0.3)
    return fig


def failures(result: Mapping, n: int = 3) -> list[tuple[str, int]]:
    """The ``n`` most frequent failure kinds, named in the edition's language, with their counts."""
    return [(name(FAILURE_NAMES, k), v) for k, v in list(result["failures"].items())[:n]]
