"""One denoiser for DDPM and flow matching in pixel space, at 32 px, and the two objectives it learns.

**The network** (:class:`PixelDenoiser`): a ``diffusers.UNet2DConditionModel``
on the 32 x 32 x 3 image itself, and a small caption encoder trained with it
(:class:`~text2image.models.text_encoder.CaptionEncoder`, a ``CLIPTextModel``).
Why ``UNet2DConditionModel`` and not ``UNet2DModel`` with class conditioning:
a class embedding adds *one* vector per image to the time embedding, which
suits ImageNet's thousand labels; a caption of this world is a sentence, and
what it says lies in which word goes with which ("red" with "circle", "left
of" between two nouns). Cross-attention lets every position of the image read
every word, and weigh them differently from place to place; it is the
mechanism of Stable Diffusion, which the latent-diffusion chapter uses on
latents with this very class. (The GAN of the chapter reads one vector per
caption, as text-to-image GANs did: the chapter can compare the two.) To keep
a CPU step affordable, cross-attention is only where the image is coarsest
(8 x 8 on the cpu size, plus the middle block); a ResNet block reads the time
step everywhere.

**The objectives**, the same network and budget for both:

* DDPM (Ho et al., 2020): ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` with
  the linear beta schedule of the paper, t uniform in ``0..999``; the network
  predicts ``eps`` (:func:`ddpm_loss`). The forward process is
  ``DDPMScheduler.add_noise``.
* Flow matching (Lipman et al., 2023, with the straight paths of rectified
  flow): ``x_s = (1 - s) x_0 + s eps`` for ``s`` in (0, 1]; the network
  predicts the velocity ``d x_s / d s = eps - x_0`` (:func:`flow_matching_loss`).
  The forward process is ``FlowMatchEulerDiscreteScheduler.scale_noise``'s (read
  from the scheduler's ``sigmas``); ``s`` is drawn uniformly among its 1,000 training values and
  the network reads ``1000 s`` as its time step, as Stable Diffusion 3 does.

A share of the captions is replaced by the empty caption during training (the
recipes do it), so that one network is also the unconditional model that
classifier-free guidance needs (see :mod:`text2image.pipelines.diffusion`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler, UNet2DConditionModel

from text2image.models import seeded
from text2image.models.text_encoder import CaptionEncoder

TRAIN_STEPS = 1000      # the discrete time steps of both training schedules
OBJECTIVES = ("epsilon", "velocity")  # DDPM predicts the noise, flow matching the velocity
BETA_START, BETA_END = 1e-4, 0.02     # the DDPM paper's linear schedule

# channels per level (32, 16, 8 px), ResNet layers per level, how many of the coarsest levels have
# cross-attention, attention heads, norm groups; the caption encoder's width, layers and heads
SIZES = {
    "smoke": dict(channels=(8, 16, 16), layers=1, attention=1, heads=2, groups=4,
                  text_width=16, text_layers=1, text_heads=2),
    "cpu": dict(channels=(32, 64, 64), layers=1, attention=1, heads=2, groups=16,
                text_width=64, text_layers=2, text_heads=2),
    "gpu": dict(channels=(64, 128, 256), layers=2, attention=2, heads=4, groups=32,
                text_width=256, text_layers=4, text_heads=4),
}


class PixelDenoiser(torch.nn.Module):
    """``UNet2DConditionModel`` on 32 px images, reading a caption through cross-attention.

    ``forward(x_t, t, ids, mask)`` returns the prediction (noise or velocity,
    by the objective it was trained with) of the same shape as ``x_t``; the
    caption's pads are masked out of the cross-attention.
    """

    def __init__(self, size: dict):
        super().__init__()
        channels, attention = tuple(size["channels"]), size["attention"]
        plain = len(channels) - attention
        self.text = CaptionEncoder(size["text_width"], size["text_layers"], size["text_heads"])
        self.unet = UNet2DConditionModel(
            sample_size=32, in_channels=3, out_channels=3, block_out_channels=channels,
            down_block_types=("DownBlock2D",) * plain + ("CrossAttnDownBlock2D",) * attention,
            up_block_types=("CrossAttnUpBlock2D",) * attention + ("UpBlock2D",) * plain,
            mid_block_type="UNetMidBlock2DCrossAttn", layers_per_block=size["layers"],
            cross_attention_dim=size["text_width"], norm_num_groups=size["groups"],
            # diffusers' historical name: in UNet2DConditionModel ``attention_head_dim`` is the number of heads
            attention_head_dim=size["heads"],
        )

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        states, _ = self.text(input_ids, attention_mask)
        return self.predict(sample, timestep, states, attention_mask)

    def predict(self, sample: torch.Tensor, timestep: torch.Tensor, states: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        """The prediction from caption states already computed (sampling encodes the prompts once)."""
        return self.unet(sample, timestep, encoder_hidden_states=states,
                         encoder_attention_mask=attention_mask.bool()).sample


def build(size: dict, seed: int = 0) -> PixelDenoiser:
    return seeded(lambda: PixelDenoiser(size), seed)


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- schedules

def ddpm_scheduler() -> DDPMScheduler:
    """DDPM's training schedule: 1,000 steps, betas linear from 1e-4 to 0.02, epsilon prediction."""
    return DDPMScheduler(num_train_timesteps=TRAIN_STEPS, beta_start=BETA_START, beta_end=BETA_END,
                         beta_schedule="linear", prediction_type="epsilon", clip_sample=True)


def flow_scheduler() -> FlowMatchEulerDiscreteScheduler:
    """Flow matching's schedule: ``s = t / 1000`` for t = 1..1000, no shift (straight paths)."""
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=TRAIN_STEPS, shift=1.0)


def training_scheduler(objective: str):
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; the objectives are: {', '.join(OBJECTIVES)}")
    return ddpm_scheduler() if objective == "epsilon" else flow_scheduler()


def alpha_bar(scheduler: DDPMScheduler) -> torch.Tensor:
    """``abar_t`` for t = 0..999: the share of the image's variance left at step t."""
    return scheduler.alphas_cumprod


def snr_ddpm(scheduler: DDPMScheduler) -> torch.Tensor:
    """Signal-to-noise ratio ``abar_t / (1 - abar_t)`` of DDPM's forward process, t = 0..999."""
    a = alpha_bar(scheduler)
    return a / (1 - a)


def snr_flow(scheduler: FlowMatchEulerDiscreteScheduler) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s, ((1 - s) / s)^2)`` for the scheduler's training values of ``s``, in increasing ``s``."""
    s = scheduler.sigmas.flip(0)
    return s, ((1 - s) / s) ** 2


def noised(objective: str, scheduler, x0: torch.Tensor, noise: torch.Tensor,
           index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_t, the time step the network reads, the target)`` for training-schedule indices ``index`` (B,).

    DDPM: index t in ``0..999`` is the time step, the target the noise. Flow
    matching: index k picks ``s = sigmas[k]`` and the time step ``1000 s``; the
    target is the velocity ``eps - x_0``.
    """
    if objective == "epsilon":
        t = index.to(x0.device)
        return scheduler.add_noise(x0, noise, t), t, noise
    index = index.to(x0.device)
    timestep = scheduler.timesteps.to(x0.device)[index]
    # ``scale_noise(x0, timestep, noise)`` computes the same (a test checks it), but looks each image's time
    # step up one by one; the schedule's own ``sigmas`` give it at once, on any device
    s = scheduler.sigmas.to(x0.device, x0.dtype)[index].view(-1, *[1] * (x0.ndim - 1))
    return (1 - s) * x0 + s * noise, timestep, noise - x0


def draw_noised(objective: str, scheduler, x0: torch.Tensor,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`noised` at a noise and a time step drawn for each sample. With a (CPU) ``generator`` both are
    drawn from it, the global generator untouched: a method that owns its randomness (textual inversion)
    repeats itself."""
    if generator is None:
        noise = torch.randn_like(x0)
        index = torch.randint(0, TRAIN_STEPS, (x0.shape[0],))
    else:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        index = torch.randint(0, TRAIN_STEPS, (x0.shape[0],), generator=generator)
    return noised(objective, scheduler, x0, noise, index)


def denoising_loss(predict, objective: str, scheduler, x0: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """The mean squared error of ``predict(x_t, timestep)`` (noise or velocity) at a random time step per
    sample (:func:`draw_noised`): the loss of every denoiser of the book, on pixels here and on latents in
    :mod:`text2image.models.latent`."""
    x_t, timestep, target = draw_noised(objective, scheduler, x0, generator)
    return F.mse_loss(predict(x_t, timestep), target)


def diffusion_loss(model: PixelDenoiser, objective: str, scheduler, x0: torch.Tensor, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean squared error of the prediction (noise or velocity) at a random time step per image."""
    return denoising_loss(lambda x_t, t: model(x_t, t, input_ids, attention_mask), objective, scheduler, x0)


def ddpm_loss(model, scheduler, x0, input_ids, attention_mask) -> torch.Tensor:
    return diffusion_loss(model, "epsilon", scheduler, x0, input_ids, attention_mask)


def flow_matching_loss(model, scheduler, x0, input_ids, attention_mask) -> torch.Tensor:
    return diffusion_loss(model, "velocity", scheduler, x0, input_ids, attention_mask)
