"""Real pretrained weights from the Hugging Face hub, loaded safely.

Nothing here downloads anything unless asked: every loader reads the local
cache (``local_files_only=True``) unless the caller passes
``allow_download=True``, and weights are read from safetensors only
(``use_safetensors=True``). The book's machines have no network, so the
chapters call :func:`clip_available` first and say so when the weights are
missing; a reader with a network can fetch them once with
``python -c "from text2image import pretrained; pretrained.load_clip(allow_download=True)"``.

CLIP: :func:`load_clip` returns ``openai/clip-vit-base-patch32`` (or any local
folder saved with ``save_pretrained``) and its ``CLIPProcessor``;
:func:`clip_scores` gives cosine similarities between images and captions.

COCO-style captions: :func:`load_coco_captions` reads the JSON with ``images``
and ``annotations`` (the format of ``captions_val2017.json``), and
:func:`coco_caption_ranking` runs the caption-ranking protocol of the CLIP
chapter on it, with an automatic ground truth built from word overlap.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

CLIP_NAME = "openai/clip-vit-base-patch32"

STOPWORDS = frozenset("""a an the of on in at to with and is are be being there this that it its his her their
some two three one four five several while next near by for from into onto over under up down as very""".split())


class WeightsUnavailable(RuntimeError):
    """The weights are not in the local cache and downloading was not allowed."""


def clip_available(name: str = CLIP_NAME) -> bool:
    """Are CLIP's safetensors weights on this machine (a local folder, or the hub cache)? Never downloads."""
    if Path(name).is_dir():
        return any(Path(name).glob("*.safetensors"))
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    for filename in ("model.safetensors", "config.json"):
        found = try_to_load_from_cache(name, filename)
        if not isinstance(found, str) or not os.path.isfile(found):
            return False
    return True


def load_clip(name: str = CLIP_NAME, allow_download: bool = False, device: str | None = None):
    """``(CLIPModel, CLIPProcessor)`` from a local folder or the hub cache (the hub itself only if allowed)."""
    from transformers import CLIPModel, CLIPProcessor

    local_only = not allow_download
    try:
        model = CLIPModel.from_pretrained(name, use_safetensors=True, local_files_only=local_only)
        processor = CLIPProcessor.from_pretrained(name, local_files_only=local_only)
    except OSError as error:
        if local_only:
            raise WeightsUnavailable(
                f"{name}: not found on this machine and downloading was not allowed; "
                f"call load_clip({name!r}, allow_download=True) on a machine with a network") from error
        raise
    return model.to(device or "cpu").eval(), processor


def _pooled(output) -> torch.Tensor:
    """``get_*_features`` returns a tensor in older transformers and an output object in newer ones."""
    return output if torch.is_tensor(output) else output.pooler_output


def _as_pil(images) -> list:
    from PIL import Image

    out = []
    for image in images:
        if isinstance(image, (str, Path)):
            with Image.open(image) as handle:
                out.append(handle.convert("RGB"))
        elif isinstance(image, np.ndarray):
            out.append(Image.fromarray(image).convert("RGB"))
        else:
            out.append(image.convert("RGB"))
    return out


@torch.no_grad()
def clip_embeddings(model, processor, images=None, texts: Sequence[str] | None = None, batch: int = 64):
    """Unit image and text embeddings (either may be ``None``). ``images``: PIL images, paths or uint8 arrays."""
    device = next(model.parameters()).device
    zi = zt = None
    if images is not None:
        images = list(images)
        chunks = []
        for start in range(0, len(images), batch):
            inputs = processor(images=_as_pil(images[start:start + batch]), return_tensors="pt")
            chunks.append(_pooled(model.get_image_features(pixel_values=inputs["pixel_values"].to(device))))
        zi = F.normalize(torch.cat(chunks).float().cpu(), dim=-1)
    if texts is not None:
        texts = list(texts)
        chunks = []
        for start in range(0, len(texts), batch):
            inputs = processor(text=texts[start:start + batch], return_tensors="pt", padding=True, truncation=True)
            inputs = {k: v.to(device) for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
            chunks.append(_pooled(model.get_text_features(**inputs)))
        zt = F.normalize(torch.cat(chunks).float().cpu(), dim=-1)
    return zi, zt


def clip_scores(model, processor, images, texts: Sequence[str]) -> np.ndarray:
    """Cosine similarities, images x captions."""
    zi, zt = clip_embeddings(model, processor, images, texts)
    return (zi @ zt.T).numpy()


# ----------------------------------------------------------------------------- COCO-style captions

@dataclass
class CaptionedImage:
    image_id: int
    path: Path
    captions: list[str] = field(default_factory=list)


def load_coco_captions(annotation_file: str | Path, image_dir: str | Path | None = None,
                       limit: int | None = None) -> list[CaptionedImage]:
    """Images and their captions from a COCO caption file (``images`` + ``annotations``).

    Images without a caption are dropped; ``image_dir`` defaults to the JSON's folder.
    """
    annotation_file = Path(annotation_file)
    data = json.loads(annotation_file.read_text())
    if not {"images", "annotations"} <= set(data):
        raise ValueError(f"{annotation_file}: a COCO caption file has 'images' and 'annotations'")
    folder = Path(image_dir) if image_dir is not None else annotation_file.parent
    records = {im["id"]: CaptionedImage(im["id"], folder / im["file_name"]) for im in data["images"]}
    for ann in data["annotations"]:
        if ann["image_id"] in records:
            records[ann["image_id"]].captions.append(ann["caption"].strip())
    out = [r for _, r in sorted(records.items()) if r.captions]
    return out[:limit] if limit else out


def content_words(caption: str) -> frozenset[str]:
    return frozenset(w for w in re.findall(r"[a-z]+", caption.lower()) if w not in STOPWORDS)


def overlap(a: str, b: str) -> float:
    """Jaccard overlap of the content words of two captions."""
    wa, wb = content_words(a), content_words(b)
    return len(wa & wb) / max(1, len(wa | wb))


def coco_triples(records: Sequence[CaptionedImage]) -> list[tuple[str, str, str]]:
    """Per image: its first caption (matching), the caption of another image that shares the most
    content words with its own captions (partly matching), and the one that shares the fewest (unrelated)."""
    triples = []
    for i, r in enumerate(records):
        own = " ".join(r.captions)
        others = [(overlap(own, c), j, c) for j, o in enumerate(records) if j != i for c in o.captions]
        if not others:
            raise ValueError("the caption ranking needs at least two images")
        others.sort(key=lambda t: (t[0], -t[1]))
        triples.append((r.captions[0], others[-1][2], others[0][2]))
    return triples


def coco_caption_ranking(model, processor, records: Sequence[CaptionedImage]) -> dict:
    """The chapter's caption-ranking protocol and recall@1/5 on COCO-style data."""
    from text2image.evaluate.clip import ranking_scores, recall_at_k

    triples = coco_triples(records)
    zi, _ = clip_embeddings(model, processor, images=[r.path for r in records])
    _, zt = clip_embeddings(model, processor, texts=[c for t in triples for c in t])
    scores = torch.einsum("nd,nkd->nk", zi, zt.reshape(len(records), 3, -1)).numpy()
    _, first = clip_embeddings(model, processor, texts=[r.captions[0] for r in records])
    sim = (zi @ first.T).numpy()
    k5 = min(5, len(records))
    return {**ranking_scores(scores), "n": len(records), "triples": triples, "scores": scores,
            "i2t_r1": recall_at_k(sim, 1), "t2i_r1": recall_at_k(sim.T, 1),
            "i2t_r5": recall_at_k(sim, k5), "t2i_r5": recall_at_k(sim.T, k5)}


def world_caption_ranking(model, processor, pool, seed: int = 0) -> dict:
    """The caption-ranking protocol of the CLIP chapter on shapes-world images, with real weights."""
    from text2image.evaluate.clip import ranking_scores, ranking_triples

    keep, triples = ranking_triples(pool, seed)
    zi, _ = clip_embeddings(model, processor, images=[pool.images[i] for i in keep])
    _, zt = clip_embeddings(model, processor, texts=[c for t in triples for c in t])
    scores = torch.einsum("nd,nkd->nk", zi, zt.reshape(len(keep), 3, -1)).numpy()
    return {**ranking_scores(scores), "n": len(keep)}


# ----------------------------------------------------------------------------- Stable Diffusion 1.4

SD_NAME = "CompVis/stable-diffusion-v1-4"
# What the SD 1.4 model card and configs say, for when the weights are not on this machine (the chapter's table
# compares the book's pipeline with these, and reads the same fields from the configs when the weights are here):
# 512 px images, latents of 64 x 64 x 4 (the VAE downsamples 8 times), scaling factor 0.18215; the text encoder
# of OpenAI's CLIP ViT-L/14 (123M parameters), 77 tokens of 768 dimensions read by cross-attention; an 860M-
# parameter UNet with channels 320/640/1280/1280; 1,000 training steps, betas "scaled_linear" 0.00085 to 0.012.
SD14 = {"resolution": 512, "latent_shape": (64, 64, 4), "scaling_factor": 0.18215, "tokens": 77, "text_width": 768,
        "text_layers": 12, "cross_attention_dim": 768, "denoiser": "UNet2DConditionModel",
        "block_out_channels": (320, 640, 1280, 1280), "parameters": {"text_encoder": 123e6, "denoiser": 860e6},
        "train_steps": 1000, "beta_schedule": "scaled_linear", "heads": 8}


# SD 1.4's UNet configuration where it differs from UNet2DConditionModel's defaults (its unet/config.json; the
# block types, two layers per block and 32 norm groups are the defaults; "attention_head_dim" 8 is, in diffusers'
# old naming, 8 heads of 40, 80, 160 and 160 channels)
SD14_UNET = {"sample_size": 64, "cross_attention_dim": 768, "attention_head_dim": 8,
             "block_out_channels": (320, 640, 1280, 1280), "layers_per_block": 2}


def sd14_unet(device: str = "meta"):
    """SD 1.4's UNet architecture, with no weights on the ``meta`` device (built in a fraction of a second, its
    shapes and parameter count exact: to read its layout without downloading 3.4 GB)."""
    from diffusers import UNet2DConditionModel

    with torch.device(device):
        return UNet2DConditionModel(**SD14_UNET)


def stable_diffusion_available(name: str = SD_NAME) -> bool:
    """Are a Stable Diffusion pipeline's safetensors on this machine (a local folder, or the hub cache)?
    Never downloads."""
    if Path(name).is_dir():
        return (Path(name) / "model_index.json").is_file() and any(Path(name).glob("unet/*.safetensors"))
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    for filename in ("model_index.json", "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                     "text_encoder/model.safetensors"):
        found = try_to_load_from_cache(name, filename)
        if not isinstance(found, str) or not os.path.isfile(found):
            return False
    return True


def load_stable_diffusion(name: str = SD_NAME, allow_download: bool = False, device: str | None = None,
                          dtype: torch.dtype | None = None):
    """``StableDiffusionPipeline`` for ``CompVis/stable-diffusion-v1-4`` (or any local folder written by
    ``save_pretrained``), safetensors only, from the local cache unless ``allow_download``. The safety
    checker is left out (its weights are not needed to draw, and the book draws shapes)."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    local_only = not allow_download
    dtype = dtype or (torch.float16 if device and str(device).startswith("cuda") else torch.float32)
    bars = diffusers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()
    try:
        pipe = StableDiffusionPipeline.from_pretrained(name, use_safetensors=True, local_files_only=local_only,
                                                       safety_checker=None, feature_extractor=None,
                                                       requires_safety_checker=False, dtype=dtype)
    except (OSError, ValueError) as error:
        if local_only:
            raise WeightsUnavailable(
                f"{name}: not found on this machine and downloading was not allowed; call "
                f"load_stable_diffusion({name!r}, allow_download=True) on a machine with a network") from error
        raise
    finally:
        if bars:
            diffusers_logging.enable_progress_bar()
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device or "cpu")
