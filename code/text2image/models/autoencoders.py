"""The autoencoder family of the book: AE, VAE, VQ-VAE, dVAE and VQGAN, all 32 px -> 8x8 grid.

The encoders and decoders are diffusers' convolutional ``Encoder``/``Decoder``
(the ones inside Stable Diffusion's VAE); what differs between the five models
is the bottleneck, which is the point of the chapter:

* ``ae``: a deterministic latent, nothing else;
* ``vae``: diffusers ``AutoencoderKL``, a Gaussian latent with a KL term (the
  latent space of the diffusion chapter);
* ``vqvae``: diffusers ``VQModel``, nearest-codebook-vector quantisation with a
  straight-through gradient, plus an optional restart of dead codes (the image
  tokenizer of the DALL·E chapter);
* ``dvae``: DALL·E's discrete VAE, a Gumbel-softmax relaxation over the codes,
  temperature annealing and a KL to the uniform prior (written here by hand);
* ``vqgan``: the VQ-VAE plus a patch discriminator with a hinge loss and
  an adaptive weight, and a perceptual loss (written here by hand).

Below the families: one interface over all five (:func:`reconstruct`,
:func:`encode`, :func:`decode`, :func:`codes`), and the small content network
whose features stand in for VGG's in the perceptual loss.
"""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, ModelMixin, VQModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import Decoder, Encoder

from text2image.world.scene import COLOUR_NAMES, SHAPES

DOWN = ("DownEncoderBlock2D",) * 3  # three blocks, two downsamplings: 32 px -> 8x8
UP = ("UpDecoderBlock2D",) * 3

# Stable Diffusion's VAE scales its latents by this factor: diffusers' AutoencoderKL has it as its default
# (read from the signature, so that no model is built for one number)
SD_SCALING_FACTOR = inspect.signature(AutoencoderKL.__init__).parameters["scaling_factor"].default
# taming-transformers clamps VQGAN's adaptive weight at 1e4 (its calculate_adaptive_weight)
TAMING_MAX_GAN_WEIGHT = 1e4


def conv_kwargs(channels: tuple[int, ...], groups: int) -> dict:
    return dict(block_out_channels=tuple(channels), layers_per_block=1, norm_num_groups=groups,
                mid_block_add_attention=False)


class PlainAutoencoder(ModelMixin, ConfigMixin):
    """An encoder, a deterministic ``latent_channels`` x 8 x 8 code, a decoder."""

    @register_to_config
    def __init__(self, channels: tuple[int, ...] = (32, 64, 64), latent_channels: int = 4, groups: int = 16):
        super().__init__()
        kw = conv_kwargs(channels, groups)
        self.encoder = Encoder(in_channels=3, out_channels=latent_channels, down_block_types=DOWN, double_z=False, **kw)
        self.decoder = Decoder(in_channels=latent_channels, out_channels=3, up_block_types=UP, **kw)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(latents)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(images))


def build_vae(channels=(32, 64, 64), latent_channels: int = 4, groups: int = 16) -> AutoencoderKL:
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=DOWN, up_block_types=UP,
                         latent_channels=latent_channels, sample_size=32, **conv_kwargs(channels, groups))


def build_vqvae(channels=(32, 64, 64), codebook_size: int = 256, code_dim: int = 16, groups: int = 16) -> VQModel:
    kw = conv_kwargs(channels, groups)
    kw.pop("mid_block_add_attention")
    return VQModel(in_channels=3, out_channels=3, down_block_types=DOWN, up_block_types=UP,
                   latent_channels=code_dim, vq_embed_dim=code_dim, num_vq_embeddings=codebook_size,
                   sample_size=32, mid_block_add_attention=False, **kw)


def downsamplings(model: torch.nn.Module) -> int:
    """How many times the encoder halves the image (its down blocks that end in a downsampler)."""
    return sum(block.downsamplers is not None for block in unwrap(model).encoder.down_blocks)


def vq_forward(model: VQModel, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reconstruction, VQ loss, code indices (B x 8 x 8) and the pre-quantisation vectors."""
    latents = model.encode(images).latents
    quantised, vq_loss, (_, _, indices) = model.quantize(latents)
    reconstruction = model.decode(quantised, force_not_quantize=True).sample
    grid = indices.view(latents.shape[0], latents.shape[2], latents.shape[3])
    return reconstruction, vq_loss, grid, latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])


@torch.no_grad()
def vq_codes(model: VQModel, images: torch.Tensor) -> torch.Tensor:
    """The 8x8 grid of token ids of each image (the DALL·E chapter's image tokens)."""
    latents = model.encode(images).latents
    _, _, (_, _, indices) = model.quantize(latents)
    return indices.view(latents.shape[0], latents.shape[2], latents.shape[3])


@torch.no_grad()
def vq_decode_codes(model: VQModel, codes: torch.Tensor) -> torch.Tensor:
    """Images from grids of token ids."""
    vectors = model.quantize.embedding(codes)  # B x H x W x D
    return model.decode(vectors.permute(0, 3, 1, 2).contiguous(), force_not_quantize=True).sample


class DeadCodeRestarter:
    """Restart codes nobody uses from random encoder outputs (the fix for codebook collapse).

    Usage is an exponential moving average of how often each code is picked;
    every ``every`` steps, codes below ``threshold`` of uniform usage are moved
    onto vectors the encoder actually produces, so they start receiving gradient.
    """

    def __init__(self, codebook_size: int, every: int = 50, threshold: float = 0.03, decay: float = 0.9):
        self.usage = torch.full((codebook_size,), 1.0 / codebook_size)
        self.every, self.threshold, self.decay = every, threshold, decay
        self.restarted = 0

    @torch.no_grad()
    def update(self, embedding: torch.nn.Embedding, indices: torch.Tensor, vectors: torch.Tensor, step: int) -> int:
        counts = torch.bincount(indices.flatten().cpu(), minlength=self.usage.numel()).float()
        self.usage.mul_(self.decay).add_((1 - self.decay) * counts / counts.sum())
        if step == 0 or step % self.every:
            return 0
        dead = (self.usage < self.threshold / self.usage.numel()).nonzero().flatten()
        if dead.numel() == 0:
            return 0
        picks = torch.randint(0, vectors.shape[0], (dead.numel(),), device=vectors.device)
        embedding.weight[dead.to(embedding.weight.device)] = vectors[picks].detach().to(embedding.weight.dtype)
        self.usage[dead] = 1.0 / self.usage.numel()
        self.restarted += dead.numel()
        return dead.numel()


class DiscreteVAE(ModelMixin, ConfigMixin):
    """DALL·E's dVAE: logits over ``codebook_size`` codes at each of 8x8 positions.

    Training samples a relaxed one-hot with the Gumbel-softmax at temperature
    ``tau`` and feeds the decoder the matching mix of codebook vectors; at test
    time the argmax code is used, as a discrete token.
    """

    @register_to_config
    def __init__(self, channels: tuple[int, ...] = (32, 64, 64), codebook_size: int = 256, code_dim: int = 16,
                 groups: int = 16):
        super().__init__()
        kw = conv_kwargs(channels, groups)
        self.encoder = Encoder(in_channels=3, out_channels=codebook_size, down_block_types=DOWN, double_z=False, **kw)
        self.codebook = torch.nn.Embedding(codebook_size, code_dim)
        self.decoder = Decoder(in_channels=code_dim, out_channels=3, up_block_types=UP, **kw)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)  # B x K x 8 x 8

    def decode_soft(self, weights: torch.Tensor) -> torch.Tensor:
        """Decode from per-position weights over the codes (one-hot = hard tokens)."""
        vectors = torch.einsum("bkhw,kd->bdhw", weights, self.codebook.weight)
        return self.decoder(vectors)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.codebook(codes).permute(0, 3, 1, 2).contiguous())

    def forward(self, images: torch.Tensor, tau: float = 1.0, hard: bool = False):
        logits = self.logits(images)
        if hard:
            codes = logits.argmax(dim=1)
            return self.decode_codes(codes), logits
        weights = F.gumbel_softmax(logits, tau=tau, hard=False, dim=1)
        return self.decode_soft(weights), logits


def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(q || uniform) per position, averaged: sum_k q_k log(K q_k)."""
    log_q = F.log_softmax(logits, dim=1)
    return (log_q.exp() * (log_q + math.log(logits.shape[1]))).sum(dim=1).mean()


def gumbel_temperature(step: int, steps: int, start: float = 1.0, end: float = 1 / 16) -> float:
    """Exponential annealing from ``start`` to ``end`` over the run (DALL·E anneals to 1/16)."""
    progress = min(1.0, step / max(1, steps))
    return start * (end / start) ** progress


class PatchDiscriminator(torch.nn.Module):
    """A small PatchGAN: one real/fake logit per overlapping patch (here 4x4 patches of a 32 px image)."""

    def __init__(self, channels: int = 32):
        super().__init__()
        c = channels
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, c, 4, 2, 1), torch.nn.LeakyReLU(0.2),
            torch.nn.Conv2d(c, 2 * c, 4, 2, 1), torch.nn.GroupNorm(8, 2 * c), torch.nn.LeakyReLU(0.2),
            torch.nn.Conv2d(2 * c, 2 * c, 3, 1, 1), torch.nn.GroupNorm(8, 2 * c), torch.nn.LeakyReLU(0.2),
            torch.nn.Conv2d(2 * c, 1, 3, 1, 1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean())


def adaptive_gan_weight(rec_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer: torch.Tensor,
                        max_weight: float = TAMING_MAX_GAN_WEIGHT) -> torch.Tensor:
    """VQGAN's balance: ||grad rec|| / ||grad GAN|| at the decoder's last layer."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    return (rec_grad.norm() / (gan_grad.norm() + 1e-4)).clamp(0.0, max_weight).detach()


def psnr(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, for images in [-1, 1]."""
    mse = ((images.clamp(-1, 1) - reconstructions.clamp(-1, 1)) / 2).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def codebook_stats(codes: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """Share of the codebook in use and the perplexity of code frequencies (= K when uniform)."""
    counts = torch.bincount(codes.flatten(), minlength=codebook_size).float()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"usage": float((counts > 0).float().mean()), "perplexity": float(entropy.exp())}


# ----------------------------------------------------------------------------- models as one interface

def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The shipped autoencoder inside a training wrapper (or the model itself)."""
    return getattr(model, "vq", model)


@torch.no_grad()
def reconstruct(model: torch.nn.Module, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Deterministic reconstructions: the VAE decodes its mean, the dVAE its argmax codes."""
    model = unwrap(model)
    out = []
    for chunk in images.split(batch):
        if isinstance(model, AutoencoderKL):
            out.append(model.decode(model.encode(chunk).latent_dist.mode()).sample)
        elif isinstance(model, VQModel):
            out.append(vq_forward(model, chunk)[0])
        elif isinstance(model, DiscreteVAE):
            out.append(model(chunk, hard=True)[0])
        else:
            out.append(model(chunk))
    return torch.cat(out).clamp(-1, 1)


@torch.no_grad()
def encode(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The continuous latent grid (B x C x 8 x 8): AE code, VAE mean, VQ vectors before quantisation,
    dVAE code probabilities."""
    model = unwrap(model)
    if isinstance(model, AutoencoderKL):
        return model.encode(images).latent_dist.mode()
    if isinstance(model, VQModel):
        return model.encode(images).latents
    if isinstance(model, DiscreteVAE):
        return model.logits(images).softmax(dim=1)
    return model.encode(images)


@torch.no_grad()
def decode(model: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """Images from latent grids as :func:`encode` returns them (VQ latents are quantised first)."""
    model = unwrap(model)
    if isinstance(model, AutoencoderKL):
        return model.decode(latents).sample.clamp(-1, 1)
    if isinstance(model, VQModel):
        return model.decode(latents).sample.clamp(-1, 1)
    if isinstance(model, DiscreteVAE):
        codes = latents.argmax(dim=1)
        return model.decode_codes(codes).clamp(-1, 1)
    return model.decode(latents).clamp(-1, 1)


@torch.no_grad()
def codes(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor | None:
    """Token grids (B x 8 x 8) of the discrete models, ``None`` for the continuous ones."""
    model = unwrap(model)
    if isinstance(model, VQModel):
        return torch.cat([vq_codes(model, chunk) for chunk in images.split(256)])
    if isinstance(model, DiscreteVAE):
        return torch.cat([model.logits(chunk).argmax(dim=1) for chunk in images.split(256)])
    return None


def codebook_size(model: torch.nn.Module) -> int | None:
    model = unwrap(model)
    if isinstance(model, VQModel):
        return model.config.num_vq_embeddings
    if isinstance(model, DiscreteVAE):
        return model.config.codebook_size
    return None


# ----------------------------------------------------------------------------- the perceptual network

class ContentNet(torch.nn.Module):
    """A tiny CNN trained to say, for each cell of an 8x8 grid, which shape and which colour lies there.

    Its intermediate feature maps stand in for VGG's in VQGAN's perceptual loss:
    no pretrained VGG can be downloaded here, so the project trains its own
    judge of what matters in this world (shapes and colours, where they are).
    """

    def __init__(self, width: int = 16):
        super().__init__()
        w = width

        def block(c_in, c_out, stride):
            return torch.nn.Sequential(
                torch.nn.Conv2d(c_in, c_out, 3, stride, 1), torch.nn.GroupNorm(4, c_out), torch.nn.SiLU(),
                torch.nn.Conv2d(c_out, c_out, 3, 1, 1), torch.nn.GroupNorm(4, c_out), torch.nn.SiLU())

        self.blocks = torch.nn.ModuleList([block(3, w, 1), block(w, 2 * w, 2), block(2 * w, 4 * w, 2)])
        self.head = torch.nn.Conv2d(4 * w, 1 + len(SHAPES) + 1 + len(COLOUR_NAMES), 1)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], images
        for block in self.blocks:
            h = block(h)
            out.append(h)
        return out

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of the shape (background first) and of the colour (background first) of each 8x8 cell."""
        logits = self.head(self.features(images)[-1])
        return logits[:, :1 + len(SHAPES)], logits[:, 1 + len(SHAPES):]


def perceptual_loss(net: ContentNet, images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """LPIPS-style distance: squared differences of channel-normalised features, averaged over layers."""
    loss = 0.0
    for a, b in zip(net.features(images), net.features(reconstructions)):
        a = a / (a.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-6)
        b = b / (b.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-6)
        loss = loss + (a - b).pow(2).sum(dim=1).mean()
    return loss / len(net.blocks)
