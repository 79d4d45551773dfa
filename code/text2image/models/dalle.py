"""DALL·E and DALL·E mini for the shapes world: two transformers that write an image as 64 codes.

Both read a caption in the world's word-level tokenizer (:mod:`text2image.text`)
and write the 8 x 8 grid of codes of the image tokenizer (the VQ-VAE
``vqvae-long``, 256 codes), row by row; the codes are then decoded to pixels.

* **DALL·E mini** is ``transformers.BartForConditionalGeneration``, as in
  dalle-mini: the encoder reads the caption, the decoder writes the codes, and
  the decoder starts from the token ``image vocabulary size`` (256 here,
  16,384 in dalle-mini). One table holds every token, codes first so that a
  code is its own id: ids ``0..K-1`` are the codes, ``K`` the decoder's start
  token, ``K+1..`` the caption's words (see :class:`BartLayout`).
* **DALL·E** is a decoder-only ``transformers.GPT2LMHeadModel`` over one
  stream ``[caption ; codes]``: the caption padded to ``TEXT_LENGTH`` tokens
  (the pads are tokens of the stream, as DALL·E's per-position pads), then the
  64 codes. Its vocabulary is the caption's words then the codes (see
  :class:`GptLayout`). It learns to predict the caption too: the loss weighs
  the text part by ``text_weight`` and the image part by ``1 - text_weight``
  (the DALL·E paper: 1/8 and 7/8), each averaged over its own tokens.

:data:`SIZES` gives both the same width and about the same number of
parameters at each profile (a test holds them within 10 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import BartConfig, BartForConditionalGeneration, GPT2Config, GPT2LMHeadModel

from text2image import text as T
from text2image.models import seeded

GRID = 8
IMAGE_TOKENS = GRID * GRID   # codes per image (dalle-mini: 16 x 16 = 256)
TEXT_LENGTH = T.MAX_LENGTH   # caption tokens in DALL·E's stream, [BOS] and [EOS] included, padded
PAPER_TEXT_WEIGHT = 1 / 8    # the DALL·E paper's weight of the text loss (7/8 for the image)

# Width, heads and feed-forward size are shared; BART has encoder + decoder layers, GPT-2 as many layers
# as make the same number of parameters (a BART decoder layer has cross-attention: 16 d^2 against 12 d^2).
SIZES = {
    "smoke": dict(d_model=32, heads=2, ffn=64, encoder_layers=1, decoder_layers=1, gpt_layers=3),
    "cpu": dict(d_model=192, heads=4, ffn=768, encoder_layers=2, decoder_layers=2, gpt_layers=5),
    "gpu": dict(d_model=512, heads=8, ffn=2048, encoder_layers=6, decoder_layers=6, gpt_layers=14),
}


def text_vocabulary_size() -> int:
    return len(T.tokenizer())


# ----------------------------------------------------------------------------- token layouts

@dataclass(frozen=True)
class BartLayout:
    """DALL·E mini's token ids: codes ``0..K-1`` (a code is its own id), start ``K``, then the words."""

    codebook: int

    @property
    def start(self) -> int:
        return self.codebook  # "decoder start token = image vocabulary size", as in dalle-mini

    @property
    def text_offset(self) -> int:
        return self.codebook + 1

    @property
    def vocab_size(self) -> int:
        return self.text_offset + text_vocabulary_size()

    @property
    def pad(self) -> int:
        return self.text_offset + T.tokenizer().pad_token_id

    def text(self, text_ids: torch.Tensor) -> torch.Tensor:
        """Encoder ids of captions in the world tokenizer's ids."""
        return text_ids + self.text_offset

    def not_images(self) -> list[int]:
        """Every id that is not a code: what generation must never write."""
        return list(range(self.codebook, self.vocab_size))


@dataclass(frozen=True)
class GptLayout:
    """DALL·E's token ids: the words ``0..V-1`` (the world tokenizer's own ids), then the codes."""

    codebook: int

    @property
    def image_offset(self) -> int:
        return text_vocabulary_size()

    @property
    def vocab_size(self) -> int:
        return self.image_offset + self.codebook

    @property
    def positions(self) -> int:
        return TEXT_LENGTH + IMAGE_TOKENS

    def stream(self, text_ids: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        """``[caption ; codes]``: captions padded to ``TEXT_LENGTH`` (B, 32), codes (B, 64) in ``0..K-1``."""
        if text_ids.shape[1] != TEXT_LENGTH:
            raise ValueError(f"DALL·E reads captions padded to {TEXT_LENGTH} tokens, not {text_ids.shape[1]}")
        if codes is None:
            return text_ids
        return torch.cat([text_ids, codes + self.image_offset], dim=1)

    def codes(self, stream: torch.Tensor) -> torch.Tensor:
        """The codes (B, 64) of the image part of streams."""
        return stream[:, TEXT_LENGTH:TEXT_LENGTH + IMAGE_TOKENS] - self.image_offset

    def not_images(self) -> list[int]:
        return list(range(self.image_offset))


# ----------------------------------------------------------------------------- networks

def build_dalle_mini(size: dict, codebook: int, seed: int = 0) -> BartForConditionalGeneration:
    """A small ``BartForConditionalGeneration`` in the spirit of dalle-mini's micro configuration."""
    layout = BartLayout(codebook)
    config = BartConfig(
        vocab_size=layout.vocab_size, d_model=size["d_model"],
        encoder_layers=size["encoder_layers"], decoder_layers=size["decoder_layers"],
        encoder_attention_heads=size["heads"], decoder_attention_heads=size["heads"],
        encoder_ffn_dim=size["ffn"], decoder_ffn_dim=size["ffn"],
        max_position_embeddings=max(TEXT_LENGTH, IMAGE_TOKENS + 1),
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        pad_token_id=layout.pad, bos_token_id=None, eos_token_id=None, forced_bos_token_id=None,
        forced_eos_token_id=None, decoder_start_token_id=layout.start, scale_embedding=False,
    )
    return seeded(lambda: BartForConditionalGeneration(config), seed)


def build_dalle(size: dict, codebook: int, seed: int = 0) -> GPT2LMHeadModel:
    """A small decoder-only ``GPT2LMHeadModel`` over ``[caption ; codes]``."""
    layout = GptLayout(codebook)
    tok = T.tokenizer()
    config = GPT2Config(
        vocab_size=layout.vocab_size, n_positions=layout.positions, n_embd=size["d_model"],
        n_layer=size["gpt_layers"], n_head=size["heads"], n_inner=size["ffn"],
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        # no pad_token_id: the pads of the caption are tokens of the stream, attended like any other
        bos_token_id=tok.bos_token_id, eos_token_id=None, pad_token_id=None,
    )
    return seeded(lambda: GPT2LMHeadModel(config), seed)


def parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


def codebook_of(model: torch.nn.Module) -> int:
    """The image vocabulary size a model was built for."""
    if isinstance(model, BartForConditionalGeneration):
        return model.config.decoder_start_token_id
    return model.config.vocab_size - text_vocabulary_size()


def layout_of(model: torch.nn.Module) -> BartLayout | GptLayout:
    if isinstance(model, BartForConditionalGeneration):
        return BartLayout(codebook_of(model))
    return GptLayout(codebook_of(model))


# ----------------------------------------------------------------------------- losses

def dalle_mini_loss(model: BartForConditionalGeneration, text_ids: torch.Tensor, text_mask: torch.Tensor,
                    codes: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy of the 64 codes given the caption (the decoder is fed the codes shifted right)."""
    layout = BartLayout(codebook_of(model))
    out = model(input_ids=layout.text(text_ids), attention_mask=text_mask, labels=codes)
    return out.loss, {"image": out.loss.detach()}


def dalle_loss(model: GPT2LMHeadModel, text_ids: torch.Tensor, codes: torch.Tensor,
               text_weight: float = PAPER_TEXT_WEIGHT) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``text_weight * text loss + (1 - text_weight) * image loss`` on streams ``[caption ; codes]``.

    Each part is the mean cross-entropy over its own predicted tokens: the text
    part predicts the caption's tokens after ``[BOS]`` (pads excluded, they
    carry nothing), the image part the 64 codes, the first one from the
    caption's last position. ``text_weight = 0`` is an image-only loss.
    """
    if not 0.0 <= text_weight <= 1.0:
        raise ValueError(f"text_weight is a share of the loss in [0, 1], not {text_weight}")
    layout = GptLayout(codebook_of(model))
    stream = layout.stream(text_ids, codes)
    logits = model(input_ids=stream).logits[:, :-1]
    targets = stream[:, 1:]
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                             reduction="none").view(targets.shape)
    is_image = torch.zeros_like(targets, dtype=torch.bool)
    is_image[:, TEXT_LENGTH - 1:] = True
    is_text = ~is_image & (targets != T.tokenizer().pad_token_id)
    image = losses[is_image].mean()
    text = losses[is_text].mean()
    loss = (1 - text_weight) * image + text_weight * text if text_weight else image
    return loss, {"image": image.detach(), "text": text.detach()}
