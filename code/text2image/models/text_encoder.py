"""The caption encoder of the pixel-space generators: a small ``transformers.CLIPTextModel`` trained from scratch.

The GANs and the diffusion models of the chapter on GANs, diffusion and flow
matching read a prompt with the same encoder, trained with each model (no
pretrained weights: they learn what the caption must tell them, from the
world's captions alone). It returns every token's state, which the diffusion
UNet reads through cross-attention, and one vector per caption, the state at
the first ``[EOS]``, which the GAN reads. The text tower is causal, so the
``[EOS]`` state is the only one that has seen the whole caption.

As in :mod:`text2image.models.clip`: ``CLIPTextModel`` pools at the highest
token id when ``eos_token_id == 2``; our ``[EOS]`` is id 2, so we pool at the
first ``[EOS]`` ourselves.
"""

from __future__ import annotations

import torch
from transformers import CLIPTextConfig, CLIPTextModel

from text2image import text as T


def config(width: int, layers: int, heads: int) -> CLIPTextConfig:
    tok = T.tokenizer()
    return CLIPTextConfig(vocab_size=len(tok), hidden_size=width, intermediate_size=4 * width,
                          num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=T.MAX_LENGTH,
                          pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                          eos_token_id=tok.eos_token_id, attention_dropout=0.0)


class CaptionEncoder(torch.nn.Module):
    """Caption ids and masks (B, L) -> token states (B, L, width) and the ``[EOS]`` state (B, width)."""

    def __init__(self, width: int = 64, layers: int = 2, heads: int = 2):
        super().__init__()
        self.width = width
        self.model = CLIPTextModel(config(width, layers, heads))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        eos = (input_ids == T.tokenizer().eos_token_id).int().argmax(dim=-1)
        return hidden, hidden[torch.arange(hidden.shape[0], device=hidden.device), eos]
