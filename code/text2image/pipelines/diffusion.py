"""Sampling the pixel-space denoiser: DDPM's ancestral sampler, DDIM, and flow matching's Euler steps, guided.

One loop for the three samplers, each a diffusers scheduler over the
denoiser's training schedule (:mod:`text2image.models.diffusion`):

* ``ddpm``: ``DDPMScheduler``, ancestral sampling (fresh noise at every step),
  the sampler of the DDPM paper, here on any number of steps of the 1,000;
* ``ddim``: ``DDIMScheduler`` with ``eta = 0``, the deterministic sampler of
  Song et al. (2021) for the same epsilon-prediction model;
* ``euler``: ``FlowMatchEulerDiscreteScheduler``, Euler steps along the
  learnt velocity, from ``s = 1`` (noise) to ``s = 0`` (image).

The DDPM and DDIM steps are spaced ``trailing`` (the first step starts at
t = 999, where the image is pure noise; "leading" spacing would start at
950 and leave some signal that the training never showed at that step).

**Classifier-free guidance** (Ho and Salimans, 2022): the denoiser is run on
the prompt and on the empty caption ``[BOS] [EOS]`` (:func:`text2image.text.empty_caption`,
what dropped captions became in training), and the two predictions are mixed,
``uncond + s (cond - uncond)``. ``s = 1`` is the conditional model itself
(the unconditional branch is not even computed), ``s = 0`` the unconditional
model, ``s > 1`` pushes beyond the conditional prediction.

Each call draws its noise from a generator seeded with ``seed`` alone, so the
same prompts and seed give the same images, whatever ran before.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import ClassVar, Sequence

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, FlowMatchEulerDiscreteScheduler

from text2image.models import diffusion as D
from text2image.pipelines.prompts import SamplingError, encode_prompts, null_captions
from text2image.world.tensors import RESOLUTION, to_uint8

SAMPLERS = {"epsilon": ("ddpm", "ddim"), "velocity": ("euler",)}
DEFAULT_SAMPLER = {"epsilon": "ddim", "velocity": "euler"}


@dataclass(frozen=True)
class Sampling:
    """``sampler`` (``ddpm``, ``ddim``, ``euler``; ``None``: the objective's default), the number of ``steps``
    and the classifier-free ``guidance`` scale (1: none; 0: the unconditional model)."""

    sampler: str | None = None
    steps: int = 20
    guidance: float = 3.0
    # the samplers of each objective, and the default one (the latent-diffusion chapter's subclass has its own)
    SAMPLERS: ClassVar[dict[str, tuple[str, ...]]] = SAMPLERS
    DEFAULT_SAMPLER: ClassVar[dict[str, str]] = DEFAULT_SAMPLER

    def __post_init__(self):
        known = sorted({s for kinds in self.SAMPLERS.values() for s in kinds})
        if self.sampler is not None and self.sampler not in known:
            raise SamplingError(f"unknown sampler {self.sampler!r}; the samplers are: {', '.join(known)}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, (int, np.integer)) or self.steps < 1:
            raise SamplingError(f"the number of sampling steps must be an integer >= 1, not {self.steps!r}")
        if not isinstance(self.guidance, (int, float)) or not self.guidance >= 0:
            raise SamplingError(f"the guidance scale must be >= 0 (1: no guidance, 0: the unconditional model), "
                                f"not {self.guidance!r}")

    def for_objective(self, objective: str) -> "Sampling":
        """The same settings with the sampler named (the objective's default when it was ``None``)."""
        sampler = self.sampler or self.DEFAULT_SAMPLER[objective]
        if sampler not in self.SAMPLERS[objective]:
            kinds = self.SAMPLERS[objective]
            choices = " or ".join(kinds) if len(kinds) < 3 else f"{', '.join(kinds[:-1])} or {kinds[-1]}"
            raise SamplingError(f"a model trained to predict the {'noise' if objective == 'epsilon' else 'velocity'} "
                                f"samples with {choices}, not {sampler}")
        return replace(self, sampler=sampler)

    def as_dict(self) -> dict:
        return asdict(self)

    def but(self, **changes) -> "Sampling":
        return replace(self, **changes)


def scheduler_for(sampler: str):
    """A fresh scheduler of ``sampler`` over the training schedule of its objective."""
    if sampler == "ddpm":
        return DDPMScheduler(num_train_timesteps=D.TRAIN_STEPS, beta_start=D.BETA_START, beta_end=D.BETA_END,
                             beta_schedule="linear", prediction_type="epsilon", clip_sample=True,
                             timestep_spacing="trailing")
    if sampler == "ddim":
        return DDIMScheduler(num_train_timesteps=D.TRAIN_STEPS, beta_start=D.BETA_START, beta_end=D.BETA_END,
                             beta_schedule="linear", prediction_type="epsilon", clip_sample=True,
                             set_alpha_to_one=True, timestep_spacing="trailing")
    if sampler == "euler":
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=D.TRAIN_STEPS, shift=1.0)
    raise SamplingError(f"unknown sampler {sampler!r}")


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def guide(predict, x: torch.Tensor, t: torch.Tensor, states: torch.Tensor, mask: torch.Tensor,
          null_states: torch.Tensor | None, null_mask: torch.Tensor | None, guidance: float) -> torch.Tensor:
    """Classifier-free guidance around ``predict(x, t, states, mask)``: ``uncond + s (cond - uncond)``, both
    branches in one batch (empty captions first); at ``s = 1`` the conditional prediction alone (one forward
    pass, the unconditional branch never computed). Every guided sampler of the book goes through here."""
    if guidance == 1:
        return predict(x, t, states, mask)
    both = predict(torch.cat([x, x]), t, torch.cat([null_states, states]), torch.cat([null_mask, mask]))
    uncond, cond = both.chunk(2)
    return uncond + guidance * (cond - uncond)


def guided_prediction(model: D.PixelDenoiser, x: torch.Tensor, t: torch.Tensor, states: torch.Tensor,
                      mask: torch.Tensor, null_states: torch.Tensor, null_mask: torch.Tensor,
                      guidance: float) -> torch.Tensor:
    """``uncond + s (cond - uncond)``; at ``s = 1`` the conditional prediction alone (one forward pass)."""
    return guide(model.predict, x, t, states, mask, null_states, null_mask, guidance)


@dataclass
class Trajectory:
    """What a sampling run went through: the time steps, and the sample after each of ``kept`` steps."""
    timesteps: list[float]
    kept: dict[int, np.ndarray]


@torch.no_grad()
def sample(model: D.PixelDenoiser, objective: str, prompts: Sequence[str], seed: int, sampling: Sampling,
           keep: Sequence[int] = ()) -> tuple[torch.Tensor, Trajectory]:
    """Images (B, 3, 32, 32) in [-1, 1] for ``prompts``, and the samples after the steps listed in ``keep``
    (0: the starting noise; k: after k steps)."""
    sampling = sampling.for_objective(objective)
    prompts = list(prompts)
    ids, mask = encode_prompts(prompts)
    device = _device(model)
    generator = torch.Generator().manual_seed(int(seed))
    x = torch.randn((len(prompts), 3, RESOLUTION, RESOLUTION), generator=generator).to(device)
    scheduler = scheduler_for(sampling.sampler)
    scheduler.set_timesteps(sampling.steps, device=device)
    ids, mask = ids.to(device), mask.to(device)
    states, _ = model.text(ids, mask)
    null_ids, null_mask = (t.to(device) for t in null_captions(len(prompts)))
    null_states, _ = model.text(null_ids, null_mask) if sampling.guidance != 1 else (None, None)
    kept = {0: to_uint8(x)} if 0 in keep else {}
    for k, t in enumerate(scheduler.timesteps, start=1):
        prediction = guided_prediction(model, x, t, states, mask, null_states, null_mask, sampling.guidance)
        x = scheduler.step(prediction, t, x, generator=generator).prev_sample
        if k in keep:
            kept[k] = to_uint8(x)
    return x, Trajectory([float(t) for t in scheduler.timesteps], kept)


class DiffusionPipeline:
    """A text-to-image generator for the benchmark: ``pipeline(prompts, seed) -> uint8 (P, 32, 32, 3)``.

    ``model``: the denoiser; ``objective``: what it was trained to predict
    (``epsilon`` for DDPM, ``velocity`` for flow matching); ``sampling``: the
    sampler, its steps and the guidance scale.
    """

    def __init__(self, model: D.PixelDenoiser, objective: str, sampling: Sampling | None = None):
        if objective not in D.OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; the objectives are: {', '.join(D.OBJECTIVES)}")
        self.model, self.objective = model.eval(), objective
        self.sampling = (sampling or Sampling()).for_objective(objective)

    def __call__(self, prompts: Sequence[str], seed: int, sampling: Sampling | None = None) -> np.ndarray:
        if isinstance(prompts, str):
            raise SamplingError("pass a list of prompts, not one string")
        if not len(prompts):
            return np.zeros((0, RESOLUTION, RESOLUTION, 3), np.uint8)
        images, _ = sample(self.model, self.objective, prompts, seed, sampling or self.sampling)
        return to_uint8(images)
