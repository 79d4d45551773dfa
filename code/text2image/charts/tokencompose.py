"""Figures, tables and words of the chapter "TokenCompose".

Every function draws one figure (and returns it), builds one Markdown table,
or returns numbers and words for the prose, whose sentences stay in the
chapter. Shares come with their 95 % Wilson interval, differences of two
shares with Newcombe's, mean IoUs with their t-interval.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from text2image import lang
from text2image.charts import generative as G
from text2image.charts import latent as LC
from text2image.plots import MIN_TEXT_PT, WIDTH, show_image, subplots
from text2image.tables import interval, markdown_table

SMALL = MIN_TEXT_PT

METHOD_NAMES = {"base": ("base", "base"), "control": ("MSE seule", "MSE only"),
                "token": ("+ L_token", "+ L_token"), "pixel": ("+ L_pixel", "+ L_pixel"),
                "both": ("+ les deux", "+ both")}
METHOD_COLOURS = {"base": "#999999", "control": "#377eb8", "token": "#4daf4a", "pixel": "#ff7f00",
                  "both": "#e41a1c"}
# The paper's MultiGen and VISOR figures on COCO (Wang et al., 2024, table 1): SD 1.4 and TokenCompose.
PAPER = {"sd14": {"mg2": 90.7, "mg3": 50.7, "mg4": 11.7, "mg5": 0.9, "object_accuracy": 29.9, "fid": 20.9},
         "tokencompose": {"mg2": 98.1, "mg3": 76.2, "mg4": 28.8, "mg5": 3.3, "object_accuracy": 52.2, "fid": 20.2}}
PAPER_TRAINING = {"steps": 24_000, "batch": 4}  # the paper's fine-tune of SD 1.4 (effective batch 4)
PAPER_GAIN_MG3 = 0.25  # the gain asked of the full model on MG-3: the paper's 50.7 -> 76.2, about 25 points
ROOM_MG3 = 0.85        # above this base MG-3, the five-object prompts leave too little room to see a gain
BLOCK_NAMES = {"down": ("descente", "down"), "mid": ("milieu", "mid"), "up": ("montée", "up")}
SKIPPED_WORDS = ("a", "an", "the", "of", "to", "and")  # words whose maps the figures leave out


def model_name(name: str) -> str:
    """``+ les deux (graine 2)`` / ``+ both, λ_token = 10⁻²``: a model of the ablation in words."""
    from text2image.recipes import tokencompose as R

    if name == R.BASE:
        return lang.tr(*METHOD_NAMES["base"])
    method = R.method_of(name)
    label = lang.tr(*METHOD_NAMES["both" if method == "sweep" else method])
    token, _ = R.weights(name)
    if method == "sweep":
        label += f", λ_token = {weight_text(token)}"
    replica = R.replica_of(name)
    if replica and replica != 1:
        label += lang.tr(f" (graine {replica})", f" (seed {replica})")
    return lang.Text(label)


def minutes(manifest: Mapping) -> float:
    return LC.minutes(manifest)


def weight_text(value: float) -> str:
    """``10⁻³`` or ``5 × 10⁻⁵`` (``0`` as 0): a loss weight as the tables write it."""
    if value == 0:
        return "0"
    power = 10.0 ** np.floor(np.log10(value))
    mantissa = round(value / power, 6)
    return lang.power_of_ten(power) if mantissa == 1 else f"{lang.number(mantissa, 0)} × {lang.power_of_ten(power)}"


# ----------------------------------------------------------------------------- where the maps are

def _grouped(shapes) -> list[tuple[tuple[str, tuple[int, int]], list]]:
    out: dict = {}
    for s in shapes:
        out.setdefault((s.block, s.grid), []).append(s)
    return list(out.items())


def _shape(shape: Sequence[int]) -> str:
    return " × ".join(str(d) for d in shape)


def layers_table(models: Mapping[str, Sequence]):
    """One row per group of cross-attention layers (block and grid) of each model: how many layers, heads,
    the layer's input, the text states and the map, read off one forward pass (:func:`~text2image.methods.
    attention.layer_shapes`), and whether TokenCompose supervises the group."""
    from text2image.methods.tokencompose import SUPERVISED

    rows = []
    for model, shapes in models.items():
        for (block, grid), layers in _grouped(shapes):
            first = layers[0]
            rows.append([model, lang.tr(*BLOCK_NAMES[block]), f"{grid[0]} × {grid[1]}", len(layers), first.heads,
                         _shape(first.hidden), _shape(first.context), _shape(first.maps),
                         lang.tr("oui", "yes") if block in SUPERVISED else lang.tr("non", "no")])
    headers = [lang.tr("UNet", "UNet"), lang.tr("bloc", "block"), lang.tr("grille", "grid"),
               lang.tr("couches", "layers"), lang.tr("têtes", "heads"),
               lang.tr("entrée [lot, H × W, canaux]", "input [batch, H × W, channels]"),
               lang.tr("états du texte", "text states"),
               lang.tr("carte [lot × têtes, H × W, jetons]", "map [batch × heads, H × W, tokens]"),
               lang.tr("supervisé", "supervised")]
    return markdown_table(headers, rows, align="lllrrrrrl")


def layout(shapes: Sequence) -> dict:
    """Numbers of one UNet's layout for the prose: its layers, the supervised ones, the first layer's input."""
    from text2image.methods.tokencompose import SUPERVISED

    first = shapes[0]
    return {"layers": len(shapes), "supervised": sum(s.block in SUPERVISED for s in shapes),
            "positions": first.hidden[1], "side": first.grid[0], "channels": first.hidden[2],
            "heads": first.heads, "inner": first.inner, "tokens": first.context[1], "text_width": first.context[2],
            "hidden": lang.Text(f"[{', '.join(map(str, first.hidden))}]"),
            "map": lang.Text(f"[{', '.join(map(str, first.maps))}]"),
            "grids": lang.Text(", ".join(dict.fromkeys(f"{s.grid[0]}" for s in shapes)))}


# ----------------------------------------------------------------------------- seeing the maps

def shown_words(prompt: str) -> list[tuple[int, str]]:
    """``(token index, word)`` of the prompt's words whose maps the figures show (articles left out)."""
    words = prompt.split()
    return [(i + 1, w) for i, w in enumerate(words) if w not in SKIPPED_WORDS]  # + 1: [BOS] comes first


def _overlay(ax, image: np.ndarray, heat: np.ndarray, vmax: float) -> None:
    grey = image.astype(np.float32).mean(axis=-1, keepdims=True).repeat(3, axis=-1) / 255
    ax.imshow(grey, extent=(0, 1, 1, 0), interpolation="nearest")
    ax.imshow(heat, extent=(0, 1, 1, 0), cmap="magma", alpha=0.75, vmin=0, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def group_label(key: tuple[str, tuple[int, int]]) -> str:
    block, (h, w) = key
    return f"{lang.tr(*BLOCK_NAMES[block])} {h}×{w}"


def finest_group(seen) -> tuple[str, tuple[int, int]]:
    """The up block's finest group of a sampling run's maps (where a word's map is sharpest)."""
    return max(seen.maps[-1], key=lambda key: (key[0] == "up", key[1]))


def word_maps_chart(seen, prompt: str, step: int = -1):
    """The map of each shown word (rows) in each layer group (columns) at one denoising step, over the image
    drawn (in grey): where each word looks, at every resolution of the UNet."""
    words = shown_words(prompt)
    maps = seen.maps[step]
    keys = list(maps)
    fig, axes = subplots(len(words), len(keys) + 1, figsize=(0.96 * WIDTH, 0.95 * len(words) + 0.5), squeeze=False)
    for r, (token, word) in enumerate(words):
        show_image(axes[r, 0], seen.image)
        axes[r, 0].set_ylabel(lang.quoted(word), fontsize=SMALL)
        for c, key in enumerate(keys, 1):
            heat = maps[key][..., token]
            _overlay(axes[r, c], seen.image, heat, max(float(heat.max()), 1e-6))
            if r == 0:
                axes[r, c].set_title(group_label(key), fontsize=SMALL)
    axes[0, 0].set_title(lang.tr("image", "image"), fontsize=SMALL)
    fig.tight_layout(pad=0.3, h_pad=0.2, w_pad=0.2)
    return fig


def steps_chart(seen, prompt: str, key: tuple[str, tuple[int, int]], shown: int = 5):
    """The map of each shown word (rows) in one layer group over the denoising steps (columns, from noise to
    image), on a colour scale shared by a row: when each word finds its place."""
    words = shown_words(prompt)
    picks = sorted(set(np.linspace(0, len(seen.maps) - 1, shown).round().astype(int).tolist()))
    fig, axes = subplots(len(words), len(picks) + 1, figsize=(0.96 * WIDTH, 0.95 * len(words) + 0.5), squeeze=False)
    for r, (token, word) in enumerate(words):
        show_image(axes[r, 0], seen.image)
        axes[r, 0].set_ylabel(lang.quoted(word), fontsize=SMALL)
        vmax = max(float(seen.maps[s][key][..., token].max()) for s in picks)
        for c, s in enumerate(picks, 1):
            _overlay(axes[r, c], seen.image, seen.maps[s][key][..., token], max(vmax, 1e-6))
            if r == 0:
                axes[r, c].set_title(lang.tr(f"pas {s + 1}, t = {seen.timesteps[s]:.0f}",
                                             f"step {s + 1}, t = {seen.timesteps[s]:.0f}"), fontsize=SMALL)
    axes[0, 0].set_title(lang.tr("image", "image"), fontsize=SMALL)
    fig.tight_layout(pad=0.3, h_pad=0.2, w_pad=0.2)
    return fig


def inside_share(seen, prompt: str, masks: Mapping[int, np.ndarray], key, step: int = -1) -> dict:
    """The share of each word's attention (one group, one step) that falls on its object's mask (given on the
    group's grid): 1 - sqrt(L_token) of that word, the quantity the token loss raises."""
    out = {}
    for token, word in shown_words(prompt):
        if token in masks:
            a = seen.maps[step][key][..., token]
            out[word] = float((a * masks[token]).sum() / a.sum())
    return out


# ----------------------------------------------------------------------------- training

CURVES = (("val_loss", ("perte de débruitage (val)", "denoising loss (val)")),
          ("val_token", ("L_token (val)", "L_token (val)")),
          ("val_pixel", ("L_pixel (val)", "L_pixel (val)")),
          ("val_iou_all", ("IoU carte-masque (val)", "map-mask IoU (val)")))


def training_curves(histories: Mapping[str, tuple[list[dict], list[dict]]], start: Mapping[str, float]):
    """The fine-tunes on validation examples against the training step: the denoising loss, both grounding
    losses and the attention-mask IoU, with the base's value before fine-tuning (``start``) as a grey line."""
    from text2image.recipes import tokencompose as R

    fig, axes = subplots(2, 2, figsize=(WIDTH, 4.8))
    for ax, (key, title) in zip(np.ravel(axes), CURVES):
        for name, (_, evals) in histories.items():
            points = [(e["step"], e[key]) for e in evals if key in e]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, "o-" if R.replica_of(name) == 1 else "s--", ms=3, lw=1.1,
                        color=METHOD_COLOURS.get(R.method_of(name), "#a65628"), label=model_name(name))
        if key in start:
            ax.axhline(start[key], color=METHOD_COLOURS["base"], lw=1.0, ls=":", label=model_name(R.BASE))
        ax.set_title(lang.tr(*title))
        ax.set_xlabel(lang.tr("pas d'affinage", "fine-tuning step"))
        LC._style(ax)
    fig.legend(*np.ravel(axes)[0].get_legend_handles_labels(), loc="upper center", ncol=3, fontsize=SMALL,
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.84))
    return fig


def loss_scale(start: Mapping[str, float]) -> dict:
    """What the paper's weights make of the base's grounding losses, as shares of its denoising loss."""
    from text2image.recipes import tokencompose as R

    mse = start["val_grounded_mse"]
    return {"token": R.LAMBDA_TOKEN * start["val_token"] / mse, "pixel": R.LAMBDA_PIXEL * start["val_pixel"] / mse}


def training_table(manifests: Mapping[str, Mapping]):
    """Each fine-tune's loss weights, seed replica, steps, training minutes and images per second."""
    from text2image.recipes import tokencompose as R

    body = []
    for name, m in manifests.items():
        token, pixel = R.weights(name)
        body.append([f"`{name}`", weight_text(token), weight_text(pixel), str(R.replica_of(name)),
                     lang.integer(m["steps"]), lang.number(minutes(m), 1),
                     lang.number(m["samples_per_second"], 0)])
    return markdown_table([lang.tr("recette", "recipe"), "λ_token", "λ_pixel", lang.tr("graine", "seed"),
                           lang.tr("pas", "steps"), "minutes", lang.tr("images / s", "images / s")], body,
                          align="lrrrrrr")


# ----------------------------------------------------------------------------- the ablation

def ablation_table(rows: Sequence[Mapping]):
    """The ablation: each model's loss weights, MG-2 to MG-5, object accuracy, colour attribution, relation
    given both objects (%, Wilson 95 %), Fréchet distance (× 10³) and latency (ms an image)."""
    body = []
    for r in rows:
        body.append([model_name(r["model"]), weight_text(r["lambda_token"]), weight_text(r["lambda_pixel"]),
                     *(interval(r[f"mg{k}"]) for k in range(2, 6)), interval(r["object_accuracy"]),
                     interval(r["colour_attribution"]), interval(r["relation"]),
                     lang.number(1000 * r["frechet"], 1) if r["frechet"] is not None else "–",
                     lang.number(r["latency_ms"], 1) if r.get("latency_ms") is not None else "–"])
    headers = [lang.tr("modèle", "model"), "λ_token", "λ_pixel", "MG-2", "MG-3", "MG-4", "MG-5",
               lang.tr("objets", "objects"), G.category_name("colour_attribution"),
               lang.tr("relation", "relation"), "Fréchet", lang.tr("ms / image", "ms / image")]
    return markdown_table(headers, body)


def paper_table(rows: Sequence[Mapping], base: str, full: str):
    """The paper's MultiGen and object accuracy on COCO (SD 1.4 and TokenCompose) beside ours (the base and the
    full model), in percent."""
    ours = {r["model"]: r for r in rows}
    keys = ("mg2", "mg3", "mg4", "mg5", "object_accuracy")
    body = [[lang.tr("SD 1.4 (article, COCO)", "SD 1.4 (paper, COCO)"),
             *(lang.number(PAPER["sd14"][k], 1) for k in keys)],
            [lang.tr("TokenCompose (article, COCO)", "TokenCompose (paper, COCO)"),
             *(lang.number(PAPER["tokencompose"][k], 1) for k in keys)]]
    for name in (base, full):
        body.append([lang.Text(f"{model_name(name)} ({lang.tr('ce monde', 'this world')})"),
                     *(lang.number(100 * ours[name][k]["p"], 1) for k in keys)])
    return markdown_table([lang.tr("modèle", "model"), "MG-2", "MG-3", "MG-4", "MG-5",
                           lang.tr("objets", "objects")], body)


def share(value: Mapping) -> str:
    """``37,3 % (33,5–41,3)``: a share with its interval, as the prose quotes it."""
    return G.share_text(value)


def gain(rows: Sequence[Mapping], model: str, against: str, key: str = "mg3") -> dict:
    """``model`` against ``against`` on ``key``: the change with Newcombe's interval, in words, and whether it
    reaches the paper's gain on MG-3."""
    by = {r["model"]: r for r in rows}
    d = LC.difference(by[model][key], by[against][key])
    return {"text": LC.points_text(d), "p": d["p"], "clear": d["lo"] > 0 or d["hi"] < 0,
            "verdict": lang.tr("au-delà de l'intervalle de zéro" if (d["lo"] > 0 or d["hi"] < 0)
                               else "dans l'intervalle de zéro",
                               "beyond the interval of zero" if (d["lo"] > 0 or d["hi"] < 0)
                               else "within the interval of zero"),
            "paper": G.reached(d["p"], PAPER_GAIN_MG3)}


def budget(manifest: Mapping) -> dict:
    """Images seen by a fine-tune (steps x batch) against the paper's."""
    ours = manifest["steps"] * manifest["recipe"]["batch_size"]
    paper = PAPER_TRAINING["steps"] * PAPER_TRAINING["batch"]
    return {"images": ours, "paper": paper, "ratio": ours / paper, "paper_steps": PAPER_TRAINING["steps"],
            "paper_batch": PAPER_TRAINING["batch"]}


def against_encoder(rows: Sequence[Mapping], encoder_result: Mapping, base: str) -> dict:
    """The MG-3 of a model that changed its text encoder instead (``encoder_result``, a benchmark result) against
    the best fine-tune with a grounding loss (the control left out): which lever moved MG-3 more."""
    best = max((r for r in rows if r["method"] not in ("base", "control")), key=lambda r: r["mg3"]["p"])
    more = encoder_result["mg"]["3"]["p"] > best["mg3"]["p"]
    return {"share": share(encoder_result["mg"]["3"]), "best": model_name(best["model"]),
            "best_share": share(best["mg3"]),
            "words": lang.tr("plus que" if more else "moins que", "more than" if more else "less than")}


def room(rows: Sequence[Mapping], base: str) -> dict:
    """Does the base leave room on the five-object prompts (MG-3 at most :data:`ROOM_MG3`)?"""
    mg3 = next(r for r in rows if r["model"] == base)["mg3"]
    return {"mg3": G.share_text(mg3), "limit": lang.percent(ROOM_MG3, 0), "room": mg3["p"] <= ROOM_MG3,
            "words": lang.tr("en dessous" if mg3["p"] <= ROOM_MG3 else "au-dessus",
                             "below" if mg3["p"] <= ROOM_MG3 else "above")}


def seeds_table(spread: Mapping[str, Mapping[str, Mapping[str, float]]]):
    """Per method, the mean over its training seeds and their range (min–max) of MG-3, object accuracy,
    colour attribution and the attention-mask IoU."""
    keys = (("mg3", "MG-3", 100), ("object_accuracy", lang.tr("objets", "objects"), 100),
            ("colour_attribution", G.category_name("colour_attribution"), 100), ("iou", "IoU", 100))
    body = []
    for method, values in spread.items():
        row = [lang.tr(*METHOD_NAMES[method]), str(values["mg3"]["seeds"])]
        for key, _, scale in keys:
            v = values.get(key)
            row.append("–" if v is None else f"{lang.number(scale * v['mean'], 1)} "
                                             f"({lang.number(scale * v['min'], 1)}\u2060–\u2060"
                                             f"{lang.number(scale * v['max'], 1)})")
        body.append(row)
    return markdown_table([lang.tr("méthode", "method"), lang.tr("graines", "seeds"), *(k[1] for k in keys)], body)


def iou_table(rows: Sequence[Mapping]):
    """The attention-mask IoU (%) per layer group of each model, with its t-interval, and its paired change
    from the base's on the same prompts and noise (points, t-interval)."""
    groups = list(rows[0]["iou"])
    body = []
    for r in rows:
        cells = []
        for g in groups:
            m = r["iou"][g]
            cell = f"{lang.number(100 * m['mean'], 1)} ({lang.number(100 * m['lo'], 1)}\u2060–\u2060" \
                   f"{lang.number(100 * m['hi'], 1)})"
            change = r["iou_change"][g]
            if r is not rows[0]:
                cell += f" [{_signed(100 * change['mean'])}]"
            cells.append(cell)
        body.append([model_name(r["model"]), *cells])
    headers = [lang.tr("modèle", "model"), *(lang.tr("toutes", "all") if g == "all" else _group_text(g)
                                              for g in groups)]
    return markdown_table(headers, body)


def _group_text(name: str) -> str:
    """A group as results name it (``"up 8x8"``) in the chapter's words (:func:`group_label`)."""
    block, grid = name.split()
    return group_label((block, tuple(int(side) for side in grid.split("x"))))


def _signed(value: float) -> str:
    return ("−" if value < 0 else "+") + lang.number(abs(value), 1)


def iou_change(rows: Sequence[Mapping], model: str, group: str = "all") -> dict:
    """The paired change of ``model``'s IoU from the base's in ``group``, in points with its t-interval."""
    c = next(r for r in rows if r["model"] == model)["iou_change"][group]
    clear = c["lo"] > 0 or c["hi"] < 0
    return {"text": lang.Text(lang.tr(f"{_signed(100 * c['mean'])} points ({_signed(100 * c['lo'])} à "
                                      f"{_signed(100 * c['hi'])})",
                                      f"{_signed(100 * c['mean'])} points ({_signed(100 * c['lo'])} to "
                                      f"{_signed(100 * c['hi'])})")),
            "up": c["lo"] > 0, "clear": clear}
