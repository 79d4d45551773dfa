"""DALL·E sampling: prompt -> codes -> image, then CLIP picks the best of N, as in dalle-mini.

The path is dalle-mini's (prompt -> BART -> VQGAN decode -> CLIP rerank) with
the book's pieces: the caption in the world's tokenizer, one of the two models
of :mod:`text2image.models.dalle` writing 64 codes through ``generate()``, the
VQ-VAE ``vqvae-long`` decoding them, and a CLIP of the CLIP chapter scoring
the candidates.

Sampling uses the library's logits processors, in this order: the guidance,
then the restriction to image codes (``SuppressTokensLogitsProcessor`` on
every id that is not a code), then temperature, top-k and top-p (what
``generate`` adds for ``do_sample``). The key/value cache is on.

Super-conditioning (classifier-free guidance on logits) mixes, at each
step, the next-token log-probabilities given the caption and given the empty
caption ``[BOS] [EOS]`` (which the models learn from captions dropped during
training): ``uncond + s (cond - uncond)``. ``s = 1`` is the conditional model,
``s = 0`` the unconditional one. For DALL·E (GPT-2) it is transformers' own
``guidance_scale`` with the empty caption as ``negative_prompt_ids``
(``UnbatchedClassifierFreeGuidanceLogitsProcessor``). That processor feeds the
unconditional branch as a decoder-only model, so for DALL·E mini (BART)
:class:`EncoderDecoderGuidance` subclasses it and only changes how the
unconditional logits are computed: the decoder reads the generated codes, the
cross-attention the encoded empty caption, with a cache of its own.

Each call draws from ``torch.manual_seed(seed)`` in a forked generator, so the
same prompts and seed give the same images to the bit (on CPU), whatever ran
before.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Sequence

import numpy as np
import torch
from transformers import (BartForConditionalGeneration, GenerationConfig, LogitsProcessorList,
                          SuppressTokensLogitsProcessor, UnbatchedClassifierFreeGuidanceLogitsProcessor)

from text2image import text as T
from text2image.models import autoencoders as ae
from text2image.models import clip as M
from text2image.models import dalle as D
from text2image.pipelines.prompts import SamplingError, encode_prompts, null_captions
from text2image.world.tensors import to_tensor, to_uint8

MAX_ROWS = 1024  # sequences per call of generate(): a call with more is split (the same way every time)


# ----------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class Sampling:
    """How codes are drawn: ``temperature``, ``top_k`` (``None``: all codes), ``top_p`` (``None``: no cut),
    the super-conditioning scale ``guidance`` (1: none) and the CLIP-reranked ``candidates`` per prompt."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    guidance: float = 1.0
    candidates: int = 1

    def __post_init__(self):
        if not self.temperature > 0:
            raise SamplingError(f"temperature must be > 0 (1 samples the model as it is), not {self.temperature}")
        if not self.guidance >= 0:
            raise SamplingError(f"the guidance scale must be >= 0 (1: no guidance, 0: the unconditional model), "
                                f"not {self.guidance}")
        if not (isinstance(self.candidates, int) and self.candidates >= 1):
            raise SamplingError(f"the number of candidates per prompt must be an integer >= 1, not {self.candidates}")
        if self.top_k is not None and not (isinstance(self.top_k, int) and self.top_k >= 1):
            raise SamplingError(f"top_k must be an integer >= 1 (or None for every code), not {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise SamplingError(f"top_p must be in (0, 1] (or None), not {self.top_p}")

    def as_dict(self) -> dict:
        return asdict(self)

    def but(self, **changes) -> "Sampling":
        return replace(self, **changes)


# ----------------------------------------------------------------------------- prompts and codes

@torch.no_grad()
def image_codes(vq, images) -> torch.Tensor:
    """The 64 codes (B, 64) of images (uint8 (B, 32, 32, 3), or tensors in [-1, 1])."""
    x = to_tensor(images) if isinstance(images, np.ndarray) else images
    x = x.to(next(vq.parameters()).device)
    return ae.codes(vq, x).flatten(1).cpu()


@torch.no_grad()
def decode_codes(vq, codes: torch.Tensor) -> np.ndarray:
    """Images (B, 32, 32, 3) uint8 from 64 codes each (B, 64), row by row of the 8 x 8 grid."""
    codes = torch.as_tensor(codes).long()
    if codes.ndim != 2 or codes.shape[1] != D.IMAGE_TOKENS:
        raise ValueError(f"expected codes of shape (B, {D.IMAGE_TOKENS}), got {tuple(codes.shape)}")
    if len(codes) == 0:
        return np.zeros((0, 32, 32, 3), np.uint8)
    grid = codes.view(-1, D.GRID, D.GRID).to(next(vq.parameters()).device)
    return np.concatenate([to_uint8(ae.vq_decode_codes(vq, chunk)) for chunk in grid.split(256)])


# ----------------------------------------------------------------------------- guidance for BART

class EncoderDecoderGuidance(UnbatchedClassifierFreeGuidanceLogitsProcessor):
    """transformers' classifier-free guidance processor, for an encoder-decoder.

    The parent mixes ``uncond + s (cond - uncond)`` on log-probabilities and
    computes ``uncond`` by running a decoder-only model on the unconditional
    prompt followed by the generated tokens. Here the unconditional branch is
    the same decoder, reading the same generated codes, attending to the
    encoder's states of the empty caption (computed once), with its own cache.
    """

    def __init__(self, guidance_scale: float, model: BartForConditionalGeneration, null_ids: torch.Tensor,
                 null_mask: torch.Tensor, use_cache: bool = True):
        super().__init__(guidance_scale, model, null_ids, null_mask, use_cache)
        self.encoder_outputs = model.get_encoder()(input_ids=null_ids, attention_mask=null_mask)

    def get_unconditional_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        context = self.unconditional_context
        cached = context["use_cache"] and not context["first_pass"]
        context["first_pass"] = False
        out = self.model(encoder_outputs=self.encoder_outputs, attention_mask=context["attention_mask"],
                         decoder_input_ids=input_ids[:, -1:] if cached else input_ids,
                         past_key_values=context["past_key_values"] if cached else None,
                         use_cache=context["use_cache"])
        context["past_key_values"] = out.past_key_values
        return out.logits


# ----------------------------------------------------------------------------- sampling

def _generation_config(sampling: Sampling, pad: int, use_cache: bool) -> GenerationConfig:
    return GenerationConfig(do_sample=True, max_new_tokens=D.IMAGE_TOKENS, temperature=sampling.temperature,
                            top_k=sampling.top_k or 0, top_p=sampling.top_p or 1.0, use_cache=use_cache,
                            pad_token_id=pad, eos_token_id=None, bos_token_id=None,
                            forced_bos_token_id=None, forced_eos_token_id=None)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def generate_kwargs(model, text_ids: torch.Tensor, text_mask: torch.Tensor, sampling: Sampling,
                    use_cache: bool = True) -> dict:
    """The arguments of ``model.generate`` that draw 64 codes per caption (what :func:`sample_codes` calls).

    ``use_cache=False`` recomputes every position at every step (to measure what the cache saves). DALL·E's
    cache is transformers' static one: preallocated, it saves the concatenation of a growing cache at every
    step (a quarter of the time at the cpu size), and draws the same codes.
    """
    device = _device(model)
    layout = D.layout_of(model)
    text_ids, text_mask = text_ids.to(device), text_mask.to(device)
    null_ids, null_mask = (t.to(device) for t in null_captions(len(text_ids)))
    restrict = SuppressTokensLogitsProcessor(layout.not_images(), device=device)
    guided = sampling.guidance != 1
    if isinstance(model, BartForConditionalGeneration):
        config = _generation_config(sampling, layout.pad, use_cache)
        config.decoder_start_token_id = layout.start
        processors = [restrict]
        if guided:
            processors.insert(0, EncoderDecoderGuidance(sampling.guidance, model, layout.text(null_ids), null_mask,
                                                        use_cache))
        return dict(input_ids=layout.text(text_ids), attention_mask=text_mask, generation_config=config,
                    logits_processor=LogitsProcessorList(processors))
    config = _generation_config(sampling, T.tokenizer().pad_token_id, use_cache)
    if use_cache:
        config.cache_implementation = "static"
    prefix = layout.stream(text_ids)  # the pads are tokens of the stream: every position is attended
    kwargs = dict(input_ids=prefix, attention_mask=torch.ones_like(prefix), generation_config=config,
                  logits_processor=LogitsProcessorList([restrict]))
    if guided:  # the library's own guidance: generate() puts it first, before the restriction and the warpers
        config.guidance_scale = sampling.guidance
        kwargs.update(negative_prompt_ids=layout.stream(null_ids),
                      negative_prompt_attention_mask=torch.ones_like(null_ids))
    return kwargs


def codes_of_output(model, sequences: torch.Tensor) -> torch.Tensor:
    """The 64 codes (B, 64) in what ``generate`` returned."""
    if isinstance(model, BartForConditionalGeneration):
        return sequences[:, 1:1 + D.IMAGE_TOKENS].cpu()  # after the decoder's start token
    return D.layout_of(model).codes(sequences).cpu()


@torch.no_grad()
def sample_codes(model, text_ids: torch.Tensor, text_mask: torch.Tensor, sampling: Sampling,
                 use_cache: bool = True) -> torch.Tensor:
    """64 codes (B, 64) for each caption (ids and masks from :func:`encode_prompts`), one draw each."""
    return codes_of_output(model, model.generate(**generate_kwargs(model, text_ids, text_mask, sampling, use_cache)))


def seeded_codes(model, prompts: Sequence[str], seed: int, sampling: Sampling, use_cache: bool = True) -> torch.Tensor:
    """``sampling.candidates`` draws of 64 codes per prompt, (P, N, 64), from ``seed`` alone."""
    n = sampling.candidates
    if not len(prompts):
        return torch.zeros(0, n, D.IMAGE_TOKENS, dtype=torch.long)
    text_ids, text_mask = encode_prompts(prompts)
    text_ids, text_mask = text_ids.repeat_interleave(n, 0), text_mask.repeat_interleave(n, 0)
    device = _device(model)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        codes = [sample_codes(model, text_ids[k:k + MAX_ROWS], text_mask[k:k + MAX_ROWS], sampling, use_cache)
                 for k in range(0, len(text_ids), MAX_ROWS)]
    codes = torch.cat(codes) if codes else torch.zeros(0, D.IMAGE_TOKENS, dtype=torch.long)
    return codes.view(len(prompts), n, D.IMAGE_TOKENS)


# ----------------------------------------------------------------------------- reranking

@torch.no_grad()
def clip_scores(clip, prompts: Sequence[str], images: np.ndarray) -> np.ndarray:
    """Cosine similarity (P, N) between each prompt and each of its N candidate images (P, N, H, W, 3)."""
    p, n = images.shape[:2]
    zt = M.embed_texts(clip, list(prompts))
    zi = M.embed_images(clip, images.reshape(p * n, *images.shape[2:])).view(p, n, -1)
    return torch.einsum("pnd,pd->pn", zi, zt).numpy()


def rerank(clip, prompts: Sequence[str], images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidate CLIP scores highest for each prompt: ``(best (P, H, W, 3), scores (P, N), picks (P,))``."""
    scores = clip_scores(clip, prompts, images)
    picks = scores.argmax(axis=1)
    return images[np.arange(len(prompts)), picks], scores, picks


# ----------------------------------------------------------------------------- the pipeline

@dataclass
class Candidates:
    """What one call drew: codes (P, N, 64), images (P, N, 32, 32, 3), CLIP scores (P, N) and CLIP's picks
    (``None`` without a CLIP or with one candidate)."""
    prompts: list[str]
    codes: torch.Tensor
    images: np.ndarray
    scores: np.ndarray | None
    picks: np.ndarray

    @property
    def best(self) -> np.ndarray:
        return self.images[np.arange(len(self.prompts)), self.picks]


class DallePipeline:
    """A text-to-image generator for the benchmark: ``pipeline(prompts, seed) -> uint8 (P, 32, 32, 3)``.

    ``model``: DALL·E (GPT-2) or DALL·E mini (BART); ``vq``: the image
    tokenizer whose codes it writes; ``clip``: the judge that reranks
    ``sampling.candidates`` draws per prompt (needed when there is more than one).
    """

    def __init__(self, model, vq, clip=None, sampling: Sampling | None = None):
        self.model, self.vq, self.clip = model.eval(), vq.eval(), clip.eval() if clip is not None else None
        self.sampling = sampling or Sampling()
        if D.codebook_of(model) != ae.codebook_size(vq):
            raise ValueError(f"the model writes {D.codebook_of(model)} codes, the image tokenizer has "
                             f"{ae.codebook_size(vq)}")
        if self.sampling.candidates > 1 and clip is None:
            raise SamplingError(f"reranking {self.sampling.candidates} candidates needs a CLIP")

    def draw(self, prompts: Sequence[str], seed: int, sampling: Sampling | None = None) -> Candidates:
        sampling = sampling or self.sampling
        if sampling.candidates > 1 and self.clip is None:
            raise SamplingError(f"reranking {sampling.candidates} candidates needs a CLIP")
        prompts = list(prompts)
        codes = seeded_codes(self.model, prompts, seed, sampling)
        images = decode_codes(self.vq, codes.flatten(0, 1)).reshape(len(prompts), sampling.candidates, 32, 32, 3)
        if sampling.candidates > 1:
            _, scores, picks = rerank(self.clip, prompts, images)
        else:
            scores, picks = None, np.zeros(len(prompts), dtype=np.int64)
        return Candidates(prompts, codes, images, scores, picks)

    def __call__(self, prompts: Sequence[str], seed: int) -> np.ndarray:
        return self.draw(prompts, seed).best
