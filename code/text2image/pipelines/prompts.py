"""What every text-to-image pipeline of the book does with its prompts before drawing: check them, turn them
into token ids and masks of the world's tokenizer, and give the empty caption that classifier-free guidance
uses as its unconditional branch. One home for DALL·E's, the GANs' and the diffusion models' pipelines."""

from __future__ import annotations

from typing import Sequence

import torch

from text2image import text as T


class SamplingError(ValueError):
    """A sampler setting out of its range, or an empty prompt."""


def encode_prompts(prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and masks (B, 32) of the prompts; an empty prompt or an unknown word is an error."""
    if isinstance(prompts, str):
        raise SamplingError("pass a list of prompts, not one string")
    for k, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise SamplingError(f"prompt {k} is empty: say what to draw, e.g. 'a red circle'")
    T.tokenizer().check(list(prompts))  # the tokenizer's one-line error, naming the vocabulary
    enc = T.encode(list(prompts))
    return enc["input_ids"], enc["attention_mask"]


def null_captions(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The empty caption ``[BOS] [EOS]`` (what dropped captions become in training), ``n`` times."""
    enc = T.empty_caption(n)
    return enc["input_ids"], enc["attention_mask"]
