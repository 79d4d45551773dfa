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


# ----------------------------------------------------------------------------- the concept

def examples_chart(examples, word: str):
    """The concept's training images with their captions."""
    fig, axes = subplots(1, len(examples), figsize=(WIDTH, 1.9))
    for ax, image, caption in zip(np.ravel(axes), examples.images, examples.captions(word)):
        show_image(ax, image)
        ax.set_title(wrap(caption, 15), fontsize=SMALL)
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
    fig, ax = subplots(figsize=(WIDTH, 3.0))
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
    ax.legend(fontsize=SMALL, frameon=False, loc="center left", bbox_to_anchor=(1.02, 0.5))
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
    fig, axes = subplots(1, 2, figsize=(WIDTH, 3.6), sharey=True)
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
    far = max(p["distance"] for points in series.values() for p in points)
    for ax in axes:
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlim(-0.005, far * 1.5)
        ax.set_xlabel(lang.tr("distance au mot de départ", "distance from the initial word"))
        ax.set_ylim(-3, 103)
        _style(ax)
    axes[0].set_ylabel(lang.tr("images (%)", "images (%)"))
    _legend_above(fig, axes, 3)
    return fig


def _legend_above(fig, axes, ncol: int) -> None:
    """One legend for every panel, above them (each label once)."""
    handles, labels = [], []
    for ax in np.ravel(axes):
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    fig.legend(handles, labels, loc="upper center", ncol=ncol, fontsize=SMALL, frameon=False)
    rows = -(-len(labels) // ncol)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 * rows / fig.get_figheight()))


def readings(points: Sequence[Mapping]) -> list[tuple[str, float]]:
    """What the oracle reads where the star should be, over several points: ``[(base shape, share of the
    images)]``, most read first (stars and empty places left out)."""
    counts: dict[str, int] = {}
    for p in points:
        for shape, k in p["reconstruction"]["read_as"].items():
            counts[shape] = counts.get(shape, 0) + k
    total = sum(counts.values())
    return sorted(((s, k / total) for s, k in counts.items() if s in SHAPES), key=lambda sk: -sk[1])


# ----------------------------------------------------------------------------- the LoRA

LORA_PANELS = (("reconstruction", "star", ("reconstruction : une étoile", "reconstruction: a star")),
               ("editability", "composed", ("éditabilité : la composition", "editability: the composition")),
               ("reconstruction", "size_unseen", ("taille demandée, paires jamais vues",
                                                  "asked size, pairs never shown")),
               ("reconstruction", "copied", ("étoile à la place d'un exemple", "star where an example had it")))


def lora_chart(series: Mapping[float, Sequence[Mapping]], base: Mapping, inversion: Mapping):
    """The LoRA's sweep against its steps, one colour a learning rate, from the pivot (step 0): reconstruction,
    editability (the composition kept), the asked size on colour-size pairs the examples never showed, and stars
    drawn where the example of their colour had its own (grey: the base's editability, and the share for the
    world's scenes)."""
    fig, axes = subplots(2, 2, figsize=(WIDTH, 4.8), sharex=True)
    for ax, (group, key, title) in zip(np.ravel(axes), LORA_PANELS):
        for colour, lr, points, steps in _points(series, "steps"):
            starts = [0] + list(steps)
            _with_bars(ax, starts, [inversion[group][key]] + [p[group][key] for p in points], colour,
                       f"lr = {rate_text(lr)}")
        if key == "composed":
            ref = base["editability"]["composed"]
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
    _legend_above(fig, axes, 3)
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


def _step(point: Mapping) -> int:
    return point["step"] if "step" in point else point["steps"]


def first_above(series: Mapping[float, Sequence[Mapping]], share: float) -> dict:
    """The cheapest point of the LoRA's sweep (fewest steps x lr) whose reconstruction exceeds ``share`` (the
    best one when none does, as in a smoke run)."""
    found = [(lr * _step(p), lr, p) for lr, points in series.items() for p in points
             if p["reconstruction"]["star"]["p"] > share]
    if not found:
        from text2image.recipes import pivotal as PV

        return PV.best(dict(series), "reconstruction", "star")
    _, lr, point = min(found, key=lambda f: f[0])
    return {"lr": lr, "step": _step(point), "point": point}


def furthest(series: Mapping[float, Sequence[Mapping]]) -> dict:
    """The point of the LoRA's sweep with the most steps at its highest rate."""
    lr = max(series)
    point = max(series[lr], key=_step)
    return {"lr": lr, "step": _step(point), "point": point}


def kilobytes(size: int) -> float:
    return size / 1000


def yes_no(flag: bool) -> str:
    return lang.tr("oui", "yes") if flag else lang.tr("non", "no")


def copy_radius() -> float:
    from text2image.evaluate import concept as E

    return E.COPY_RADIUS


def farthest(series: Mapping[float, Sequence[Mapping]]) -> dict:
    """The point of the inversion's sweep farthest from the initial word: its ``distance`` and editability."""
    point = max((p for points in series.values() for p in points), key=lambda p: p["distance"])
    return {"distance": point["distance"], "share": point["editability"]["composed"]}


def loss_drop(histories: Mapping[float, Sequence[Mapping]], lr: float | None = None) -> dict:
    """The diffusion loss on fixed draws along one path (the default rate's): at the start, at its first logged
    step and at the end (with those steps)."""
    from text2image.methods import textual_inversion as TI

    history = histories[lr if lr is not None else min(histories, key=lambda r: abs(np.log(r / TI.LR)))]
    return {"start": history[0]["eval_loss"], "early": history[1]["eval_loss"], "early_step": history[1]["step"],
            "end": history[-1]["eval_loss"], "end_step": history[-1]["step"]}


# ----------------------------------------------------------------------------- the locality term and the final table

MOVES = (("reconstruction", "star"), ("editability", "composed"))  # what the locality term is judged on
LOCALITY_NAMES = {"none": ("sans terme", "no term"), "captions": ("sur les légendes", "on the captions"),
                  "contexts": ("en contexte", "in context")}
LOCALITY_COLUMNS = ((("reconstruction", "star"), ("étoile", "star")),
                    (("reconstruction", "copied"), ("copiée", "copied")),
                    (("editability", "composed"), ("composition", "composition")),
                    (("editability", "second"), ("second objet", "second object")))


def locality_table(local: Mapping[str, Mapping[tuple, Mapping]]):
    """One row a budget and a kind of locality term: the measures that move."""
    rows = []
    for setting in next(iter(local.values())):
        lr, steps = setting
        for kind, runs in local.items():
            m = runs[setting]
            rows.append([f"{rate_text(lr)}, {lang.integer(steps)}", lang.tr(*LOCALITY_NAMES[kind]),
                         *(interval(m[g][k]) for (g, k), _ in LOCALITY_COLUMNS)])
    return markdown_table([lang.tr("lr, pas", "lr, steps"), lang.tr("terme de localité", "locality term"),
                           *(lang.tr(*name) for _, name in LOCALITY_COLUMNS)], rows, "ll" + "r" * len(LOCALITY_COLUMNS))


def locality_effect(local: Mapping[str, Mapping[tuple, Mapping]], index: int = 0) -> dict:
    """The measures of the three kinds at one of the profile's locality budgets (the first by default): ``lr``,
    ``steps`` and one entry a kind."""
    settings = list(local["none"])
    setting = settings[min(index, len(settings) - 1)]
    return {"lr": setting[0], "steps": setting[1], **{kind: runs[setting] for kind, runs in local.items()}}


def locality_verdicts(effect: Mapping) -> tuple[tuple[str, str], tuple[str, str]]:
    """``((star, composition) on the captions, (star, composition) in context)``: :func:`verdict` of each
    against the LoRA without the term, at the budget of ``effect``."""
    return tuple(tuple(verdict(effect[kind][g][k], effect["none"][g][k]) for g, k in MOVES)
                 for kind in ("captions", "contexts"))


MODEL_NAMES = {"initial": ("mot de départ", "initial word"), "pivot": ("mot appris", "learned word"),
               "lora": ("mot + LoRA", "word + LoRA"), "context": ("+ localité en contexte", "+ locality in context")}


def shown_models(best: Mapping, local: Mapping) -> dict:
    """The settings of :func:`text2image.recipes.pivotal.draw` for each model the samples show."""
    from text2image.recipes import pivotal as PV

    effect = locality_effect(local)
    in_context = {"lr": effect["lr"], "steps": effect["steps"],
                  **PV.locality_options("contexts", PV.profiles.current())}
    return {"initial": {"step": 0}, "pivot": {}, "lora": {"lora": dict(best)}, "context": {"lora": in_context}}


def model_label(model: str) -> str:
    return lang.tr(*MODEL_NAMES[model])


def final_rows(base: Mapping, ceiling: Mapping, pivot: Mapping, chosen: Mapping, local: Mapping) -> list:
    """``(name, measures)`` for the final table, in the order of the method."""
    effect = locality_effect(local)
    at = f"{rate_text(effect['lr'])}, {lang.integer(effect['steps'])}"
    return [(lang.tr("base, formes connues", "base, known shapes"), base),
            (lang.tr("plafond de l'autoencodeur", "autoencoder's ceiling"), ceiling),
            (model_label("pivot"), pivot),
            (f"{model_label('lora')} ({rate_text(chosen['lr'])}, {lang.integer(chosen['step'])})", chosen["point"]),
            (f"{model_label('lora')} ({at})", effect["none"]),
            (f"{model_label('context')} ({at})", effect["contexts"])]


def goal(point: Mapping, base: Mapping, ceiling: Mapping) -> dict:
    """The two goals against the point reached: its reconstruction, its editability and the base's, the gap in
    points."""
    edit, ref = point["editability"]["composed"], base["editability"]["composed"]
    return {"reconstruction": point["reconstruction"]["star"], "editability": edit, "base": ref,
            "gap": 100 * (ref["p"] - edit["p"]), "ceiling": ceiling["reconstruction"]["star"]}


def one_in(share: Mapping) -> str:
    """``3``: a failure rate ``1 - p`` as "one time in N", rounded."""
    return lang.number(1 / max(1 - share["p"], 1e-9), 0)


def runs_table(pivot, adapters: Sequence) -> "object":
    """The word and each LoRA: steps, rate, locality, minutes, numbers and size on disk."""
    def minutes_of(made) -> str:
        return lang.number(made.history[-1].get("seconds", float("nan")) / 60, 1)

    rows = [[lang.tr("mot (inversion)", "word (inversion)"), lang.integer(pivot.settings["steps"]),
             rate_text(pivot.settings["lr"]), "–", minutes_of(pivot), lang.integer(pivot.embedding.numel()), "–"]]
    for adapter, size in adapters:
        s = adapter.settings
        term = "–" if not s.get("locality") else lang.tr(*LOCALITY_NAMES["contexts" if s.get("contexts")
                                                                          else "captions"])
        rows.append(["LoRA", lang.integer(s["steps"]), rate_text(s["lr"]), term,
                     minutes_of(adapter),
                     lang.integer(adapter.size), lang.number(size / 1000, 0)])
    return markdown_table([lang.tr("étape", "step"), lang.tr("pas", "steps"), "lr",
                           lang.tr("terme de localité", "locality term"), "minutes", lang.tr("nombres", "numbers"),
                           lang.tr("taille (ko)", "size (kB)")], rows, "lrrlrrr")


def change(after: Mapping, before: Mapping) -> str:
    """``+8,8 points (0,2 à 17,3)``: how far a share moved, with Newcombe's 95 % interval."""
    from text2image.charts import latent as LC

    return LC.points_text(intervals.difference(intervals.Share(**after), intervals.Share(**before)))


def of_ceiling(share: Mapping, ceiling: Mapping) -> str:
    """``52 %``: a reconstruction as a share of the autoencoder's ceiling (``–`` when the ceiling is zero)."""
    top = ceiling["reconstruction"]["star"]["p"]
    return lang.percent(share["p"] / top, 0) if top > 0 else "–"


def verdict(after: Mapping, before: Mapping) -> str:
    """``a gain``, ``a loss`` or ``a tie``: what the move of a share is, by whether its 95 % interval holds 0."""
    d = intervals.difference(intervals.Share(**after), intervals.Share(**before))
    if d["lo"] > 0:
        return lang.tr("un gain", "a gain")
    if d["hi"] < 0:
        return lang.tr("une perte", "a loss")
    return lang.tr("une égalité", "a tie")
