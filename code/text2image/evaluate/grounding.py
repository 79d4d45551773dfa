"""Where each word looks: the IoU between a word's cross-attention map and its object's mask.

TokenCompose (Wang et al., 2024) trains each noun's cross-attention to fall on
its object; this module measures whether it does, on fixed prompts of a split
(``val`` to watch a training, ``test`` for the book's tables) whose scenes the
world renders with exact masks.

**One denoising pass at a fixed noise level**, not a whole sampling: the
world's render of each example is encoded by the pipeline's VAE, noised to
the training schedule's index :data:`NOISE_INDEX` (flow matching's
``sigma = 0.5``: half image, half noise) with noise drawn from a fixed seed,
and denoised once, conditioned on the example's own caption, inside an
:class:`~text2image.methods.attention.AttentionStore`. The mask is then the
truth of the very image the UNet reads: in a sampled image the objects are
wherever the model put them (or missing), and the world's mask of the prompt's
scene would not say where they are. At ``sigma = 0.5`` the objects are still
visible in the noised latent, so a word's map can find them, and the UNet's
prediction still has work to do (at a low noise level attention barely
matters; at a high one there is nothing to find).

**Maps and masks.** A word's map at one *layer group* (one block at one grid,
e.g. ``up 8x8``) is its token's column averaged over the heads and the layers
of the group (what L_pixel supervises); its mask is the union of its objects'
masks brought to the grid by :func:`text2image.methods.tokencompose.resize_mask`
(area, then ``> 0``: the training target). The map is made binary by
``threshold``:

* ``"mean"`` (the default): the cells where the word's attention exceeds its
  mean over the grid, i.e. more than its share were it spread evenly. It uses
  nothing of the mask, so a map cannot score by knowing the object's size;
* ``"area"``: the ``k`` cells of highest attention, ``k`` the mask's cells
  (ties by position): the map's ranking only, its scale left out.

**The statistic.** Each prompt contributes the mean IoU of its words (the
nouns: one noun of a counting prompt names several objects, the union of their
masks), per group and over all groups (``all``: the mean of its groups); a
group's result is the mean over prompts with a 95 % *t-interval* (prompts are
independent draws of the split; a mean of values in [0, 1] over hundreds of
prompts is near-normal, and the t-interval needs no resampling seed, so a
rerun gives the same bounds). Two models measured on the same prompts, noises
and time step are compared by :func:`paired_difference`, the t-interval of the
per-prompt differences, narrower than two separate intervals.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from scipy import stats

from text2image import text as T
from text2image.methods import tokencompose as TC
from text2image.methods.attention import AttentionMap, AttentionStore
from text2image.models import diffusion as D
from text2image.models import latent as L
from text2image.world import splits
from text2image.world.render import render
from text2image.world.tensors import RESOLUTION, to_tensor

THRESHOLDS = ("mean", "area")
NOISE_INDEX = 500   # index into the 1,000-step training schedule: sigma = 0.5 for flow matching
NOISE_SEED = 1923   # the fixed noise of the pass
ALL = "all"         # the mean over the groups of a prompt
MIN_OBJECTS, MAX_OBJECTS = 2, 5


class GroundingEvalError(ValueError):
    """A measurement asked for with settings it cannot have (an unknown threshold, no prompt)."""


def group_name(block: str, resolution: tuple[int, int]) -> str:
    """``"up 8x8"``: how a layer group is named in results."""
    return f"{block} {resolution[0]}x{resolution[1]}"


def check_threshold(threshold: str) -> str:
    if threshold not in THRESHOLDS:
        raise GroundingEvalError(f"unknown threshold {threshold!r}; the thresholds are: {', '.join(THRESHOLDS)}")
    return threshold


def group_means(maps: Sequence[AttentionMap]) -> dict[str, torch.Tensor]:
    """Per layer group (``"up 8x8"``, in forward order), the maps averaged over heads and layers:
    [batch, H x W, tokens], float32."""
    grouped: dict[str, list[AttentionMap]] = {}
    for m in maps:
        grouped.setdefault(group_name(m.block, m.resolution), []).append(m)
    return {name: torch.stack([m.per_head().float() for m in group], dim=1).mean(dim=(1, 2))
            for name, group in grouped.items()}


def binarise(values: torch.Tensor, threshold: str = "mean", area: int | None = None) -> torch.Tensor:
    """A word's map over a grid (H x W,) made binary: above its mean, or its ``area`` highest cells."""
    check_threshold(threshold)
    if threshold == "mean":
        return values > values.mean()
    if area is None or not 0 < area <= values.numel():
        raise GroundingEvalError(f"the 'area' threshold needs the mask's cell count in [1, {values.numel()}], "
                                 f"not {area}")
    on = torch.zeros(values.numel(), dtype=torch.bool)
    on[torch.topk(values.flatten().cpu(), area, sorted=True).indices] = True
    return on.view_as(values)


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """|a and b| / |a or b| of two boolean maps (1 when both are empty)."""
    a, b = a.bool().flatten().cpu(), b.bool().flatten().cpu()
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def word_ious(maps: Sequence[AttentionMap], targets: Sequence[list[TC.WordMask]],
              threshold: str = "mean") -> dict[str, list[float]]:
    """Per layer group, and ``all``, each image's mean IoU over its words (NaN for an image without any)."""
    check_threshold(threshold)
    means = group_means(maps)
    out: dict[str, list[float]] = {name: [] for name in means}
    resolution = {group_name(m.block, m.resolution): m.resolution for m in maps}
    for name, a in means.items():
        if a.shape[0] != len(targets):
            raise GroundingEvalError(f"the maps hold {a.shape[0]} images but there are targets for {len(targets)}")
        for b, words in enumerate(targets):
            found = []
            for w in words:
                if not 0 <= w.token < a.shape[-1]:
                    raise TC.GroundingError(f"token {w.token} is past the {a.shape[-1]} tokens of the maps")
                mask = TC.resize_mask(w.mask, resolution[name]).flatten().bool()
                on = binarise(a[b, :, w.token].cpu(), threshold, int(mask.sum()))
                found.append(iou(on, mask))
            out[name].append(float(np.mean(found)) if found else float("nan"))
    out[ALL] = [float(np.mean(v)) if not any(math.isnan(x) for x in v) else float("nan")
                for v in zip(*out.values())] if means else []
    return out


def t_interval(values: Sequence[float]) -> dict[str, float]:
    """The mean of ``values`` (NaNs left out) and its 95 % t-interval; ``n`` the values kept."""
    x = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    n = len(x)
    if n == 0:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    mean = float(x.mean())
    if n == 1:
        return {"mean": mean, "lo": float("nan"), "hi": float("nan"), "n": 1}
    half = float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": n}


def paired_difference(after: dict, before: dict, group: str = ALL) -> dict[str, float]:
    """``after - before`` of one group, two results of :func:`measure` on the same prompts and noises: the mean
    of the per-prompt differences with its 95 % t-interval."""
    a, b = after["per_prompt"][group], before["per_prompt"][group]
    if len(a) != len(b) or after["settings"] != before["settings"]:
        raise GroundingEvalError("a paired difference needs two measurements on the same prompts and settings")
    return t_interval([x - y for x, y in zip(a, b)])


def multi_object_examples(split: str, n: int, start: int = 0) -> list[splits.Example]:
    """The first ``n`` examples of ``split`` from index ``start`` whose prompt has 2 to 5 objects."""
    if n < 1:
        raise GroundingEvalError(f"a measurement needs at least one prompt, not {n}")
    out, index = [], start
    while len(out) < n:
        example = splits.example(split, index)
        if MIN_OBJECTS <= example.prompt.n_objects <= MAX_OBJECTS:
            out.append(example)
        index += 1
    return out


@torch.no_grad()
def measure(unet, vae, text_encoder, objective: str, examples: Sequence[splits.Example],
            index: int = NOISE_INDEX, seed: int = NOISE_SEED, threshold: str = "mean",
            blocks: Sequence[str] = TC.SUPERVISED, chunk: int = 64) -> dict:
    """The attention-mask IoU of ``unet`` on ``examples`` (see the module's docstring): ``{"groups": {name:
    {mean, lo, hi, n}}, "per_prompt": {name: [...]}, "settings": {...}}``, ``all`` among the groups."""
    check_threshold(threshold)
    if not examples:
        raise GroundingEvalError("a measurement needs at least one prompt")
    if not 0 <= index < D.TRAIN_STEPS:
        raise GroundingEvalError(f"the noise index must be in [0, {D.TRAIN_STEPS}), not {index}")
    device = next(unet.parameters()).device
    scheduler = D.training_scheduler(objective)
    scale = float(vae.config.scaling_factor)
    generator = torch.Generator().manual_seed(seed)
    per_prompt: dict[str, list[float]] = {}
    for start in range(0, len(examples), chunk):
        part = examples[start:start + chunk]
        images, masks = render([e.scene for e in part], RESOLUTION)
        x0 = vae.encode(to_tensor(images).to(device)).latent_dist.mode() * scale
        noise = torch.randn(x0.shape, generator=generator).to(device)
        x_t, timestep, _ = D.noised(objective, scheduler, x0, noise, torch.full((len(part),), index))
        encoded = T.encode([e.caption.text for e in part])
        ids, mask = encoded["input_ids"].to(device), encoded["attention_mask"].to(device)
        states = L.encode_text(text_encoder, ids, mask)
        targets = TC.batch_word_masks([e.caption for e in part], masks)
        with AttentionStore(unet, blocks=blocks) as store:
            L.predict(unet, x_t, timestep, states, mask)
            found = word_ious(store.maps(), targets, threshold)
        for name, values in found.items():
            per_prompt.setdefault(name, []).extend(values)
    settings = {"prompts": len(examples), "first": [examples[0].split, examples[0].index], "index": index,
                "sigma": float(D.training_scheduler(objective).sigmas[index]) if objective == "velocity" else None,
                "seed": seed, "threshold": threshold, "blocks": list(blocks), "objective": objective}
    return {"groups": {name: t_interval(v) for name, v in per_prompt.items()}, "per_prompt": per_prompt,
            "settings": settings}
