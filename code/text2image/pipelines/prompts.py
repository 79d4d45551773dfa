"""What every text-to-image pipeline of the book does with its prompts before drawing: check them, turn them
into token ids and masks of the world's tokenizer, and give the empty caption that classifier-free guidance
uses as its unconditional branch. One home for DALL·E's, the GANs' and the diffusion models' pipelines."""

from __future__ import annotations

from typing import Sequence

import torch

from text2image import text as T


class SamplingError(ValueError):
    """A sampler setting out of its range, or an empty prompt."""


def encode_prompts(prompts: Sequence[str], tokenizer: T.ShapesTokenizer | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and masks (B, 32) of the prompts; an empty prompt, an unknown word or a prompt longer than
    the encoders' 32 tokens is an error (never a silent truncation). ``tokenizer``: a saved copy of the world's
    (a pipeline's component); by default the world's own."""
    if isinstance(prompts, str):
        raise SamplingError("pass a list of prompts, not one string")
    for k, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise SamplingError(f"prompt {k} is empty: say what to draw, e.g. 'a red circle'")
    if tokenizer is None:
        T.tokenizer().check(list(prompts))  # the tokenizer's one-line error, naming the vocabulary
        enc = T.encode(list(prompts))
    else:
        tokenizer.check(list(prompts))
        enc = tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=False, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def null_captions(n: int, tokenizer: T.ShapesTokenizer | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The empty caption ``[BOS] [EOS]`` (what dropped captions become in training), ``n`` times."""
    enc = T.empty_caption(n) if tokenizer is None else T.empty_caption(n, tokenizer.model_max_length, tokenizer)
    return enc["input_ids"], enc["attention_mask"]
