"""Text-guided latent diffusion as a ``diffusers.DiffusionPipeline``: Stable Diffusion's interface at the world's scale.

:class:`LatentDiffusionPipeline` registers five components, as
``StableDiffusionPipeline`` does: ``vae`` (the ``AutoencoderKL`` whose latents
the denoiser works on), ``text_encoder`` (a frozen ``CLIPTextModel``, the text
tower of the book's CLIP), ``tokenizer`` (the world's word-level tokenizer, a
``transformers`` fast tokenizer: :class:`text2image.text.ShapesTokenizer`),
``scheduler``, and one denoiser, ``unet`` (``UNet2DConditionModel``) *or*
``transformer`` (``PixArtTransformer2DModel``, the DiT), the other left
``None``. Its config also records the ``objective`` the denoiser was trained
with (``epsilon``: the noise, DDPM's; ``velocity``: flow matching's).

So the diffusers idioms work as they do for SD 1.4::

    pipe = LatentDiffusionPipeline.from_pretrained(folder, local_files_only=True)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)  # or scheduler_for("dpm", ...)
    images = pipe(["a red circle to the left of a blue square"], num_inference_steps=20, guidance_scale=3.0,
                  generator=torch.Generator().manual_seed(0)).images

and ``save_pretrained`` writes a folder with ``model_index.json`` and one
subfolder per component that ``from_pretrained`` reads back bit for bit.

**Sampling** is the loop of every diffusers pipeline: noise of shape
(B, 4, 8, 8) from ``generator`` (one generator, or one per prompt), times the
scheduler's ``init_noise_sigma``; at each time step the scheduler's
``scale_model_input``, the denoiser, classifier-free guidance
(:func:`text2image.pipelines.diffusion.guide`: ``uncond + s (cond - uncond)``
with the empty caption ``[BOS] [EOS]`` of the other chapters as the
unconditional branch; at ``s = 1`` the conditional model alone), the
scheduler's ``step``; then the latents divided by the VAE's
``scaling_factor`` and decoded.

**Schedulers** (:func:`scheduler_for`), over the training schedule of the
pixel-space chapter (1,000 steps, betas linear from 1e-4 to 0.02), steps
spaced from t = 999: for a noise-predicting denoiser ``ddim`` (DDIM, eta 0),
``euler`` (``EulerDiscreteScheduler``), ``dpm`` (``DPMSolverMultistepScheduler``,
DPM-Solver++ of order 2) and ``ddpm`` (ancestral); for a velocity-predicting
one ``euler`` (``FlowMatchEulerDiscreteScheduler``) and ``dpm`` (the same
solver on flow sigmas). Unlike the pixel-space samplers, none clips its
estimate of the clean sample to [-1, 1]: latents have no such range.

**Bad input** is refused before anything is computed, one line each: a prompt
that is empty or has a word outside the world's vocabulary (the tokenizer's
error, naming the vocabulary), a prompt longer than the text encoder's 32
tokens (the tokenizer's error: never truncated in silence), fewer than one
step, a negative guidance scale, a list of generators that does not have one
generator per prompt, a scheduler that does not fit the objective, an unknown
output type.
"""

from __future__ import annotations

import copy
import inspect
import logging
from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np
import torch
from diffusers import (DDIMScheduler, DDPMScheduler, DiffusionPipeline, DPMSolverMultistepScheduler,
                       EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler)
from diffusers.loaders import StableDiffusionLoraLoaderMixin, TextualInversionLoaderMixin
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

from text2image import text as T
from text2image.models import diffusion as D
from text2image.models import latent as L
from text2image.pipelines import diffusion as P
from text2image.pipelines.prompts import SamplingError, encode_prompts, null_captions
from text2image.world.tensors import to_uint8

SAMPLERS = {"epsilon": ("ddim", "euler", "dpm", "ddpm"), "velocity": ("euler", "dpm")}
DEFAULT_SAMPLER = {"epsilon": "ddim", "velocity": "euler"}
OUTPUT_TYPES = ("np", "pil", "pt", "uint8", "latent")


@dataclass(frozen=True)
class Sampling(P.Sampling):
    """The pixel-space chapter's sampler settings (``sampler``, ``steps``, ``guidance``, with the same checks),
    with the latent pipeline's schedulers: :data:`SAMPLERS`."""

    SAMPLERS: ClassVar[dict[str, tuple[str, ...]]] = SAMPLERS
    DEFAULT_SAMPLER: ClassVar[dict[str, str]] = DEFAULT_SAMPLER


def _ddpm_betas() -> dict:
    return dict(num_train_timesteps=D.TRAIN_STEPS, beta_start=D.BETA_START, beta_end=D.BETA_END,
                beta_schedule="linear", timestep_spacing="trailing")


def scheduler_for(sampler: str, objective: str = "epsilon"):
    """A fresh scheduler ``sampler`` (``ddim``, ``euler``, ``dpm``, ``ddpm``) for a denoiser trained on
    ``objective``, over the training schedule of :mod:`text2image.models.diffusion`."""
    sampler = Sampling(sampler=sampler).for_objective(objective).sampler
    if objective == "velocity":
        if sampler == "euler":
            return FlowMatchEulerDiscreteScheduler(num_train_timesteps=D.TRAIN_STEPS, shift=1.0)
        return DPMSolverMultistepScheduler(num_train_timesteps=D.TRAIN_STEPS, use_flow_sigmas=True, flow_shift=1.0,
                                           prediction_type="flow_prediction", algorithm_type="dpmsolver++",
                                           solver_order=2)
    if sampler == "ddim":
        return DDIMScheduler(**_ddpm_betas(), prediction_type="epsilon", clip_sample=False, set_alpha_to_one=True)
    if sampler == "ddpm":
        return DDPMScheduler(**_ddpm_betas(), prediction_type="epsilon", clip_sample=False)
    if sampler == "euler":
        return EulerDiscreteScheduler(**_ddpm_betas(), prediction_type="epsilon")
    return DPMSolverMultistepScheduler(**_ddpm_betas(), prediction_type="epsilon", algorithm_type="dpmsolver++",
                                       solver_order=2)


def _no_text_encoder_note(record: logging.LogRecord) -> bool:
    return "No LoRA keys associated to" not in record.getMessage()


def _init_sigma(scheduler) -> float:
    """The spread of the starting noise (Euler's is its largest sigma; flow matching's 1)."""
    return getattr(scheduler, "init_noise_sigma", 1.0)


def _scaled(scheduler, x: torch.Tensor, t) -> torch.Tensor:
    """What the denoiser reads at ``t`` (Euler divides by ``sqrt(sigma^2 + 1)``; the others read ``x``)."""
    return scheduler.scale_model_input(x, t) if hasattr(scheduler, "scale_model_input") else x


def sampler_of(scheduler) -> str:
    """The name :func:`scheduler_for` gives a scheduler of this class."""
    names = {DDIMScheduler: "ddim", DDPMScheduler: "ddpm", EulerDiscreteScheduler: "euler",
             FlowMatchEulerDiscreteScheduler: "euler", DPMSolverMultistepScheduler: "dpm"}
    return names.get(type(scheduler), type(scheduler).__name__)


def scheduler_problem(scheduler, objective: str) -> str | None:
    """Why ``scheduler`` cannot sample a denoiser trained on ``objective`` (``None`` when it can)."""
    flow = isinstance(scheduler, FlowMatchEulerDiscreteScheduler) or (
        getattr(scheduler.config, "prediction_type", None) == "flow_prediction")
    if objective == "velocity" and not flow:
        return (f"{type(scheduler).__name__} (prediction {scheduler.config.get('prediction_type')!r}) cannot sample a "
                f"denoiser trained to predict the velocity; use scheduler_for('euler' or 'dpm', 'velocity')")
    if objective == "epsilon" and (flow or scheduler.config.get("prediction_type", "epsilon") != "epsilon"):
        return (f"{type(scheduler).__name__} is set for another prediction than the noise this denoiser predicts; "
                f"use scheduler_for('ddim', 'euler', 'dpm' or 'ddpm')")
    if scheduler.config.get("num_train_timesteps") != D.TRAIN_STEPS:
        return f"{type(scheduler).__name__} has {scheduler.config.get('num_train_timesteps')} training steps, not {D.TRAIN_STEPS}"
    return None


class LatentDiffusionPipeline(DiffusionPipeline, TextualInversionLoaderMixin, StableDiffusionLoraLoaderMixin):
    """Latent diffusion with a frozen CLIP text encoder, a UNet or a DiT, and classifier-free guidance.

    With diffusers' ``TextualInversionLoaderMixin``, as SD's pipeline: ``load_textual_inversion(path,
    token=...)`` adds a learned word (a ``learned_embeds.safetensors``) to the tokenizer and text encoder, and
    prompts go through ``maybe_convert_prompt`` (a multi-vector word becomes its tokens).

    With SD's ``StableDiffusionLoraLoaderMixin`` too (its components are SD's: ``unet`` and a ``CLIPTextModel``):
    ``load_lora_weights(folder, adapter_name=...)`` reads a ``pytorch_lora_weights.safetensors`` into the UNet
    through peft, and ``disable_lora`` / ``delete_adapters`` / ``unload_lora_weights`` take it out again
    (:mod:`text2image.methods.lora`). A DiT pipeline has no ``unet`` to load into and says so.

    ``pipe(prompt, num_inference_steps=20, guidance_scale=3.0, generator=None, output_type="np")`` returns an
    ``ImagePipelineOutput`` whose ``images`` are (B, 32, 32, 3) floats in [0, 1] (``np``), PIL images
    (``pil``), a (B, 3, 32, 32) tensor in [0, 1] (``pt``), the world's uint8 arrays (``uint8``) or the
    final latents (``latent``).
    """

    model_cpu_offload_seq = "text_encoder->unet->transformer->vae"
    _optional_components = ["unet", "transformer"]

    def __init__(self, vae, text_encoder, tokenizer, scheduler, unet, transformer, objective: str = "epsilon"):
        super().__init__()
        if (unet is None) == (transformer is None):
            raise ValueError("a latent diffusion pipeline has one denoiser: pass a unet or a transformer, not "
                             f"{'both' if unet is not None else 'neither'}")
        if objective not in D.OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; the objectives are: {', '.join(D.OBJECTIVES)}")
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
                              unet=unet, transformer=transformer)
        self.register_to_config(objective=objective)
        self.set_progress_bar_config(disable=True)  # a chapter's output shows no progress bar

    # ------------------------------------------------------------------------- what it is made of

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.unet if self.unet is not None else self.transformer

    @property
    def objective(self) -> str:
        return self.config.objective

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        size = self.denoiser.config.sample_size
        return (self.denoiser.config.in_channels, size, size)

    def with_scheduler(self, scheduler) -> "LatentDiffusionPipeline":
        """A pipeline sharing this one's networks, with another scheduler (a name of :func:`scheduler_for`, or a
        scheduler): sweeps compare schedulers without touching the pipeline they start from."""
        if isinstance(scheduler, str):
            scheduler = scheduler_for(scheduler, self.objective)
        other = LatentDiffusionPipeline(self.vae, self.text_encoder, self.tokenizer, scheduler, self.unet,
                                        self.transformer, self.objective)
        other.set_progress_bar_config(**getattr(self, "_progress_bar_config", {}))
        return other

    def own_tokenizer(self) -> T.ShapesTokenizer:
        """This pipeline's tokenizer, made its own first when it is the world's shared one (what
        :func:`assemble` passes): a word added to it must not reach every other model's tokenizer."""
        if self.tokenizer is T.tokenizer():
            self.register_modules(tokenizer=copy.deepcopy(self.tokenizer))
        return self.tokenizer

    def load_textual_inversion(self, pretrained_model_name_or_path, token=None, tokenizer=None, text_encoder=None,
                               **kwargs):
        """diffusers' loader (safetensors only, local files only), on a tokenizer of this pipeline's own, without
        transformers' warning on how ``resize_token_embeddings`` fills the new row (the loader overwrites it)."""
        from transformers.utils import logging as transformers_logging

        if tokenizer is None:
            self.own_tokenizer()
        kwargs.setdefault("use_safetensors", True)
        kwargs.setdefault("local_files_only", True)
        verbosity = transformers_logging.get_verbosity()
        transformers_logging.set_verbosity_error()
        try:
            return super().load_textual_inversion(pretrained_model_name_or_path, token=token, tokenizer=tokenizer,
                                                  text_encoder=text_encoder, **kwargs)
        finally:
            transformers_logging.set_verbosity(verbosity)

    def load_lora_weights(self, pretrained_model_name_or_path_or_dict, adapter_name=None, **kwargs):
        """diffusers' loader (safetensors only, local files only) into the UNet; refused for a DiT pipeline."""
        if self.unet is None:
            raise ValueError(f"this pipeline's denoiser is a {type(self.transformer).__name__}, not a UNet: "
                             f"a UNet LoRA has nothing to load into")
        kwargs.setdefault("use_safetensors", True)
        kwargs.setdefault("local_files_only", True)
        # a UNet-only adapter has no text-encoder keys: the mixin's warning that it found none says nothing here
        source = logging.getLogger("diffusers.loaders.lora_base")
        source.addFilter(_no_text_encoder_note)
        try:
            return super().load_lora_weights(pretrained_model_name_or_path_or_dict, adapter_name=adapter_name,
                                             **kwargs)
        finally:
            source.removeFilter(_no_text_encoder_note)

    # ------------------------------------------------------------------------- the steps of a call

    def check_inputs(self, prompts: list[str], steps: int, guidance: float, generator, output_type: str) -> None:
        """Every bad input raises here, before any network runs (see the module's docstring)."""
        Sampling(steps=steps, guidance=guidance)  # the pixel-space chapter's checks and messages
        if isinstance(generator, (list, tuple)):
            if len(generator) != len(prompts):
                raise SamplingError(f"{len(generator)} generator{'s' if len(generator) != 1 else ''} for "
                                    f"{len(prompts)} prompt{'s' if len(prompts) != 1 else ''}: pass one generator, "
                                    f"or a list of one per prompt")
            if not all(isinstance(g, torch.Generator) for g in generator):
                raise SamplingError("a list of generators holds torch.Generator objects only")
        elif generator is not None and not isinstance(generator, torch.Generator):
            raise SamplingError(f"generator must be a torch.Generator or a list of them, not {type(generator).__name__}")
        if output_type not in OUTPUT_TYPES:
            raise SamplingError(f"unknown output_type {output_type!r}; choose from: {', '.join(OUTPUT_TYPES)}")
        problem = scheduler_problem(self.scheduler, self.objective)
        if problem:
            raise SamplingError(problem)

    def encode_prompt(self, prompts: Sequence[str], guidance: float):
        """``(states, mask, null_states, null_mask)``: the text encoder's token states of the prompts and, when
        guiding, of as many empty captions (``None`` at ``guidance = 1``)."""
        prompts = list(prompts)
        if any(f"{t}_1" in self.tokenizer.added_tokens_encoder for t in self.tokenizer.added_tokens_encoder):
            prompts = self.maybe_convert_prompt(prompts, self.tokenizer)  # only a multi-vector word changes
        ids, mask = encode_prompts(prompts, self.tokenizer)
        device = self.denoiser.device
        ids, mask = ids.to(device), mask.to(device)
        states = L.encode_text(self.text_encoder, ids, mask)
        if guidance == 1:
            return states, mask, None, None
        null_ids, null_mask = (t.to(device) for t in null_captions(len(prompts), self.tokenizer))
        return states, mask, L.encode_text(self.text_encoder, null_ids, null_mask), null_mask

    def prepare_latents(self, n: int, generator) -> torch.Tensor:
        """Gaussian noise (n, 4, 8, 8) drawn on the CPU from ``generator`` (the same on any device), scaled by
        the scheduler's ``init_noise_sigma``."""
        denoiser = self.denoiser
        noise = randn_tensor((n, *self.latent_shape), generator=generator, device=torch.device("cpu"),
                             dtype=torch.float32)
        return noise.to(denoiser.device, denoiser.dtype) * _init_sigma(self.scheduler)

    def _step_kwargs(self, generator) -> dict:
        accepted = set(inspect.signature(self.scheduler.step).parameters)
        return {"generator": generator} if "generator" in accepted else {}

    def denoise(self, latents: torch.Tensor, states, mask, null_states, null_mask, guidance: float, steps: int,
                generator=None) -> torch.Tensor:
        """The sampling loop: ``steps`` scheduler steps of the guided denoiser, from noise to clean latents."""
        denoiser = self.denoiser
        self.scheduler.set_timesteps(steps, device=latents.device)
        extra = self._step_kwargs(generator)

        def predict(x, t, s, m):
            return L.predict(denoiser, x, t, s, m)

        with self.progress_bar(total=len(self.scheduler.timesteps)) as bar:
            for t in self.scheduler.timesteps:
                model_input = _scaled(self.scheduler, latents, t)
                prediction = P.guide(predict, model_input, t, states, mask, null_states, null_mask, guidance)
                latents = self.scheduler.step(prediction, t, latents, **extra).prev_sample
                bar.update()
        return latents

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, 32, 32) in [-1, 1] from scaled latents."""
        return self.vae.decode(latents.to(self.vae.dtype) / self.scaling_factor).sample

    @torch.no_grad()
    def __call__(self, prompt: str | Sequence[str], num_inference_steps: int = 20, guidance_scale: float = 3.0,
                 generator: torch.Generator | Sequence[torch.Generator] | None = None, output_type: str = "np",
                 return_dict: bool = True):
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        self.check_inputs(prompts, num_inference_steps, guidance_scale, generator, output_type)
        if not prompts:
            empty = np.zeros((0, 32, 32, 3), np.uint8 if output_type == "uint8" else np.float32)
            return ImagePipelineOutput(images=empty) if return_dict else (empty,)
        states, mask, null_states, null_mask = self.encode_prompt(prompts, guidance_scale)
        latents = self.prepare_latents(len(prompts), generator)
        latents = self.denoise(latents, states, mask, null_states, null_mask, guidance_scale, num_inference_steps,
                               generator)
        images = latents if output_type == "latent" else self.postprocess(self.decode(latents), output_type)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    @staticmethod
    def postprocess(images: torch.Tensor, output_type: str):
        if output_type == "uint8":
            return to_uint8(images)
        unit = (images.float().clamp(-1, 1) + 1) / 2
        if output_type == "pt":
            return unit
        array = unit.permute(0, 2, 3, 1).cpu().numpy()
        if output_type == "np":
            return array
        from PIL import Image

        return [Image.fromarray(a) for a in to_uint8(images)]


# ----------------------------------------------------------------------------- building one, and the benchmark's view

def assemble(denoiser: torch.nn.Module, vae, text_encoder, objective: str, sampler: str | None = None,
             tokenizer: T.ShapesTokenizer | None = None) -> LatentDiffusionPipeline:
    """A pipeline around a trained ``denoiser`` (UNet or DiT), with the objective's default scheduler unless
    ``sampler`` names another, and the world's tokenizer."""
    which = L.kind(denoiser)
    scheduler = scheduler_for(sampler or DEFAULT_SAMPLER[objective], objective)
    return LatentDiffusionPipeline(vae.eval(), text_encoder.eval(), tokenizer or T.tokenizer(), scheduler,
                                   unet=denoiser.eval() if which == "unet" else None,
                                   transformer=denoiser.eval() if which == "dit" else None, objective=objective)


class Generator:
    """The pipeline as the benchmark's generator: ``(prompts, seed) -> uint8 (P, 32, 32, 3)``, one
    ``torch.Generator`` seeded with ``seed`` per call (the same prompts and seed, the same images)."""

    def __init__(self, pipe: LatentDiffusionPipeline, sampling: Sampling | None = None):
        self.sampling = (sampling or Sampling()).for_objective(pipe.objective)
        self.pipe = pipe if sampler_of(pipe.scheduler) == self.sampling.sampler else pipe.with_scheduler(
            self.sampling.sampler)

    def __call__(self, prompts: Sequence[str], seed: int) -> np.ndarray:
        if isinstance(prompts, str):
            raise SamplingError("pass a list of prompts, not one string")
        return self.pipe(list(prompts), num_inference_steps=self.sampling.steps,
                         guidance_scale=self.sampling.guidance, generator=torch.Generator().manual_seed(int(seed)),
                         output_type="uint8").images


@torch.no_grad()
def bare_loop(denoiser: torch.nn.Module, vae, text_encoder, prompts: Sequence[str], seed: int, sampling: Sampling,
              objective: str) -> torch.Tensor:
    """The same sampling written as a plain loop, no pipeline: what the pipeline's speed is measured against
    (and, bit for bit, what it must draw)."""
    sampling = sampling.for_objective(objective)
    device = next(denoiser.parameters()).device
    ids, mask = (t.to(device) for t in encode_prompts(list(prompts)))
    states = L.encode_text(text_encoder, ids, mask)
    null_states = null_mask = None
    if sampling.guidance != 1:
        null_ids, null_mask = (t.to(device) for t in null_captions(len(prompts)))
        null_states = L.encode_text(text_encoder, null_ids, null_mask)
    scheduler = scheduler_for(sampling.sampler, objective)
    generator = torch.Generator().manual_seed(int(seed))
    size = denoiser.config.sample_size
    x = torch.randn((len(prompts), denoiser.config.in_channels, size, size), generator=generator).to(device)
    x = x * _init_sigma(scheduler)
    scheduler.set_timesteps(sampling.steps, device=device)
    extra = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    for t in scheduler.timesteps:
        model_input = _scaled(scheduler, x, t)
        prediction = P.guide(lambda a, b, c, d: L.predict(denoiser, a, b, c, d), model_input, t, states, mask,
                             null_states, null_mask, sampling.guidance)
        x = scheduler.step(prediction, t, x, **extra).prev_sample
    return vae.decode(x / vae.config.scaling_factor).sample


def _parameters(module) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def describe(pipe, resolution: int | None = None) -> dict:
    """How a pipeline with Stable Diffusion's components (this chapter's, or a ``StableDiffusionPipeline``) is
    built, read from its config objects: image resolution, latent shape (H, W, C), scaling factor, text tokens
    and their width, the denoiser's class, channels, cross-attention width and heads, parameters per component,
    and the training schedule."""
    vae = pipe.vae.config
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    factor = 2 ** (len(vae.block_out_channels) - 1)
    resolution = int(resolution or vae.sample_size)
    text = pipe.text_encoder.config
    config = denoiser.config
    heads = config.get("attention_head_dim") if denoiser.__class__.__name__ == "UNet2DConditionModel" \
        else config.get("num_attention_heads")
    return {"resolution": resolution, "latent_shape": (resolution // factor, resolution // factor, vae.latent_channels),
            "scaling_factor": float(vae.scaling_factor), "tokens": int(pipe.tokenizer.model_max_length),
            "vocabulary": len(pipe.tokenizer), "text_width": text.hidden_size, "text_layers": text.num_hidden_layers,
            "cross_attention_dim": config.get("cross_attention_dim"), "denoiser": type(denoiser).__name__,
            "block_out_channels": tuple(config.get("block_out_channels") or ()) or None,
            "heads": heads[0] if isinstance(heads, (list, tuple)) else heads,
            "parameters": {"vae": _parameters(pipe.vae), "text_encoder": _parameters(pipe.text_encoder),
                           "denoiser": _parameters(denoiser)},
            "train_steps": pipe.scheduler.config.get("num_train_timesteps"),
            "beta_schedule": pipe.scheduler.config.get("beta_schedule")}
