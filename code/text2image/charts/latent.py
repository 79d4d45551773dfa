"""Figures, tables and words of the chapter "Text-guided latent diffusion".

Every function draws one figure (and returns it), builds one Markdown table,
or returns numbers and words for the prose, whose sentences stay in the
chapter. Every proportion comes with its 95 % Wilson interval, every
difference of two with Newcombe's; the sweeps' and the benchmark's charts are
the pixel-space chapter's and the benchmark's own (:mod:`text2image.charts.generative`,
:mod:`text2image.charts.benchmark`), drawn with this chapter's names.
"""

from __future__ import annotations

import textwrap
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from text2image import lang
from text2image.charts import generative as G
from text2image.charts.diagrams import traced
from text2image.evaluate import intervals
from text2image.plots import MIN_TEXT_PT, WIDTH, show_image, subplots, wrap
from text2image.tables import interval, markdown_table

SMALL = MIN_TEXT_PT  # the smallest font size of the chapter's figures

MODEL_NAMES = {"ldm-unet": ("UNet", "UNet"), "ldm-dit": ("DiT", "DiT"),
               "ldm-unet-twins-clip": ("UNet + CLIP à jumeaux", "UNet + twins CLIP"),
               "ldm-unet-twins-batches": ("UNet + CLIP et lots à jumeaux", "UNet + twins CLIP and batches")}
SHORT_NAMES = {"ldm-unet": ("UNet", "UNet"), "ldm-dit": ("DiT", "DiT"),
               "ldm-unet-twins-clip": ("UNet·CJ", "UNet·TC"), "ldm-unet-twins-batches": ("UNet·CJ·LJ", "UNet·TC·TB")}
COLOURS = {"ldm-unet": "#377eb8", "ldm-dit": "#e41a1c", "ldm-unet-twins-clip": "#4daf4a",
           "ldm-unet-twins-batches": "#984ea3"}
SAMPLER_NAMES = {"ddim": ("DDIM", "DDIM"), "euler": ("Euler", "Euler"), "dpm": ("DPM-Solver++", "DPM-Solver++"),
                 "ddpm": ("DDPM ancestral", "DDPM ancestral")}
SAMPLER_COLOURS = {"ddim": "#377eb8", "euler": "#4daf4a", "dpm": "#ff7f00", "ddpm": "#984ea3"}
OBJECTIVE_NAMES = {"epsilon": ("la prédiction du bruit de DDPM", "DDPM's noise prediction"),
                   "velocity": ("la prédiction de la vitesse du *flow matching*", "flow matching's velocity prediction")}
# What the chapter asks of the shipped model (colours, two-object presence; position as a goal), and the
# pipeline's speed against a bare loop.
GOALS = {"colours": 0.95, "two_objects": 0.80, "position": 0.80}
THROUGHPUT_GOAL = 0.95


def model_name(name: str) -> str:
    return lang.tr(*MODEL_NAMES[name])


def short_name(name: str) -> str:
    return lang.tr(*SHORT_NAMES[name])


def sampler_name(sampler: str) -> str:
    return lang.tr(*SAMPLER_NAMES[sampler])


def objective_name(objective: str) -> str:
    return lang.Text(lang.tr(*OBJECTIVE_NAMES[objective]))


def minutes(manifest: Mapping) -> float:
    return manifest["train_seconds"] / 60


def _style(ax) -> None:
    ax.title.set_fontsize(10)
    ax.xaxis.label.set_fontsize(SMALL)
    ax.yaxis.label.set_fontsize(SMALL)
    ax.tick_params(labelsize=SMALL)


# ----------------------------------------------------------------------------- the latent space

def latent_chart(example: Mapping[str, Any]):
    """An image, the four channels of its scaled latent (8 x 8), and what the VAE decodes from that latent."""
    z = example["latent"]
    fig, axes = subplots(1, 2 + len(z), figsize=(WIDTH, 1.9))
    show_image(axes[0], example["image"])
    axes[0].set_title(lang.tr("image 32 × 32 × 3", "image 32 × 32 × 3"), fontsize=SMALL)
    bound = float(np.abs(z).max()) or 1.0
    for k, channel in enumerate(z, start=1):
        axes[k].imshow(channel, cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
        axes[k].set_xticks([])
        axes[k].set_yticks([])
        axes[k].grid(False)
        for spine in axes[k].spines.values():
            spine.set_visible(False)
        axes[k].set_title(lang.tr(f"canal {k}", f"channel {k}"), fontsize=SMALL)
    show_image(axes[-1], example["decoded"])
    axes[-1].set_title(lang.tr("décodée", "decoded"), fontsize=SMALL)
    fig.tight_layout()
    return fig


def space(pipe) -> dict:
    """The latent space's numbers for the prose, read from the pipeline's configs."""
    from text2image.pipelines.latent import describe

    d = describe(pipe)
    h, w, c = d["latent_shape"]
    pixels = d["resolution"] ** 2 * 3
    return {"resolution": d["resolution"], "latent": lang.Text(f"{h} × {w} × {c}"), "latent_numbers": h * w * c,
            "pixels": pixels, "ratio": pixels / (h * w * c), "factor": d["resolution"] // h,
            "scaling": d["scaling_factor"], "tokens": d["tokens"], "text_width": d["text_width"],
            "text_layers": d["text_layers"], "vocabulary": d["vocabulary"]}


# ----------------------------------------------------------------------------- the two denoisers

def shapes_table(unet_pipe, dit_pipe):
    """The shapes a tensor takes through the pipeline: the text encoder, then each denoiser, then the VAE's
    decoder, read by running them once on one prompt."""
    from text2image.models import latent as L
    from text2image.pipelines.prompts import encode_prompts

    rows = []
    device = unet_pipe.denoiser.device
    ids, mask = (t.to(device) for t in encode_prompts(["a red circle to the left of a blue square"]))
    rows += [(lang.tr("texte", "text"), lang.tr("légende → états des jetons", "caption → token states"), shape)
             for _, shape in traced([("text", unet_pipe.text_encoder)],
                                     lambda: unet_pipe.text_encoder(input_ids=ids, attention_mask=mask))]
    states = L.encode_text(unet_pipe.text_encoder, ids, mask)
    x = torch.zeros(1, *unet_pipe.latent_shape, device=device)
    unet = unet_pipe.unet
    stages = [(lang.tr("entrée", "input"), unet.conv_in)]
    stages += [(f"{lang.tr('descente', 'down')} {k} ({type(b).__name__})", b) for k, b in enumerate(unet.down_blocks, 1)]
    stages.append((f"{lang.tr('milieu', 'middle')} ({type(unet.mid_block).__name__})", unet.mid_block))
    stages += [(f"{lang.tr('montée', 'up')} {k} ({type(b).__name__})", b) for k, b in enumerate(unet.up_blocks, 1)]
    stages.append((lang.tr("sortie", "output"), unet.conv_out))
    rows += [("UNet", name, shape) for name, shape in
             traced(stages, lambda: L.predict(unet, x, torch.tensor(500, device=device), states, mask))]
    dit = dit_pipe.transformer
    stages = [(lang.tr("découpage en jetons", "patches → tokens"), dit.pos_embed),
              (lang.tr("légende → largeur du DiT", "caption → DiT width"), dit.caption_projection)]
    stages += [(lang.tr(f"bloc {k}", f"block {k}"), b) for k, b in enumerate(dit.transformer_blocks, 1)
               if k in (1, len(dit.transformer_blocks))]
    stages.append((lang.tr("sortie", "output"), dit.proj_out))
    d_states = L.encode_text(dit_pipe.text_encoder, ids, mask)
    dit_shapes = traced(stages, lambda: L.predict(dit, x, torch.tensor(500, device=device), d_states, mask))
    # proj_out gives patches; the output is unpatched
    dit_shapes[-1] = (dit_shapes[-1][0], tuple(dit_pipe.latent_shape))
    rows += [("DiT", name, shape) for name, shape in dit_shapes]
    rows += [("VAE", lang.tr("latent → image", "latent → image"), shape)
             for _, shape in traced([("decoder", unet_pipe.vae.decoder)], lambda: unet_pipe.decode(x))]
    body = [[net, name, " × ".join(str(d) for d in shape)] for net, name, shape in rows]
    return markdown_table([lang.tr("réseau", "network"), lang.tr("étape", "stage"), lang.tr("forme", "shape")],
                          body, align="llr")


def architecture(unet_pipe, dit_pipe) -> dict:
    """Numbers of the two denoisers for the prose, read from their configs."""
    unet, dit = unet_pipe.unet.config, dit_pipe.transformer.config
    size = unet.sample_size
    width = dit.num_attention_heads * dit.attention_head_dim
    tokens = (dit.sample_size // dit.patch_size) ** 2
    u = sum(p.numel() for p in unet_pipe.unet.parameters())
    d = sum(p.numel() for p in dit_pipe.transformer.parameters())
    return {"channels": lang.Text(" / ".join(str(c) for c in unet.block_out_channels)),
            "levels": len(unet.block_out_channels),
            "resolutions": lang.Text(" / ".join(str(size // 2 ** k) for k in range(len(unet.block_out_channels)))),
            "unet_heads": unet.attention_head_dim, "layers": unet.layers_per_block,
            "dit_width": width, "dit_layers": dit.num_layers, "dit_heads": dit.num_attention_heads,
            "patch": dit.patch_size, "tokens": tokens, "cross": unet.cross_attention_dim,
            "unet_parameters": u, "dit_parameters": d, "gap": abs(d / u - 1)}


def components_table(pipe):
    """The pipeline's registered components: name, class, parameters, and what its config says of it."""
    from text2image.pipelines.latent import describe

    d = describe(pipe)
    rows = []
    for name, component in pipe.components.items():
        if component is None:
            continue
        count = sum(p.numel() for p in component.parameters()) if isinstance(component, torch.nn.Module) else None
        rows.append([f"`{name}`", f"`{type(component).__name__}`",
                     lang.integer(count) if count is not None else "–", _component_note(name, component, d)])
    return markdown_table([lang.tr("composant", "component"), lang.tr("classe", "class"),
                           lang.tr("paramètres", "parameters"), lang.tr("rôle", "role")], rows, align="llrl")


def _component_note(name: str, component, d: Mapping) -> str:
    h, w, c = d["latent_shape"]
    notes = {
        "vae": lang.tr(f"image ↔ latent {h} × {w} × {c}, facteur d'échelle {lang.number(d['scaling_factor'], 3)}",
                       f"image ↔ latent {h} × {w} × {c}, scaling factor {lang.number(d['scaling_factor'], 3)}"),
        "text_encoder": lang.tr(f"gelé : {d['tokens']} jetons → états de {d['text_width']}",
                                f"frozen: {d['tokens']} tokens → states of {d['text_width']}"),
        "tokenizer": lang.tr(f"mots du monde ({d['vocabulary']} jetons)", f"the world's words ({d['vocabulary']} tokens)"),
        "scheduler": lang.tr(f"{d['train_steps']} pas d'entraînement, bêtas « {d['beta_schedule']} »",
                             f"{d['train_steps']} training steps, betas \"{d['beta_schedule']}\""),
    }
    return lang.Text(notes.get(name, lang.tr(f"débruiteur, attention croisée de {d['cross_attention_dim']}",
                                             f"denoiser, cross-attention of {d['cross_attention_dim']}")))


def bad_input_table(pipe) -> "Markdown":
    """Each bad input the pipeline refuses and the one-line error the pipeline gives it (shortened to the column)."""
    from text2image.pipelines.prompts import SamplingError

    good = dict(prompt=["a red circle"], num_inference_steps=2, guidance_scale=3.0)
    cases = [
        (lang.tr("mot inconnu", "unknown word"), dict(prompt=["a purple circle"])),
        (lang.tr("invite trop longue", "prompt too long"), dict(prompt=["a red circle " + "and a blue square " * 8])),
        (lang.tr("0 pas", "0 steps"), dict(num_inference_steps=0)),
        (lang.tr("guidage négatif", "negative guidance"), dict(guidance_scale=-1.0)),
        (lang.tr("2 générateurs pour 1 invite", "2 generators for 1 prompt"),
         dict(generator=[torch.Generator(), torch.Generator()])),
    ]
    rows = []
    for label, change in cases:
        try:
            pipe(**{**good, **change})
            message = lang.tr("(aucune erreur)", "(no error)")
        except (ValueError, SamplingError) as error:
            message = f"`{type(error).__name__}`: {textwrap.shorten(str(error), 90, placeholder=' …')}"
        rows.append([label, message])
    return markdown_table([lang.tr("entrée", "input"), lang.tr("erreur", "error")], rows)


# ----------------------------------------------------------------------------- Stable Diffusion 1.4

def sd_table(ours: Mapping, sd: Mapping, read_from_configs: bool):
    """This book's pipeline beside SD 1.4, component by component (SD's read from its configs when its weights
    are on this machine, else its published figures)."""
    def shape(s):
        return " × ".join(str(v) for v in s)

    def millions(v):
        digits = 2 if v and v < 10e6 else 0
        return lang.tr(f"{lang.number(v / 1e6, digits)}{lang.NNBSP}M", f"{lang.number(v / 1e6, digits)}M") if v else "–"

    rows = [
        (lang.tr("image (px)", "image (px)"), lambda d: f"{d['resolution']} × {d['resolution']}"),
        (lang.tr("latent (H × L × C)", "latent (H × W × C)"), lambda d: shape(d["latent_shape"])),
        (lang.tr("facteur d'échelle du latent", "latent scaling factor"), lambda d: lang.number(d["scaling_factor"], 5)),
        (lang.tr("jetons de texte", "text tokens"), lambda d: str(d["tokens"])),
        (lang.tr("largeur des états de texte", "text state width"), lambda d: str(d["text_width"])),
        (lang.tr("couches de l'encodeur de texte", "text encoder layers"), lambda d: str(d["text_layers"])),
        (lang.tr("encodeur de texte (paramètres)", "text encoder (parameters)"),
         lambda d: millions(d["parameters"].get("text_encoder"))),
        (lang.tr("débruiteur", "denoiser"), lambda d: f"`{d['denoiser']}`"),
        (lang.tr("canaux par niveau", "channels per level"),
         lambda d: " / ".join(str(c) for c in d["block_out_channels"]) if d.get("block_out_channels") else "–"),
        (lang.tr("débruiteur (paramètres)", "denoiser (parameters)"), lambda d: millions(d["parameters"].get("denoiser"))),
        (lang.tr("pas d'entraînement, bêtas", "training steps, betas"),
         lambda d: f"{lang.integer(d['train_steps'])}, {d['beta_schedule']}"),
    ]
    source = lang.tr("SD 1.4 (configurations)", "SD 1.4 (configs)") if read_from_configs else \
        lang.tr("SD 1.4 (publié)", "SD 1.4 (published)")
    return markdown_table([lang.tr("composant", "component"), lang.tr("ce livre", "this book"), source],
                          [[label, value(ours), value(sd)] for label, value in rows])


# ----------------------------------------------------------------------------- training and sampling

VAL_PANELS = ("val_loss", "val_colours", "val_two_objects", "val_position")


def training_curves(histories: Mapping[str, tuple[list[dict], list[dict]]]):
    """The validation loss and three categories on validation prompts against the training step."""
    titles = {"val_loss": lang.tr("perte de validation", "validation loss"),
              "val_colours": G.category_name("colours"), "val_two_objects": G.category_name("two_objects"),
              "val_position": G.category_name("position")}
    fig, axes = subplots(2, 2, figsize=(WIDTH, 4.6))
    for ax, key in zip(np.ravel(axes), VAL_PANELS):
        for name, (_, evals) in histories.items():
            points = [(e["step"], e[key]) for e in evals if key in e]
            if points:
                xs, ys = zip(*points)
                ys = np.array(ys) * (1 if key == "val_loss" else 100)
                ax.plot(xs, ys, "o-", ms=3, lw=1.1, color=COLOURS[name], label=model_name(name))
        ax.set_title(titles[key])
        ax.set_xlabel(lang.tr("pas d'entraînement", "training step"))
        if key != "val_loss":
            ax.set_ylim(0, 104)
        _style(ax)
    fig.legend(*np.ravel(axes)[0].get_legend_handles_labels(), loc="upper center", ncol=2, fontsize=SMALL,
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return fig


def guidance_chart(sweeps: Mapping[str, Sequence[tuple[float, Mapping]]]):
    labels = {k: model_name(k) for k in sweeps}
    return G.sweep_chart(sweeps, lang.tr("échelle de guidage", "guidance scale"), colours=COLOURS, labels=labels)


def scheduler_chart(sweeps: Mapping[str, Sequence[tuple[int, Mapping]]]):
    labels = {k: sampler_name(k) for k in sweeps}
    return G.sweep_chart(sweeps, lang.tr("pas d'échantillonnage", "sampling steps"), log_x=True,
                         colours=SAMPLER_COLOURS, labels=labels)


def best_setting(points, category: str = "overall"):
    return G.best_setting(points, category)


def share_text(s) -> str:
    return G.share_text(s)


def leader(results: Mapping[str, Mapping], category: str, naming: Callable | None = None) -> dict:
    return G.leader(results, category, naming or model_name)


def tie_words(found: Mapping) -> str:
    return G.tie_words(found)


def steps_leader(sweeps: Mapping[str, Sequence[tuple[int, Mapping]]], steps: int, category: str = "overall") -> dict:
    """Which scheduler scores best at ``steps`` sampling steps."""
    at = {sampler: dict(points)[steps] for sampler, points in sweeps.items() if steps in dict(points)}
    return G.leader(at, category, sampler_name)


# ----------------------------------------------------------------------------- what carries space

def difference(a: Mapping, b: Mapping) -> dict:
    """``a - b`` of two shares (dicts of the benchmark) with Newcombe's 95 % interval."""
    def share(d):
        return intervals.Share(d["k"], d["n"], d["p"], d["lo"], d["hi"])
    return intervals.difference(share(a), share(b))


def points_text(d: Mapping) -> str:
    """``+12,3 points (4,1 à 20,2)``: a difference of shares as the prose quotes it."""
    def signed(v: float, plus: bool = False) -> str:  # a true minus sign, and a plus where asked
        sign = "−" if v < 0 else ("+" if plus and v > 0 else "")
        return f"{sign}{lang.number(abs(v), 1)}"

    lo, hi = signed(100 * d["lo"]), signed(100 * d["hi"])
    value = signed(100 * d["p"], plus=True)
    return lang.Text(lang.tr(f"{value} points ({lo} à {hi})", f"{value} points ({lo} to {hi})"))


def levers(results: Mapping[str, Mapping], base: str, category: str = "position") -> dict:
    """What each lever changes in ``category`` against the ``base`` model: the difference with its interval,
    and the lever that moved it most, in words (whether its interval excludes zero, too)."""
    moved = {name: difference(r["categories"][category], results[base]["categories"][category])
             for name, r in results.items() if name != base}
    best = max(moved, key=lambda n: moved[n]["p"])
    clear = moved[best]["lo"] > 0
    return {"moved": moved, "best": best, "best_name": model_name(best), "best_text": points_text(moved[best]),
            "clear": clear,
            "verdict": lang.tr("au-delà de l'intervalle" if clear else "dans l'intervalle de zéro",
                               "beyond its interval" if clear else "within the interval of zero")}


def levers_table(results: Mapping[str, Mapping], probes: Mapping[str, float], text_encoders: Mapping[str, str],
                 twin_batches: Mapping[str, bool], base: str):
    """One row per lever: the text encoder, its relation probe, twins in the batches, then position, colour
    attribution and the relation given both objects, with their intervals, and position against ``base``."""
    rows = []
    for name, r in results.items():
        change = points_text(difference(r["categories"]["position"], results[base]["categories"]["position"])) \
            if name != base else "–"
        rows.append([model_name(name), f"`{text_encoders[name]}`", lang.percent(probes[text_encoders[name]], 1),
                     lang.tr("oui", "yes") if twin_batches[name] else lang.tr("non", "no"),
                     interval(r["categories"]["position"]), change,
                     interval(r["categories"]["colour_attribution"]),
                     interval(r["relation"]) if r.get("relation") else "–"])
    headers = [lang.tr("modèle", "model"), lang.tr("encodeur de texte", "text encoder"),
               lang.tr("sonde de relation", "relation probe"), lang.tr("lots à jumeaux", "twin batches"),
               G.category_name("position"), lang.tr("écart de position", "position change"),
               G.category_name("colour_attribution"), lang.tr("relation, objets présents", "relation, both present")]
    return markdown_table(headers, rows)


# ----------------------------------------------------------------------------- side by side

def goals(results: Mapping[str, Mapping], name: str) -> dict:
    """What the chapter asks of the shipped model ``name``: colours, two objects and position, met or not."""
    out = {}
    for category, target in GOALS.items():
        s = results[name]["categories"][category]
        out[category] = {"share": share_text(s), "target": lang.percent(target, 0), "status": G.reached(s["p"], target)}
    return out


def objective_words(evidence: Mapping[str, Mapping], chosen: str) -> dict:
    """The words the prose needs about the two objectives: the pixel-space chapter's overall score for each,
    the one it favours (``better``), whether their intervals overlap (``margin``) and the recipes' own."""
    by_objective = {"epsilon": evidence["ddpm"]["overall"], "velocity": evidence["flow-matching"]["overall"]}
    better = max(by_objective, key=lambda k: by_objective[k]["p"])
    a, b = by_objective["epsilon"], by_objective["velocity"]
    tied = a["lo"] <= b["hi"] and b["lo"] <= a["hi"]
    return {"ddpm": share_text(a), "flow": share_text(b), "better": objective_name(better), "tied": tied,
            "chosen": objective_name(chosen),
            "margin": lang.tr("à égalité, aux intervalles près" if tied else "au-delà des intervalles",
                              "tied, within the intervals" if tied else "beyond the intervals")}


def throughput_words(measured: Mapping[str, Mapping]) -> dict:
    worst = min(measured, key=lambda n: measured[n]["ratio"])
    m = measured[worst]
    return {"worst": model_name(worst), "ratio": lang.number(m["ratio"], 3),
            "pipeline": lang.number(m["pipeline_images_per_second"], 1),
            "bare": lang.number(m["bare_images_per_second"], 1),
            "status": G.reached(m["ratio"], THROUGHPUT_GOAL), "goal": lang.number(THROUGHPUT_GOAL, 2)}


def comparison_table(results: Mapping[str, Mapping], manifests: Mapping[str, Mapping],
                     denoisers: Mapping[str, int], throughput: Mapping[str, Mapping] | None = None):
    """The models side by side: denoiser size, training budget and speed, sampling speed, the benchmark's
    categories with their intervals, the relation given both objects, and the Fréchet distance."""
    from text2image.charts import benchmark as CB

    names = list(results)
    rows = [
        (lang.tr("paramètres du débruiteur", "denoiser parameters"), [lang.integer(denoisers[n]) for n in names]),
        (lang.tr("paramètres du pipeline", "pipeline parameters"),
         [lang.integer(manifests[n]["parameters"]) for n in names]),
        (lang.tr("pas × lot", "steps × batch"),
         [f"{lang.integer(manifests[n]['steps'])} × {manifests[n]['recipe']['batch_size']}" for n in names]),
        (lang.tr("entraînement (min)", "training (min)"), [lang.number(minutes(manifests[n]), 1) for n in names]),
        (lang.tr("entraînement (images/s)", "training (images/s)"),
         [lang.number(manifests[n]["samples_per_second"], 1) for n in names]),
        (lang.tr("échantillonnage (images/s)", "sampling (images/s)"),
         [lang.number(results[n]["images_per_second"], 1) for n in names]),
    ]
    if throughput:
        rows.append((lang.tr("pipeline / boucle nue", "pipeline / bare loop"),
                     [lang.number(throughput[n]["ratio"], 3) if n in throughput else "–" for n in names]))
    rows += [(G.category_name(c), [interval(results[n]["overall"] if c == "overall" else results[n]["categories"][c])
                                   for n in names])
             for c in ("colours", "two_objects", "colour_attribution", "counting", "position", "overall")]
    rows.append((lang.tr("relation, objets présents", "relation, both present"),
                 [interval(results[n]["relation"]) if results[n].get("relation") else "–" for n in names]))
    rows.append((lang.tr("Fréchet ×10³ (plancher)", "Fréchet ×10³ (floor)"), [CB.frechet(results[n]) for n in names]))
    headers = [lang.tr("mesure", "measure"), *(short_name(n) for n in names)]
    return markdown_table(headers, [[label, *cells] for label, cells in rows])


def dalle_table(latent: tuple[str, Mapping], dalle: tuple[str, Mapping]):
    """The best latent-diffusion model beside the best DALL·E variant, on the same prompts (the whole benchmark)."""
    (lname, lresult), (dname, dresult) = latent, dalle
    rows = [(G.category_name(c), interval(lresult["overall"] if c == "overall" else lresult["categories"][c]),
             interval(dresult["overall"] if c == "overall" else dresult["categories"][c]))
            for c in ("colours", "two_objects", "colour_attribution", "counting", "position", "overall")]
    rows.append((lang.tr("relation, objets présents", "relation, both present"),
                 interval(lresult["relation"]) if lresult.get("relation") else "–",
                 interval(dresult["relation"]) if dresult.get("relation") else "–"))
    rows.append((lang.tr("échantillonnage (images/s)", "sampling (images/s)"),
                 lang.number(lresult["images_per_second"], 1), lang.number(dresult["images_per_second"], 1)))
    return markdown_table([lang.tr("mesure", "measure"), model_name(lname), dname], [list(r) for r in rows])


def scheduler_samples(pipe, prompts: Sequence[str], samplers: Sequence[str], steps: int, guidance: float,
                      seed: int = 0):
    """The same prompts and noise drawn with each scheduler: one row per scheduler, one column per prompt."""
    fig, axes = subplots(len(samplers), len(prompts), figsize=(WIDTH, 1.45 * len(samplers) + 0.6), squeeze=False)
    for r, sampler in enumerate(samplers):
        images = pipe.with_scheduler(sampler)(list(prompts), num_inference_steps=steps, guidance_scale=guidance,
                                             generator=torch.Generator().manual_seed(seed), output_type="uint8").images
        for c, image in enumerate(images):
            show_image(axes[r, c], image)
            if r == 0:
                quoted = lang.quoted(prompts[c])
                axes[r, c].set_title(wrap(quoted, 22), fontsize=SMALL)
        axes[r, 0].set_ylabel(sampler_name(sampler), fontsize=SMALL)
    fig.tight_layout(h_pad=0.4)
    return fig


def sd_space(sd: Mapping | None = None) -> dict:
    """SD 1.4's latent for the prose: its shape in words, and how many times fewer numbers than its image."""
    from text2image import pretrained

    sd = sd or pretrained.SD14
    h, w, c = sd["latent_shape"]
    return {"latent": lang.Text(f"{h} × {w} × {c}"), "ratio": sd["resolution"] ** 2 * 3 / (h * w * c)}


def probe_words(probe: float) -> str:
    """What a relation probe says of the text states, as a clause ("hold the relation", ...)."""
    if probe >= 0.9:
        return lang.tr("contiennent bien la relation", "do hold the relation")
    if probe <= 0.6:
        return lang.tr("ne la contiennent guère mieux que le hasard", "hold it hardly better than chance")
    return lang.tr("ne la contiennent qu'en partie", "hold it only in part")
