"""Figures, tables and words of the chapter "GANs, diffusion and flow matching".

Every function draws one figure (and returns it), builds one Markdown table,
or returns numbers and words (model names, the leader of a category) for the
prose, whose sentences stay in the chapter. Every proportion comes with its
95 % Wilson interval; the naive reference the chapter measures itself against
(ANCHORS.md, "Calibration on this machine") lives in :data:`REFERENCE`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from text2image import lang
from text2image.charts.diagrams import traced
from text2image.evaluate import intervals
from text2image.models import diffusion as D
from text2image.plots import MIN_TEXT_PT, WIDTH, show_image, subplots, wrap
from text2image.tables import interval, markdown_table
from text2image.world.tensors import to_uint8

SMALL = MIN_TEXT_PT  # the smallest font size of the chapter's figures

MODEL_NAMES = {"gan": ("GAN", "GAN"), "gan-sn": ("GAN + normalisation spectrale", "GAN + spectral norm"),
               "ddpm": ("DDPM", "DDPM"), "flow-matching": ("flow matching", "flow matching")}
SHORT_NAMES = {"gan": ("GAN", "GAN"), "gan-sn": ("GAN-SN", "GAN-SN"), "ddpm": ("DDPM", "DDPM"),
               "flow-matching": ("FM", "FM"), "world": ("monde", "world")}
COLOURS = {"gan": "#e41a1c", "gan-sn": "#ff7f00", "ddpm": "#377eb8", "flow-matching": "#4daf4a"}
SAMPLER_NAMES = {"ddpm": ("DDPM ancestral", "DDPM ancestral"), "ddim": ("DDIM", "DDIM"),
                 "euler": ("Euler (flow matching)", "Euler (flow matching)")}
SAMPLER_COLOURS = {"ddpm": "#984ea3", "ddim": "#377eb8", "euler": "#4daf4a"}
CATEGORY_NAMES = {"single_object": ("objet seul", "single object"), "two_objects": ("deux objets", "two objects"),
                  "counting": ("comptage", "counting"), "colours": ("couleurs", "colours"),
                  "position": ("position", "position"),
                  "colour_attribution": ("attribution des couleurs", "colour attribution"),
                  "overall": ("global", "overall"), "correct": ("image correcte", "correct image")}

# The naive reference of ANCHORS.md ("Calibration on this machine"): a pixel-space flow-matching UNet of
# 1.7M parameters with a 2-layer text transformer, trained 60 minutes (3,143 steps of 64) on one- and
# two-object scenes, 30 Euler steps, guidance 3: single-object colour right in 36 of 36 prompts, both
# colours present in 88 % of two-object prompts, left/right right in 48 % of those (chance 50 %).
REFERENCE = {"parameters": 1.7e6, "minutes": 60, "steps": 3143, "batch": 64, "sampling_steps": 30,
             "guidance": 3.0, "colours": (36, 36), "both_colours": 0.88, "left_right": 0.48}
# What the chapter asks of the best of the three families, and for the training loop against a bare one.
GOALS = {"colours": 0.95, "two_objects": 0.80}
THROUGHPUT_GOAL = 1.10


def model_name(name: str) -> str:
    """The model's name as figures write it."""
    return lang.tr(*MODEL_NAMES[name])


def prose_name(name: str) -> str:
    """The model's name as the prose writes it: *flow matching* in italics in French, as the glossary wants
    English words without an established French one."""
    fr, en = MODEL_NAMES[name]
    return lang.tr(fr.replace("flow matching", "*flow matching*"), en)


def short_name(name: str) -> str:
    return lang.tr(*SHORT_NAMES[name])


def sampler_name(sampler: str) -> str:
    return lang.tr(*SAMPLER_NAMES[sampler])


def category_name(category: str) -> str:
    return lang.tr(*CATEGORY_NAMES[category])


def _style(ax) -> None:
    ax.title.set_fontsize(10)
    ax.xaxis.label.set_fontsize(SMALL)
    ax.yaxis.label.set_fontsize(SMALL)
    ax.tick_params(labelsize=SMALL)


# ----------------------------------------------------------------------------- the forward processes

DDPM_STEPS = (0, 50, 150, 300, 500, 999)
FLOW_LEVELS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)


def forward_images(image: np.ndarray, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """One image (32, 32, 3) noised by DDPM at :data:`DDPM_STEPS` and by flow matching at :data:`FLOW_LEVELS`,
    with the same noise, through the schedulers' own forward processes."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(127.5).sub(1)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    ddpm = D.ddpm_scheduler()
    rows = {"ddpm": [to_uint8(ddpm.add_noise(x, noise, torch.tensor([t])))[0] for t in DDPM_STEPS]}
    flow = D.flow_scheduler()

    def at(s: float) -> torch.Tensor:  # the training time step nearest to 1000 s (scale_noise looks it up exactly)
        return flow.timesteps[(flow.timesteps - 1000.0 * s).abs().argmin()][None]

    rows["flow"] = [image if s == 0 else to_uint8(flow.scale_noise(x, at(s), noise))[0] for s in FLOW_LEVELS]
    return rows


def forward_chart(image: np.ndarray, seed: int = 0):
    """Two rows: the scene under DDPM's noise at several t, and along flow matching's straight path."""
    rows = forward_images(image, seed)
    ddpm = D.ddpm_scheduler()
    fig, axes = subplots(2, len(DDPM_STEPS), figsize=(WIDTH, 3.0), squeeze=False)
    for k, (t, picture) in enumerate(zip(DDPM_STEPS, rows["ddpm"])):
        show_image(axes[0, k], picture)
        signal = float(ddpm.alphas_cumprod[t]) ** 0.5
        axes[0, k].set_title(f"t = {t}\n√ᾱ = {lang.number(signal, 2)}", fontsize=SMALL)
    for k, (s, picture) in enumerate(zip(FLOW_LEVELS, rows["flow"])):
        show_image(axes[1, k], picture)
        axes[1, k].set_title(f"s = {lang.number(s, 2)}", fontsize=SMALL)
    axes[0, 0].set_ylabel("DDPM", fontsize=SMALL)
    axes[1, 0].set_ylabel("flow matching", fontsize=SMALL)
    fig.tight_layout(h_pad=0.4)
    return fig


def snr_chart():
    """The signal-to-noise ratio of each forward process against the share of the way to pure noise."""
    ddpm, flow = D.ddpm_scheduler(), D.flow_scheduler()
    t = np.arange(D.TRAIN_STEPS) / (D.TRAIN_STEPS - 1)
    s, snr_flow = (v.numpy() for v in D.snr_flow(flow))
    fig, axes = subplots(1, 2, figsize=(WIDTH, 2.9))
    axes[0].plot(t, np.log10(D.snr_ddpm(ddpm).numpy()), color=COLOURS["ddpm"], label="DDPM (t / 999)")
    axes[0].plot(s, np.log10(np.maximum(snr_flow, 1e-12)), color=COLOURS["flow-matching"],
                 label="flow matching (s)")
    axes[0].set_ylabel("log₁₀ SNR")
    axes[0].axhline(0, color="grey", lw=0.8, ls=":")
    axes[0].set_ylim(-6, 6)
    axes[0].legend(fontsize=SMALL, frameon=False)
    axes[1].plot(t, D.alpha_bar(ddpm).sqrt().numpy(), color=COLOURS["ddpm"], label=lang.tr("image, DDPM", "image, DDPM"))
    axes[1].plot(t, (1 - D.alpha_bar(ddpm)).sqrt().numpy(), color=COLOURS["ddpm"], ls="--",
                 label=lang.tr("bruit, DDPM", "noise, DDPM"))
    axes[1].plot(s, 1 - s, color=COLOURS["flow-matching"], label=lang.tr("image, FM", "image, FM"))
    axes[1].plot(s, s, color=COLOURS["flow-matching"], ls="--", label=lang.tr("bruit, FM", "noise, FM"))
    axes[1].set_ylabel(lang.tr("coefficient", "coefficient"))
    axes[1].legend(fontsize=SMALL, frameon=False, ncol=2, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    for ax in axes:
        ax.set_xlabel(lang.tr("avancement vers le bruit", "way to pure noise"))
        _style(ax)
    fig.tight_layout()
    return fig


def snr_crossing() -> dict[str, float]:
    """Where each process has as much signal as noise (SNR = 1), as a share of the way to pure noise, and
    DDPM's SNR halfway."""
    ddpm = D.snr_ddpm(D.ddpm_scheduler()).numpy()
    return {"ddpm": float(np.argmax(ddpm < 1) / (D.TRAIN_STEPS - 1)), "flow": 0.5,
            "ddpm_mid": float(ddpm[D.TRAIN_STEPS // 2])}


def estimate_chart(errors: Mapping[str, Sequence[Mapping[str, float]]]):
    """The error of each diffusion model's one-step estimate of the image against the signal-to-noise ratio,
    noisiest on the right, with its 95 % interval."""
    fig, ax = subplots(1, 1, figsize=(WIDTH, 2.9))
    for name, rows in errors.items():
        x = np.array([r["log10_snr"] for r in rows])
        y = np.array([r["error"] for r in rows])
        ax.fill_between(x, [r["lo"] for r in rows], [r["hi"] for r in rows], color=COLOURS[name], alpha=0.2, lw=0)
        ax.plot(x, y, marker="o", ms=3, color=COLOURS[name], label=model_name(name))
    ax.set_xscale("linear")
    ax.invert_xaxis()
    ax.set_yscale("log")
    ax.axvline(0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel(lang.tr("log₁₀ SNR (plus bruité à droite)", "log₁₀ SNR (noisier to the right)"))
    ax.set_ylabel(lang.tr("erreur quadratique de l'image estimée", "squared error of the estimated image"))
    ax.legend(fontsize=SMALL, frameon=False)
    _style(ax)
    fig.tight_layout()
    return fig


def error_at(rows: Sequence[Mapping[str, float]], log10_snr: float) -> float:
    """The estimate's error at the level closest to ``log10_snr``."""
    return min(rows, key=lambda r: abs(r["log10_snr"] - log10_snr))["error"]


# ----------------------------------------------------------------------------- training curves

def _smooth(values: Sequence[float], window: int) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if len(v) < window or window < 2:
        return v
    kernel = np.ones(window) / window
    return np.convolve(v, kernel, mode="valid")


def gan_curves(histories: Mapping[str, tuple[list[dict], list[dict]]], window: int = 20):
    """The two GANs' losses and the discriminator's verdicts (probability 'real') along training."""
    fig, axes = subplots(1, 2, figsize=(WIDTH, 3.1))
    for name, (log, _) in histories.items():
        if not log:
            continue
        steps = np.array([r["step"] for r in log], dtype=float)
        colour = COLOURS[name]
        for key, style in (("d_loss", "-"), ("g_loss", "--")):
            v = _smooth([r.get(key, np.nan) for r in log], window)
            axes[0].plot(steps[len(steps) - len(v):], v, style, color=colour, lw=1.1)
        for key, style in (("d_real", "-"), ("d_fake", ":")):
            v = _smooth([r.get(key, np.nan) for r in log], window)
            axes[1].plot(steps[len(steps) - len(v):], v, style, color=colour, lw=1.1)
    axes[0].set_title(lang.tr("pertes (— D, -- G)", "losses (— D, -- G)"))
    axes[1].set_title(lang.tr("D : réel (—), généré (···)", "D: real (—), generated (···)"))
    axes[1].set_ylim(0, 1)
    for ax in axes:
        ax.set_xlabel(lang.tr("pas d'entraînement", "training step"))
        _style(ax)
    handles = [axes[0].plot([], [], color=COLOURS[n], label=short_name(n))[0] for n in histories]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=SMALL, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return fig


VAL_PANELS = ("val_colours", "val_two_objects", "val_position", "val_diversity")


def val_curves(histories: Mapping[str, tuple[list[dict], list[dict]]]):
    """The monitoring on validation prompts against the training step, for every model: three categories
    of the benchmark, and the diversity of the draws of a prompt relative to the world's."""
    fig, axes = subplots(2, 2, figsize=(WIDTH, 5.2))
    axes = np.ravel(axes)
    titles = {"val_colours": category_name("colours"), "val_two_objects": category_name("two_objects"),
              "val_position": category_name("position"),
              "val_diversity": lang.tr("diversité (monde = 1)", "diversity (world = 1)")}
    for ax, key in zip(axes, VAL_PANELS):
        for name, (_, evals) in histories.items():
            points = [(e["step"], e[key]) for e in evals if key in e]
            if points:
                ax.plot(*zip(*points), "o-", ms=3, lw=1.1, color=COLOURS[name], label=short_name(name))
        ax.set_title(titles[key])
        ax.set_ylim(0, 1.05 if key != "val_diversity" else None)
        if key == "val_diversity":
            ax.axhline(1, color="grey", lw=0.8, ls=":")
            ax.set_ylim(bottom=0)
        ax.set_xlabel(lang.tr("pas d'entraînement", "training step"))
        _style(ax)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncol=4, fontsize=SMALL, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig


def first_step_at(evals: Sequence[Mapping], key: str, level: float) -> int | None:
    """The first evaluated step where ``key`` reaches ``level`` (``None``: never)."""
    return next((int(e["step"]) for e in evals if e.get(key, -1) >= level), None)


def steps_text(n: int | None) -> str:
    return lang.Text("—") if n is None else lang.integer(n)


# ----------------------------------------------------------------------------- samples

def collapse_chart(draws: Mapping[str, np.ndarray], prompt: str):
    """One row per model: the first draws of one prompt (mode collapse shows as a row of copies)."""
    names = list(draws)
    n = min(len(v) for v in draws.values())
    fig, axes = subplots(len(names), n, figsize=(WIDTH, 1.05 * len(names) + 0.5), squeeze=False)
    for r, name in enumerate(names):
        for c in range(n):
            show_image(axes[r, c], draws[name][c])
        axes[r, 0].set_ylabel(wrap(short_name(name), 10), fontsize=SMALL)
    quoted = lang.quoted(prompt)
    fig.suptitle(wrap(quoted, 70), fontsize=SMALL)
    fig.tight_layout(rect=(0, 0, 1, 0.94), h_pad=0.3, w_pad=0.3)
    return fig


def trajectory_chart(runs: Mapping[str, tuple[list[int], list[float], list[np.ndarray]]], prompt: str):
    """One row per sampler: the sample after a few of its steps, from the noise to the image."""
    n = max(len(run[2]) for run in runs.values())
    fig, axes = subplots(len(runs), n, figsize=(WIDTH, 1.35 * len(runs) + 0.5), squeeze=False)
    for r, (sampler, (steps, levels, images)) in enumerate(runs.items()):
        for c in range(n):
            ax = axes[r, c]
            if c < len(images):
                show_image(ax, images[c])
                ax.set_title(lang.tr(f"pas {steps[c]}", f"step {steps[c]}"), fontsize=SMALL)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(wrap(sampler_name(sampler), 12), fontsize=SMALL)
    quoted = lang.quoted(prompt)
    fig.suptitle(wrap(quoted, 70), fontsize=SMALL)
    fig.tight_layout(rect=(0, 0, 1, 0.95), h_pad=0.3, w_pad=0.3)
    return fig


# ----------------------------------------------------------------------------- sweeps

SWEEP_CATEGORIES = ("colours", "two_objects", "colour_attribution", "position")


def _errorbars(ax, xs, shares, colour, label, style="o-"):
    p = np.array([s["p"] for s in shares])
    err = np.clip([[s["p"] - s["lo"] for s in shares], [s["hi"] - s["p"] for s in shares]], 0, None)
    ax.errorbar(xs, 100 * p, yerr=100 * err, fmt=style, ms=3, lw=1.1, capsize=2, color=colour, label=label)


def sweep_chart(sweeps: Mapping[str, Sequence[tuple[float, Mapping]]], xlabel: str, log_x: bool = False,
                categories: Sequence[str] = SWEEP_CATEGORIES, colours: Mapping[str, str] | None = None,
                labels: Mapping[str, str] | None = None):
    """One panel per category: accuracy (with its 95 % interval) against a sampler setting, one line per
    sampler or model."""
    fig, axes = subplots(2, 2, figsize=(WIDTH, 5.0))
    axes = np.ravel(axes)
    for ax, category in zip(axes, categories):
        for key, points in sweeps.items():
            xs = [x for x, _ in points]
            shares = [r["categories"][category] for _, r in points]
            _errorbars(ax, xs, shares, (colours or {}).get(key), (labels or {}).get(key, key))
        ax.set_title(category_name(category))
        ax.set_ylim(0, 104)
        if log_x:
            ax.set_xscale("log")
            ticks = sorted({x for points in sweeps.values() for x, _ in points})
            ax.set_xticks(ticks, [str(int(t)) for t in ticks])
            ax.minorticks_off()
        ax.set_xlabel(xlabel)
        _style(ax)
    axes[0].set_ylabel(lang.tr("images correctes (%)", "correct images (%)"), fontsize=SMALL)
    axes[2].set_ylabel(lang.tr("images correctes (%)", "correct images (%)"), fontsize=SMALL)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncol=3, fontsize=SMALL, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig


def steps_chart(sweeps: Mapping[str, Sequence[tuple[int, Mapping]]]):
    labels = {k: sampler_name(k) for k in sweeps}
    return sweep_chart(sweeps, lang.tr("pas d'échantillonnage", "sampling steps"), log_x=True,
                       colours=SAMPLER_COLOURS, labels=labels)


def guidance_chart(sweeps: Mapping[str, Sequence[tuple[float, Mapping]]]):
    labels = {k: model_name(k) for k in sweeps}
    return sweep_chart(sweeps, lang.tr("échelle de guidage", "guidance scale"), colours=COLOURS, labels=labels)


def best_setting(points: Sequence[tuple[float, Mapping]], category: str = "overall") -> tuple[float, Mapping]:
    """The setting with the highest score in ``category`` (``overall``: the mean of the categories)."""
    def score(result):
        return result["overall"]["p"] if category == "overall" else result["categories"][category]["p"]
    return max(points, key=lambda point: (score(point[1]), -point[0]))


def share_at(points: Sequence[tuple[float, Mapping]], value: float, category: str) -> Mapping:
    return next(r for x, r in points if x == value)["categories"][category]


# ----------------------------------------------------------------------------- the side-by-side comparison

def share(result: Mapping, category: str) -> intervals.Share:
    """A category's share as an :class:`~text2image.evaluate.intervals.Share` (``overall`` has no k and n)."""
    d = result["overall"] if category == "overall" else result["categories"][category]
    return intervals.Share(d.get("k", 0), d.get("n", 0), d["p"], d["lo"], d["hi"])


def share_text(s: Mapping | intervals.Share) -> str:
    """``95,3 % (93,1–96,9)``: a share as the prose quotes it, with its 95 % interval."""
    d = s.as_dict() if hasattr(s, "as_dict") else s
    lo, hi = (lang.number(100 * d[k], 1) for k in ("lo", "hi"))
    return lang.Text(f"{lang.percent(d['p'], 1)} ({lo}\u2060–\u2060{hi})")


def leader(results: Mapping[str, Mapping], category: str, naming=None) -> dict:
    """Who leads ``category``: ``name`` (in words, by ``naming``, default the model names), ``share``, and the
    others whose interval overlaps the leader's (``tied``, ``tied_names`` in words), so that the prose says
    "ahead" only when the intervals say so; ``last`` names the lowest."""
    naming = naming or prose_name
    ranked = sorted(results, key=lambda n: -share(results[n], category).p)
    best = ranked[0]
    top = share(results[best], category)
    tied = [n for n in ranked[1:] if share(results[n], category).ties(top)]
    return {"key": best, "name": naming(best), "share": share_text(top), "tied": bool(tied),
            "tied_names": lang.listing(naming(n) for n in tied) if tied else lang.Text(""),
            "last": naming(ranked[-1]), "last_share": share_text(share(results[ranked[-1]], category))}


def readings_leader(readings: Mapping[str, Mapping], reading: str) -> dict:
    """:func:`leader` on a colour reading (``colour``, ``both_colours``, ``relation``) of each model."""
    return leader({name: {"categories": r} for name, r in readings.items()}, reading)


def failure_share(result: Mapping, kind: str) -> intervals.Share:
    """The share of a model's failed benchmark images whose first failure is ``kind`` (e.g. ``missing``)."""
    counts = result["failures"]
    return intervals.share(counts.get(kind, 0), sum(counts.values()))


def tie_words(found: Mapping) -> str:
    """What a leader's interval says about the others, as a clause: "ahead of the others" or "tied with X"."""
    if found["tied"]:
        return lang.Text(lang.tr(f"à égalité, aux intervalles près, avec {found['tied_names']}",
                                 f"tied, within the intervals, with {found['tied_names']}"))
    return lang.tr("devant les autres, hors des intervalles", "ahead of the others, beyond the intervals")


def frechet_leader(results: Mapping[str, Mapping]) -> dict:
    """The model whose images are closest to the world's in the CLIP space (lowest Fréchet distance)."""
    scored = {n: r["frechet"]["distance"] for n, r in results.items() if r.get("frechet")}
    best = min(scored, key=scored.get)
    return {"key": best, "name": prose_name(best), "distance": lang.number(1000 * scored[best], 2),
            "floor": lang.number(1000 * results[best]["frechet"]["floor"], 2)}


def fastest(values: Mapping[str, float]) -> dict:
    best = max(values, key=values.get)
    slowest = min(values, key=values.get)
    return {"name": prose_name(best), "value": lang.number(values[best], 1), "slowest": prose_name(slowest),
            "slowest_value": lang.number(values[slowest], 1),
            "factor": lang.number(values[best] / max(values[slowest], 1e-9), 0)}


def listing(obj) -> "Markdown":
    """The source of a function or class of the package, as a Python code block in the page."""
    import inspect

    from IPython.display import Markdown

    return Markdown("```python\n" + inspect.getsource(obj).rstrip() + "\n```")


def gan_summary(log: Sequence[Mapping], tail: float = 0.25) -> dict[str, float]:
    """What the last ``tail`` of a GAN's log says: the discriminator's mean verdict on real and generated
    images, and how much the generator's loss swings (its standard deviation over its mean)."""
    if not log:
        return {"d_real": float("nan"), "d_fake": float("nan"), "swing": float("nan"), "g_loss": float("nan")}
    part = log[int(len(log) * (1 - tail)):] or log
    g = np.array([r["g_loss"] for r in part])
    return {"d_real": float(np.mean([r["d_real"] for r in part])), "d_fake": float(np.mean([r["d_fake"] for r in part])),
            "g_loss": float(g.mean()), "swing": float(g.std() / max(abs(g.mean()), 1e-9))}


def shapes_table(denoiser, generator):
    """The shapes a tensor takes through the GAN's generator and through the UNet, read by running them once."""
    from text2image.pipelines.prompts import encode_prompts

    ids, mask = encode_prompts(["a red circle"])
    device = next(generator.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    gen = [(lang.tr("légende → vecteur", "caption → vector"), generator.embed),
           (lang.tr("bruit + légende → carte", "noise + caption → map"), generator.start_norm)]
    gen += [(lang.tr(f"convolution transposée {k}", f"transposed convolution {k}"), m)
            for k, m in enumerate([m for m in generator.body if isinstance(m, torch.nn.ConvTranspose2d)], start=1)]
    gen.append((lang.tr("image", "image"), generator.body[-1]))
    z = torch.zeros(1, generator.z_dim, device=device)
    rows = [("G", name, shape) for name, shape in traced(gen, lambda: generator.eval()(z, ids, mask))]
    unet = denoiser.unet
    stages = [(lang.tr("légende → états", "caption → states"), denoiser.text.model),
              (lang.tr("entrée", "input"), unet.conv_in)]
    stages += [(f"{lang.tr('descente', 'down')} {k} ({type(b).__name__})", b) for k, b in enumerate(unet.down_blocks, 1)]
    stages.append((f"{lang.tr('milieu', 'middle')} ({type(unet.mid_block).__name__})", unet.mid_block))
    stages += [(f"{lang.tr('montée', 'up')} {k} ({type(b).__name__})", b) for k, b in enumerate(unet.up_blocks, 1)]
    stages.append((lang.tr("sortie", "output"), unet.conv_out))
    x = torch.zeros(1, 3, 32, 32, device=device)
    rows += [("UNet", name, shape) for name, shape in
             traced(stages, lambda: denoiser.eval()(x, torch.tensor([500], device=device), ids, mask))]
    body = [[net, name, " × ".join(str(d) for d in shape)] for net, name, shape in rows]
    return markdown_table([lang.tr("réseau", "network"), lang.tr("étape", "stage"),
                           lang.tr("forme", "shape")], body, align="llr")


def architecture(denoiser, generator) -> dict:
    """Shapes read from the two networks: the UNet's channels per level, where its cross-attention is, its
    heads, the caption encoder's width and layers; the generator's noise size and channels."""
    unet = denoiser.unet.config
    channels = list(unet.block_out_channels)
    cross = [32 // 2 ** k for k, block in enumerate(unet.down_block_types) if "CrossAttn" in block]
    starts = generator.start_norm.num_features
    return {"channels": lang.Text(" / ".join(str(c) for c in channels)), "levels": len(channels),
            "resolutions": lang.Text(" / ".join(str(32 // 2 ** k) for k in range(len(channels)))),
            "cross": lang.Text(lang.tr(" et ", " and ").join(f"{r} × {r}" for r in cross)),
            "coarsest": 32 // 2 ** (len(channels) - 1), "heads": unet.attention_head_dim,
            "layers": unet.layers_per_block, "text_width": denoiser.text.width,
            "text_layers": denoiser.text.model.config.num_hidden_layers,
            "z": generator.z_dim, "g_channels": starts, "g_last": generator.body[-2].in_channels}


def lowest_count(results: Mapping[str, Mapping], category: str) -> str:
    """In how many models ``category`` is the lowest of the six categories (as a number for the prose)."""
    count = sum(min(r["categories"], key=lambda c: r["categories"][c]["p"]) == category for r in results.values())
    return lang.integer(count)


def family_of(name: str) -> str:
    return {"gan": "gan", "gan-sn": "gan", "ddpm": "diffusion", "flow-matching": "diffusion"}[name]


def minutes(manifest: Mapping) -> float:
    return manifest["train_seconds"] / 60


def comparison_table(results: Mapping[str, Mapping], manifests: Mapping[str, Mapping],
                     diversity: Mapping[str, Mapping], disc_parameters: Mapping[str, int]):
    """The four models side by side: size, training budget and speed, sampling speed, the benchmark's
    categories with their intervals, its Fréchet distance, and the diversity of the draws."""
    from text2image.charts import benchmark as CB

    names = list(results)

    def dash(value):
        return value if value is not None else "–"

    rows = [
        (lang.tr("paramètres (échantillonneur)", "parameters (sampler)"),
         [lang.integer(manifests[n]["parameters"]) for n in names]),
        (lang.tr("paramètres du discriminateur", "discriminator parameters"),
         [dash(lang.integer(disc_parameters[n]) if n in disc_parameters else None) for n in names]),
        (lang.tr("pas × lot", "steps × batch"),
         [f"{lang.integer(manifests[n]['steps'])} × {manifests[n]['recipe']['batch_size']}" for n in names]),
        (lang.tr("entraînement (min)", "training (min)"), [lang.number(minutes(manifests[n]), 1) for n in names]),
        (lang.tr("entraînement (images/s)", "training (images/s)"),
         [lang.number(manifests[n]["samples_per_second"], 1) for n in names]),
        (lang.tr("échantillonnage (images/s)", "sampling (images/s)"),
         [lang.number(results[n]["images_per_second"], 1) for n in names]),
    ]
    rows += [(category_name(c), [interval(results[n]["overall"] if c == "overall" else results[n]["categories"][c])
                                 for n in names])
             for c in ("colours", "two_objects", "colour_attribution", "counting", "position", "overall")]
    rows.append((lang.tr("relation, objets présents", "relation, both present"),
                 [interval(results[n]["relation"]) for n in names]))
    rows.append((lang.tr("Fréchet ×10³ (plancher)", "Fréchet ×10³ (floor)"), [CB.frechet(results[n]) for n in names]))
    rows.append((lang.tr("diversité (monde = 1)", "diversity (world = 1)"),
                 [f"{lang.number(diversity[n]['relative'], 2)} ({lang.number(diversity[n]['lo'], 2)}\u2060–"
                  f"\u2060{lang.number(diversity[n]['hi'], 2)})" for n in names]))
    rows.append((lang.tr("invites effondrées (%)", "collapsed prompts (%)"),
                 [interval(diversity[n]["collapsed"]) for n in names]))
    headers = [lang.tr("mesure", "measure"), *(short_name(n) for n in names)]
    return markdown_table(headers, [[label, *cells] for label, cells in rows])


def reference_table(results: Mapping[str, Mapping], readings: Mapping[str, Mapping]):
    """Each model against the naive reference of the calibration (ANCHORS.md), on the measures it reported, which
    read colour alone (:mod:`text2image.evaluate.readings`); then the benchmark's colours, which want the shape too."""
    ref = REFERENCE
    measures = [
        (lang.tr("couleur, un objet", "colour, one object"), lang.percent(ref["colours"][0] / ref["colours"][1], 0),
         lambda name: interval(readings[name]["colour"])),
        (lang.tr("les deux couleurs, deux objets", "both colours, two objects"), lang.percent(ref["both_colours"], 0),
         lambda name: interval(readings[name]["both_colours"])),
        (lang.tr("relation juste, deux couleurs présentes", "relation right, both colours present"),
         lang.percent(ref["left_right"], 0), lambda name: interval(readings[name]["relation"])),
        (lang.tr("couleur et forme, un objet (banc d'essai)", "colour and shape, one object (benchmark)"), "–",
         lambda name: interval(results[name]["categories"]["colours"])),
    ]
    headers = [lang.tr("mesure", "measure"), lang.tr("référence naïve", "naive reference"),
               *(short_name(n) for n in results)]
    body = [[label, reference, *(value(n) for n in results)] for label, reference, value in measures]
    return markdown_table(headers, body)


def reached(value: float, target: float) -> str:
    """Whether a measured value reaches its goal, as a word for the prose's sentence ("atteint" / "met")."""
    return lang.tr("atteint", "met") if value >= target else lang.tr("manqué", "missed")


def goals(results: Mapping[str, Mapping]) -> dict:
    """The levels the chapter asks of the best of the families (colours, two-object presence): met or not."""
    out = {}
    for category, target in GOALS.items():
        best = leader(results, category)
        p = share(results[best["key"]], category).p
        out[category] = {"name": best["name"], "share": best["share"], "target": lang.percent(target, 0),
                         "status": reached(p, target)}
    return out


def throughput_words(measured: Mapping[str, Mapping]) -> dict:
    worst = max(measured, key=lambda n: measured[n]["ratio"])
    return {"worst": prose_name(worst), "ratio": lang.number(measured[worst]["ratio"], 2),
            "status": reached(-measured[worst]["ratio"], -THROUGHPUT_GOAL)}
