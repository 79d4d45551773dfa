"""A text-conditioned DCGAN for 32 px scenes, and the losses of its game.

The architecture is that of the first text-to-image GAN (Reed et al., 2016,
"GAN-CLS"), itself a DCGAN (Radford et al., 2016):

* the **generator** reads a noise vector ``z`` and the caption, as one vector:
  the ``[EOS]`` state of its own caption encoder
  (:class:`~text2image.models.text_encoder.CaptionEncoder`), projected and
  concatenated to ``z``; a linear layer makes a 4 x 4 map, three transposed
  convolutions (batch norm, ReLU) double it to 32 x 32, a last convolution
  and ``tanh`` give the image in [-1, 1];
* the **discriminator** halves the image three times with strided convolutions
  (leaky ReLU) down to 4 x 4, concatenates the caption's vector (from its own
  caption encoder) copied at every position, and a last convolution gives one
  logit: "a real image *of this caption*".

Its loss is GAN-CLS's *matching-aware* one: the discriminator learns to accept
real images with their captions and to reject both generated images and real
images with another caption (:func:`discriminator_loss`), so that it checks
the caption and not only the realism. The generator's loss is the
non-saturating one of Goodfellow et al. (2014): ``-log D(G(z))``.

**The stabilising change** (``spectral_norm=True``): spectral normalisation
(Miyato et al., 2018) of every layer of the discriminator's image path and
head, which divides each weight by its largest singular value (one power
iteration per step), so that the discriminator is 1-Lipschitz layer by layer
and cannot sharpen its verdict without bound; it takes the place of the
discriminator's batch normalisation, as in the paper. The generator, the
losses and the loop are unchanged.

The training loop itself (a discriminator step, then a generator step) is the
recipe's (:mod:`text2image.recipes.generative`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _sn

from text2image.models import seeded
from text2image.models.text_encoder import CaptionEncoder

# noise size, generator and discriminator widths (channels at 32 px), caption encoder, caption vector size
SIZES = {
    "smoke": dict(z=16, g_width=9, d_width=8, text_width=16, text_layers=1, text_heads=2, embed=16),
    "cpu": dict(z=64, g_width=35, d_width=64, text_width=64, text_layers=2, text_heads=2, embed=64),
    "gpu": dict(z=128, g_width=168, d_width=192, text_width=256, text_layers=4, text_heads=4, embed=128),
}


class Generator(nn.Module):
    """``(z, caption) -> image``: z (B, z) and caption ids/masks (B, L) to images (B, 3, 32, 32) in [-1, 1]."""

    def __init__(self, size: dict):
        super().__init__()
        w = size["g_width"]
        self.z_dim = size["z"]
        self.text = CaptionEncoder(size["text_width"], size["text_layers"], size["text_heads"])
        self.embed = nn.Sequential(nn.Linear(size["text_width"], size["embed"]), nn.LeakyReLU(0.2))
        self.start = nn.Sequential(nn.Linear(size["z"] + size["embed"], 8 * w * 4 * 4, bias=False))
        self.start_norm = nn.BatchNorm2d(8 * w)

        def up(c_in, c_out):
            return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]

        self.body = nn.Sequential(*up(8 * w, 4 * w), *up(4 * w, 2 * w), *up(2 * w, w),
                                  nn.Conv2d(w, 3, 3, 1, 1), nn.Tanh())

    def caption_vector(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.embed(self.text(input_ids, attention_mask)[1])

    def forward(self, z: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.start(torch.cat([z, self.caption_vector(input_ids, attention_mask)], dim=1))
        h = F.relu(self.start_norm(h.view(z.shape[0], -1, 4, 4)))
        return self.body(h)


class Discriminator(nn.Module):
    """``(image, caption) -> logit``: is this a real image of this caption?"""

    def __init__(self, size: dict, spectral_norm: bool = False):
        super().__init__()
        w = size["d_width"]
        norm = (lambda layer: _sn(layer)) if spectral_norm else (lambda layer: layer)

        def down(c_in, c_out, batch_norm):
            layers = [norm(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not batch_norm))]
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            return layers + [nn.LeakyReLU(0.2, True)]

        bn = not spectral_norm  # spectral normalisation takes the place of batch norm (Miyato et al.)
        self.image = nn.Sequential(*down(3, w, False), *down(w, 2 * w, bn), *down(2 * w, 4 * w, bn))
        self.text = CaptionEncoder(size["text_width"], size["text_layers"], size["text_heads"])
        self.embed = nn.Sequential(nn.Linear(size["text_width"], size["embed"]), nn.LeakyReLU(0.2))
        joint = [norm(nn.Conv2d(4 * w + size["embed"], 4 * w, 1, bias=not bn))]
        if bn:
            joint.append(nn.BatchNorm2d(4 * w))
        self.head = nn.Sequential(*joint, nn.LeakyReLU(0.2, True), norm(nn.Conv2d(4 * w, 1, 4, 1, 0)))

    def forward(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.image(images)
        e = self.embed(self.text(input_ids, attention_mask)[1])
        h = torch.cat([h, e[:, :, None, None].expand(-1, -1, *h.shape[2:])], dim=1)
        return self.head(h).flatten()


class GanPair(nn.Module):
    """The two players; the recipe's loop trains them in turn (only the generator is shipped)."""

    def __init__(self, size: dict, spectral_norm: bool = False, d_lr_scale: float = 1.0,
                 betas: tuple[float, float] = (0.5, 0.999)):
        super().__init__()
        self.generator = Generator(size)
        self.discriminator = Discriminator(size, spectral_norm)
        self.spectral_norm = spectral_norm
        self.d_lr_scale, self.betas = d_lr_scale, tuple(betas)

    def optimizer_groups(self) -> list[dict]:
        """The two players as two parts of the optimiser, each clipped on its own (DCGAN: Adam, betas 0.5 / 0.999)."""
        return [{"params": list(self.generator.parameters()), "betas": self.betas, "clip_alone": "generator"},
                {"params": list(self.discriminator.parameters()), "betas": self.betas, "lr_scale": self.d_lr_scale,
                 "clip_alone": "discriminator"}]


def build_generator(size: dict, seed: int = 0) -> Generator:
    return seeded(lambda: Generator(size), seed)


def build_pair(size: dict, spectral_norm: bool = False, seed: int = 0, **kwargs) -> GanPair:
    return seeded(lambda: GanPair(size, spectral_norm, **kwargs), seed)


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- the game's losses

def discriminator_loss(real: torch.Tensor, wrong: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """GAN-CLS: ``-log D(real, caption) - 1/2 [log(1 - D(real, other caption)) + log(1 - D(G(z), caption))]``,
    on logits (``softplus(-x) = -log sigmoid(x)``)."""
    return F.softplus(-real).mean() + 0.5 * (F.softplus(wrong).mean() + F.softplus(fake).mean())


def generator_loss(fake: torch.Tensor) -> torch.Tensor:
    """The non-saturating loss ``-log D(G(z), caption)``: strong gradients while the discriminator wins."""
    return F.softplus(-fake).mean()


def mismatched(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's "wrong" caption: the next caption of the batch (rolled by one)."""
    return input_ids.roll(1, 0), attention_mask.roll(1, 0)
