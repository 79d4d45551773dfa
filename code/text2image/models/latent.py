"""The denoisers of text-guided latent diffusion: a UNet and a DiT on the 8 x 8 x 4 latents of ``vae-long``.

Stable Diffusion (Rombach et al., 2022) at the world's scale: the image is
first encoded by a frozen autoencoder (the autoencoders chapter's ``vae-long``,
a diffusers ``AutoencoderKL`` that turns a 32 px image into a latent of
8 x 8 x 4), the latent is multiplied by the VAE's ``scaling_factor`` (its
config holds it: one over the standard deviation of the latents, as SD's
0.18215), and the diffusion runs there, 16 times fewer numbers than the pixels.
The caption is read by a frozen text encoder, the text tower of the shipped
CLIP (:func:`text_encoder`, a ``transformers.CLIPTextModel``), whose *every*
token state the denoiser reads through cross-attention: SD 1.4 reads the 77
states of dimension 768 of OpenAI's CLIP ViT-L/14 the same way.

Two denoisers, at the same budget (parameters within 10 %, a test holds it):

* :func:`build_unet`: ``diffusers.UNet2DConditionModel``, SD's own class, with
  cross-attention at every level (8, 4 and 2 latent pixels across);
* :func:`build_dit`: ``diffusers.PixArtTransformer2DModel``, a diffusion
  transformer (DiT, Peebles and Xie, 2023) with cross-attention on the caption,
  as PixArt-alpha; patches of one latent pixel (64 tokens), fixed 2D sine-cosine
  positional embeddings, the time step through adaptive layer norms.
  (``DiTTransformer2DModel`` conditions on a class label only.)

Both learn with the objectives of the pixel-space chapter, the same code
(:func:`text2image.models.diffusion.noised`): :func:`latent_loss` is the mean
squared error of the prediction (noise or velocity) at a random time step.
:func:`predict` calls either denoiser the same way, for training, for the
pipeline and for the bare loop it is timed against.

No recipe here: the sizes of each profile are below, the recipes pick them.
"""

from __future__ import annotations

import torch
from diffusers import PixArtTransformer2DModel, UNet2DConditionModel
from transformers import CLIPModel, CLIPTextModel

from text2image.models import diffusion as D
from text2image.models import seeded

LATENT_CHANNELS = 4   # the latent channels of vae-long (its config's latent_channels)
LATENT_SIZE = 8       # 32 px divided by the VAE's two downsamplings
DENOISERS = ("unet", "dit")

# UNet: channels per level (8, 4, 2 latent pixels), ResNet layers per level, attention heads, norm groups.
# DiT: width, transformer blocks, heads, patch size. At each profile the DiT's parameters are within 10 % of the
# UNet's for that profile's text width (the shipped CLIP's: 32, 64, 256), which a test checks.
UNET_SIZES = {
    "smoke": dict(channels=(8, 16, 16), layers=1, heads=2, groups=4),
    "cpu": dict(channels=(32, 64, 64), layers=1, heads=2, groups=16),
    "gpu": dict(channels=(128, 256, 256), layers=2, heads=8, groups=32),
}
DIT_SIZES = {
    "smoke": dict(width=48, layers=2, heads=2, patch=1),
    "cpu": dict(width=128, layers=6, heads=4, patch=1),
    "gpu": dict(width=480, layers=11, heads=8, patch=1),
}


def build_unet(size: dict, text_width: int, seed: int = 0) -> UNet2DConditionModel:
    """SD's UNet on 8 x 8 x 4 latents, cross-attention on text states of ``text_width`` at every level."""
    channels = tuple(size["channels"])
    levels = len(channels)
    return seeded(lambda: UNet2DConditionModel(
        sample_size=LATENT_SIZE, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
        block_out_channels=channels, down_block_types=("CrossAttnDownBlock2D",) * levels,
        up_block_types=("CrossAttnUpBlock2D",) * levels, mid_block_type="UNetMidBlock2DCrossAttn",
        layers_per_block=size["layers"], cross_attention_dim=text_width, norm_num_groups=size["groups"],
        # diffusers' historical name: in UNet2DConditionModel ``attention_head_dim`` is the number of heads
        attention_head_dim=size["heads"]), seed)


def build_dit(size: dict, text_width: int, seed: int = 0) -> PixArtTransformer2DModel:
    """PixArt-alpha's DiT on 8 x 8 x 4 latents: text states of ``text_width`` projected to its width, read by
    cross-attention in every block."""
    width, heads = size["width"], size["heads"]
    if width % heads:
        raise ValueError(f"the DiT's width {width} does not split into {heads} heads")
    return seeded(lambda: PixArtTransformer2DModel(
        num_attention_heads=heads, attention_head_dim=width // heads, in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS, num_layers=size["layers"], cross_attention_dim=width,
        sample_size=LATENT_SIZE, patch_size=size["patch"], caption_channels=text_width,
        use_additional_conditions=False), seed)


def build(denoiser: str, size: dict, text_width: int, seed: int = 0) -> torch.nn.Module:
    """``denoiser``: ``unet`` or ``dit``, at ``size`` (one of :data:`UNET_SIZES` / :data:`DIT_SIZES`)."""
    if denoiser == "unet":
        return build_unet(size, text_width, seed)
    if denoiser == "dit":
        return build_dit(size, text_width, seed)
    raise ValueError(f"unknown denoiser {denoiser!r}; the denoisers are: {', '.join(DENOISERS)}")


def kind(model: torch.nn.Module) -> str:
    """``unet`` or ``dit``: which of the two a denoiser is."""
    if isinstance(model, UNet2DConditionModel):
        return "unet"
    if isinstance(model, PixArtTransformer2DModel):
        return "dit"
    raise TypeError(f"{type(model).__name__} is neither of the chapter's denoisers (UNet2DConditionModel, "
                    f"PixArtTransformer2DModel)")


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- the frozen text encoder

def text_encoder(clip: CLIPModel) -> CLIPTextModel:
    """The text tower of a trained CLIP as a ``CLIPTextModel`` of its own (the same weights, copied), frozen.

    ``last_hidden_state`` gives every token's state after the final layer norm,
    what the denoisers read; the tower is causal, so the state of a word has
    seen the words before it, and the ``[EOS]`` state the whole caption.
    """
    encoder = CLIPTextModel(clip.config.text_config)
    encoder.load_state_dict(clip.text_model.state_dict())  # CLIPModel.text_model is a CLIPTextModel itself
    encoder.requires_grad_(False)
    return encoder.eval()


def text_width(encoder: CLIPTextModel) -> int:
    return encoder.config.hidden_size


@torch.no_grad()
def encode_text(encoder: CLIPTextModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Token states (B, L, width) of caption ids and masks (B, L)."""
    return encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


# ----------------------------------------------------------------------------- one call for both denoisers

def predict(denoiser: torch.nn.Module, sample: torch.Tensor, timestep: torch.Tensor, states: torch.Tensor,
            mask: torch.Tensor) -> torch.Tensor:
    """The denoiser's prediction for latents ``sample`` (B, 4, 8, 8) at ``timestep`` (a number or (B,)), reading
    the text ``states`` (B, L, width) through cross-attention, the pads of ``mask`` (B, L) left out."""
    if isinstance(denoiser, UNet2DConditionModel):
        return denoiser(sample, timestep, encoder_hidden_states=states, encoder_attention_mask=mask).sample
    t = torch.as_tensor(timestep, device=sample.device)
    t = t.expand(sample.shape[0]) if t.ndim == 0 else t
    return denoiser(sample, encoder_hidden_states=states, timestep=t, encoder_attention_mask=mask,
                    added_cond_kwargs={"resolution": None, "aspect_ratio": None}).sample


def latent_loss(denoiser: torch.nn.Module, objective: str, scheduler, latents: torch.Tensor, states: torch.Tensor,
                mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The pixel-space chapter's loss on scaled latents: MSE of the noise (``epsilon``) or of the velocity
    (``velocity``) at a time step drawn uniformly for each latent (from ``generator`` when one is given)."""
    return D.denoising_loss(lambda x_t, t: predict(denoiser, x_t, t, states, mask), objective, scheduler, latents,
                            generator)
