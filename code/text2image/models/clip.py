"""A small CLIP for the shapes world, built from ``transformers.CLIPModel``.

Two towers: a ViT for 32 px images (patches of 4 px: an 8 x 8 grid plus the
class token) and a text transformer that reads the world's word-level
tokenizer (:mod:`text2image.text`). Both end in a linear projection to a
shared space where a caption and its image should point the same way.

Training is the symmetric InfoNCE loss of CLIP: in a batch of ``B`` pairs,
each image must pick its caption among the ``B`` captions and each caption its
image among the ``B`` images, with cosine similarities multiplied by a
learnable scale ``exp(logit_scale)``. ``CLIPConfig`` initialises
``logit_scale`` at ``log(1/0.07)`` (as the paper) but ``CLIPModel`` never
clamps it; we clamp it at ``log(100)`` in the loss (and write the clamped
value back into the parameter), as the paper does.

NegCLIP-style hard negatives (:func:`hard_negatives`) are extra captions put in
the batch, the same words in a wrong order: they are counted only as negatives
(the image-to-text direction sees them, the text-to-image direction does not).

One detail of ``transformers``: ``CLIPTextModel`` pools the text at the
highest token id when ``eos_token_id == 2`` (a legacy of the original OpenAI
vocabulary, where the end token had the largest id). Our ``[EOS]`` is id 2
and the *smallest* word id, so we pool at the first ``[EOS]`` ourselves
(:func:`text_states`); ``last_hidden_state`` is unaffected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel

from text2image import text as T
from text2image.world import captions as C
from text2image.world.scene import INVERSE

LOGIT_SCALE_INIT = math.log(1 / 0.07)
LOGIT_SCALE_MAX = math.log(100.0)
RESOLUTION = 32

# Tower sizes per profile: width, layers, heads, patch size, projection dimension.
SIZES = {
    "smoke": dict(width=32, layers=1, heads=2, patch=8, projection=32),
    "cpu": dict(width=64, layers=3, heads=4, patch=4, projection=64),
    "gpu": dict(width=256, layers=6, heads=8, patch=4, projection=256),
}


def config(width: int = 128, layers: int = 4, heads: int = 4, patch: int = 4, projection: int = 128,
           resolution: int = RESOLUTION) -> CLIPConfig:
    """A ``CLIPConfig`` for ``resolution`` px images and the shapes-world tokenizer."""
    tok = T.tokenizer()
    text_config = dict(vocab_size=len(tok), hidden_size=width, intermediate_size=4 * width,
                       num_hidden_layers=layers, num_attention_heads=heads,
                       max_position_embeddings=T.MAX_LENGTH, pad_token_id=tok.pad_token_id,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                       projection_dim=projection)
    vision_config = dict(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
                         num_attention_heads=heads, image_size=resolution, patch_size=patch,
                         num_channels=3, projection_dim=projection)
    return CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=projection,
                      logit_scale_init_value=LOGIT_SCALE_INIT)


def build(size: dict | None = None, seed: int = 0) -> CLIPModel:
    """A freshly initialised small CLIP (``size``: one of :data:`SIZES`)."""
    torch.manual_seed(seed)
    return CLIPModel(config(**(size or SIZES["cpu"])))


# ----------------------------------------------------------------------------- inputs

def pixels(images) -> torch.Tensor:
    """(N, H, W, 3) uint8 array, or (N, 3, H, W) float tensor in [0, 1] -> (N, 3, H, W) in [-1, 1]."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return images.float() * 2.0 - 1.0


def tokens(texts: Sequence[str], trim: bool = True) -> dict[str, torch.Tensor]:
    """Token ids and attention masks of ``texts`` (errors on words outside the world).

    ``trim`` drops the columns that are padding in every row (the causal text
    tower gives the same states to the real tokens either way, and it is faster).
    """
    enc = T.encode(list(texts))
    ids, mask = enc["input_ids"], enc["attention_mask"]
    if trim and len(ids):
        width = int(mask.sum(dim=1).max())
        ids, mask = ids[:, :width], mask[:, :width]
    return {"input_ids": ids, "attention_mask": mask}


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


# ----------------------------------------------------------------------------- towers

def text_states(model: CLIPModel, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """``(last_hidden_state, pooled)``: every token's state, and the state at the first ``[EOS]``."""
    out = model.text_model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
    hidden = out.last_hidden_state
    eos = (input_ids == model.config.text_config.eos_token_id).int().argmax(dim=-1)
    return hidden, hidden[torch.arange(hidden.shape[0], device=hidden.device), eos]


def text_features(model: CLIPModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  normalize: bool = True) -> torch.Tensor:
    """Projected text embeddings (unit length when ``normalize``)."""
    _, pooled = text_states(model, input_ids, attention_mask)
    z = model.text_projection(pooled)
    return F.normalize(z, dim=-1) if normalize else z


def image_features(model: CLIPModel, pixel_values: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Projected image embeddings (unit length when ``normalize``)."""
    pooled = model.vision_model(pixel_values=pixel_values, return_dict=True).pooler_output
    z = model.visual_projection(pooled)
    return F.normalize(z, dim=-1) if normalize else z


@torch.no_grad()
def embed_texts(model: CLIPModel, texts: Sequence[str], normalize: bool = True, batch: int = 512) -> torch.Tensor:
    """Embeddings of captions, in batches, on the CPU."""
    out = []
    for start in range(0, len(texts), batch):
        enc = {k: v.to(_device(model)) for k, v in tokens(texts[start:start + batch]).items()}
        out.append(text_features(model, enc["input_ids"], enc["attention_mask"], normalize).cpu())
    return torch.cat(out) if out else torch.zeros(0, model.config.projection_dim)


@torch.no_grad()
def embed_images(model: CLIPModel, images, normalize: bool = True, batch: int = 512) -> torch.Tensor:
    """Embeddings of images (uint8 arrays or tensors in [0, 1]), in batches, on the CPU."""
    out = []
    for start in range(0, len(images), batch):
        x = pixels(images[start:start + batch]).to(_device(model))
        out.append(image_features(model, x, normalize).cpu())
    return torch.cat(out) if out else torch.zeros(0, model.config.projection_dim)


# ----------------------------------------------------------------------------- loss

def clamp_logit_scale(model: CLIPModel) -> torch.Tensor:
    """Clamp the parameter at ``log(100)`` in place and return it (the value the loss uses)."""
    with torch.no_grad():
        model.logit_scale.clamp_(max=LOGIT_SCALE_MAX)
    return model.logit_scale.clamp(max=LOGIT_SCALE_MAX)


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor,
                     n_pairs: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Symmetric InfoNCE between ``B`` images and ``B`` captions (+ extra negative captions).

    ``image_emb`` (B, D) and ``text_emb`` (B + M, D) are unit vectors; rows ``B..`` of
    ``text_emb`` are hard negatives: in the image-to-text cross-entropy every image
    must prefer its caption to them too; the text-to-image direction uses only the
    ``B`` true captions. ``logit_scale`` is the log of the inverse temperature.
    """
    n = n_pairs or image_emb.shape[0]
    scale = logit_scale.clamp(max=LOGIT_SCALE_MAX).exp()
    logits = scale * image_emb @ text_emb.T  # (B, B + M)
    target = torch.arange(n, device=image_emb.device)
    image_to_text = F.cross_entropy(logits, target)
    text_to_image = F.cross_entropy(logits[:, :n].T, target)
    loss = (image_to_text + text_to_image) / 2
    with torch.no_grad():
        accuracy = (logits.argmax(dim=1) == target).float().mean()
    return loss, {"i2t": image_to_text.detach(), "t2i": text_to_image.detach(), "batch_acc": accuracy,
                  "scale": scale.detach()}


def loss_fn(model: CLIPModel, batch: dict) -> tuple[torch.Tensor, dict]:
    """The training loss on ``{"pixel_values", "input_ids", "attention_mask"}`` (captions first, negatives after)."""
    logit_scale = clamp_logit_scale(model)
    image_emb = image_features(model, batch["pixel_values"])
    text_emb = text_features(model, batch["input_ids"], batch["attention_mask"])
    return contrastive_loss(image_emb, text_emb, logit_scale, n_pairs=image_emb.shape[0])


# ----------------------------------------------------------------------------- scoring

@torch.no_grad()
def similarity(model: CLIPModel, images, texts: Sequence[str]) -> torch.Tensor:
    """Cosine similarities (N images x M captions)."""
    return embed_images(model, images) @ embed_texts(model, texts).T


def slerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between the directions of ``a`` and ``b`` (unit vectors out)."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    t = torch.as_tensor(t, dtype=a.dtype)
    omega = torch.arccos((a * b).sum(-1).clamp(-1 + 1e-7, 1 - 1e-7))
    if float(omega) < 1e-4:
        return F.normalize((1 - t) * a + t * b, dim=-1)
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Straight-line interpolation between unit vectors (its norm sags in the middle)."""
    return (1 - t) * F.normalize(a, dim=-1) + t * F.normalize(b, dim=-1)


@dataclass(frozen=True)
class Template:
    """A way of turning a class label into a caption: ``text(label)``."""
    name: str
    text: Callable[[str], str]


def class_embeddings(model: CLIPModel, labels: Sequence[str], templates: Sequence[Template]) -> torch.Tensor:
    """One unit vector per label: the mean of its templates' embeddings, renormalised (an ensemble)."""
    rows = []
    for label in labels:
        z = embed_texts(model, [t.text(label) for t in templates])
        rows.append(F.normalize(z.mean(dim=0), dim=-1))
    return torch.stack(rows)


@torch.no_grad()
def zero_shot(model: CLIPModel, images, labels: Sequence[str], templates: Sequence[Template],
              image_emb: torch.Tensor | None = None) -> np.ndarray:
    """Index of the predicted label for each image (one template, or an ensemble of several)."""
    z = image_emb if image_emb is not None else embed_images(model, images)
    return (z @ class_embeddings(model, labels, templates).T).argmax(dim=1).numpy()


# ----------------------------------------------------------------------------- hard negatives

RELATION_WORDS = {"left": "right", "right": "left", "above": "below", "below": "above",
                  "over": "under", "under": "over", "beneath": "above"}


def _text(words: Sequence[str]) -> str:
    return C.text_of(words)


def reverse_relation(caption: C.Caption) -> str | None:
    """The caption with its relation word reversed ("left of" -> "right of"); ``None`` without a relation."""
    if caption.prompt.kind != "relation":
        return None
    words = list(caption.words)
    at = [k for k, w in enumerate(words) if w in RELATION_WORDS]
    if len(at) != 1:
        return None
    words[at[0]] = RELATION_WORDS[words[at[0]]]
    return _text(words)


def exchange_objects(caption: C.Caption) -> str | None:
    """A relation caption with its two noun phrases exchanged: exactly the same words, the other order."""
    if caption.prompt.kind != "relation":
        return None
    words = list(caption.words)
    spans = []
    for spec in (0, 1):
        ks = [g.word_index for g in caption.groundings if g.objects == (spec,)]
        spans.append((min(ks) - 1, max(ks) + 1))  # with the article before
    (a0, a1), (b0, b1) = spans
    if words[a0] != "a" or words[b0] != "a":
        return None
    out = words[:a0] + words[b0:b1] + words[a1:b0] + words[a0:a1] + words[b1:]
    return _text(out)


def _true_of(specs: Sequence[C.Spec], scene) -> bool:
    return all(any(s.matches(o) for o in scene.objects) for s in specs)


def swap_attributes(caption: C.Caption, scene=None) -> str | None:
    """Colours (or else sizes) of two objects of the caption exchanged: "a red circle and a blue
    square" -> "a blue circle and a red square". ``None`` when no swap makes a false caption."""
    if caption.prompt.kind not in ("list", "relation"):
        return None
    for role in ("colour", "size"):
        found = [g for g in caption.groundings if g.role == role and len(g.objects) == 1]
        for i in range(len(found)):
            for j in range(i + 1, len(found)):
                a, b = found[i], found[j]
                if a.word == b.word:
                    continue
                if scene is not None:
                    specs = list(caption.prompt.specs)
                    ia, ib = a.objects[0], b.objects[0]
                    key = "colour" if role == "colour" else "size"
                    sa, sb = specs[ia], specs[ib]
                    specs[ia] = C.Spec(sa.shape, **{**_fields(sa), key: getattr(sb, key)})
                    specs[ib] = C.Spec(sb.shape, **{**_fields(sb), key: getattr(sa, key)})
                    if _true_of(specs, scene):
                        continue
                words = list(caption.words)
                words[a.word_index], words[b.word_index] = b.word, a.word
                return _text(words)
    return None


def _fields(spec: C.Spec) -> dict:
    return {"colour": spec.colour, "size": spec.size}


def hard_negatives(caption: C.Caption, scene=None) -> dict[str, str]:
    """The NegCLIP-style negatives of a caption: ``relation`` (reversed) and ``attribute`` (swapped)."""
    out = {"relation": reverse_relation(caption), "attribute": swap_attributes(caption, scene)}
    return {k: v for k, v in out.items() if v is not None and v != caption.text}
