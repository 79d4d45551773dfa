"""TokenCompose's two grounding losses (Wang et al., 2024) on the maps of an attention store.

Each caption noun names scene objects (:class:`text2image.world.captions.Grounding`),
and the world renders an exact mask for every object, so each word gets a
target: the union of its objects' masks, at the token ``token_index``
(the word's position plus one for ``[BOS]``). For a word with mask M and the
map A of its token (one head, one layer; the column of the word in
[heads, H x W, tokens]):

* ``L_token = (1 - sum(A M) / sum(A))^2``: the share of the word's attention
  that falls outside its object, squared; per head, then averaged over heads
  and words, summed over the layers of a group (one block at one resolution);
* ``L_pixel``: the binary cross-entropy between the map averaged over the
  heads and the layers of a group and M, averaged over pixels and words (as
  the authors' code; ``per_head=True`` takes it per head and layer instead).

Both are summed over the supervised groups, the mid and up blocks (SD 1.4:
mid 8, up 16, 32, 64), never down, as the paper does: its weights (MSE +
1e-3 L_token + 5e-5 L_pixel) are for that scale. A batch's loss is the mean
over its images that have a word. The maps are not detached: the losses train
the UNet.

Masks are brought to each grid by *area* interpolation (each cell gets the
share of its pixels inside the object) and then binarised with ``> 0``, as
the paper's resize-then-``> 0``: nearest sampling would miss a small object
altogether on a coarse grid (2 x 2 here), while a cell any part of which
the object covers stays the object's.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from text2image.methods.attention import AttentionMap, AttentionStore
from text2image.world.captions import Caption

SUPERVISED = ("mid", "up")
ROLES = ("noun",)  # the words the paper supervises; "colour" and "size" adjectives name objects too


class GroundingError(ValueError):
    """A caption word that cannot be linked to a mask (or a target that does not fit the maps)."""


class WordMask(NamedTuple):
    """One supervised word: its token's index in the text states and its object mask (H, W) bool."""
    token: int
    mask: torch.Tensor


class Losses(NamedTuple):
    token: torch.Tensor
    pixel: torch.Tensor


def word_masks(caption: Caption, masks, roles: Sequence[str] = ROLES) -> list[WordMask]:
    """The (token, mask) pairs of one caption, from its scene's object masks (K, H, W), as ``render`` gives."""
    masks = torch.as_tensor(np.asarray(masks), dtype=torch.bool)
    out = []
    for g in caption.groundings:
        if g.role not in roles:
            continue
        if not g.objects or max(g.objects) >= masks.shape[0]:
            raise GroundingError(f"word {g.word!r} of {caption.text!r} names object(s) {list(g.objects)}, "
                                 f"but there are masks for {masks.shape[0]} object(s)")
        union = masks[list(g.objects)].any(dim=0)
        if not union.any():
            raise GroundingError(f"word {g.word!r} of {caption.text!r} names object(s) {list(g.objects)} "
                                 f"whose mask is empty")
        out.append(WordMask(g.token_index, union))
    return out


def batch_word_masks(captions: Sequence[Caption], masks, roles: Sequence[str] = ROLES) -> list[list[WordMask]]:
    """Per image, the (token, mask) pairs of a batch: ``masks`` (N, K, H, W), one row per caption."""
    if len(captions) != len(masks):
        raise GroundingError(f"{len(captions)} captions but masks for {len(masks)} images")
    return [word_masks(c, m, roles) for c, m in zip(captions, masks)]


def from_token_masks(token_masks: torch.Tensor, noun_tokens: torch.Tensor) -> list[list[WordMask]]:
    """The same pairs from a ``ShapesDataset`` batch: ``token_masks`` (N, L, H, W), ``noun_tokens`` (N, L)."""
    return [[WordMask(int(t), token_masks[n, t]) for t in torch.nonzero(noun_tokens[n]).flatten()]
            for n in range(noun_tokens.shape[0])]


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A binary mask on a ``size`` grid, float: a cell is 1 where any of its pixels is (area, then > 0)."""
    area = F.interpolate(mask[None, None].float(), size=size, mode="area")[0, 0]
    return (area > 0).float()


class _Batch(NamedTuple):
    """A batch's targets on one grid, padded to its most words: ``index`` (B, W) token indices (0 where
    padded), ``masks`` (B, HW, W) float, ``valid`` (B, W) float, ``used`` (B,) bool (images with a word)."""
    index: torch.Tensor
    masks: torch.Tensor
    valid: torch.Tensor
    used: torch.Tensor


def _batch_targets(targets: Sequence[list[WordMask]], resolution: tuple[int, int], tokens: int, device) -> _Batch:
    """Every image's words at once: the losses then run as tensor operations, not a Python loop per image."""
    beyond = [w.token for words in targets for w in words if not 0 <= w.token < tokens]
    if beyond:
        raise GroundingError(f"token(s) {beyond} are past the {tokens} tokens of the attention maps")
    width = max(len(words) for words in targets)
    flat = [w for words in targets for w in words]
    grids = F.interpolate(torch.stack([w.mask for w in flat])[:, None].float(), size=resolution, mode="area")
    grids = (grids[:, 0] > 0).float().flatten(1)  # (words, HW): resize_mask on all masks in one call
    index = torch.zeros(len(targets), width, dtype=torch.long)
    masks = torch.zeros(len(targets), width, grids.shape[1])
    valid = torch.zeros(len(targets), width)
    k = 0
    for b, words in enumerate(targets):
        n = len(words)
        index[b, :n] = torch.tensor([w.token for w in words], dtype=torch.long)
        masks[b, :n] = grids[k:k + n]
        valid[b, :n] = 1
        k += n
    return _Batch(index.to(device), masks.transpose(1, 2).to(device), valid.to(device), (valid.sum(1) > 0).to(device))


def _columns(a: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The maps' columns of each image's words: ``a`` [B, ..., HW, T] -> [B, ..., HW, W]."""
    shape = (a.shape[0],) + (1,) * (a.dim() - 2) + (index.shape[1],)
    return torch.gather(a, -1, index.view(shape).expand(*a.shape[:-1], index.shape[1]))


def _grouped(maps: Sequence[AttentionMap]) -> dict:
    out: dict = {}
    for m in maps:
        out.setdefault((m.block, m.resolution), []).append(m)
    return out


def _check_batch(maps: Sequence[AttentionMap], targets: Sequence[list[WordMask]]) -> None:
    if not maps:
        raise GroundingError("no attention map to supervise")
    batch = maps[0].per_head().shape[0]
    if batch != len(targets):
        raise GroundingError(f"the maps hold {batch} images but there are targets for {len(targets)}")


def token_loss(maps: Sequence[AttentionMap], targets: Sequence[list[WordMask]]) -> torch.Tensor:
    """L_token of the maps (any blocks and resolutions) against per-image word targets (zero, off the graph,
    when no image has a word)."""
    _check_batch(maps, targets)
    total = maps[0].probs.new_zeros((), dtype=torch.float32)
    if not any(targets):
        return total
    batches: dict = {}
    for m in maps:  # summed over the layers of each group and over the groups: over all layers
        a = m.per_head().float()  # [B, heads, HW, T]
        if m.resolution not in batches:  # one set of targets per grid
            batches[m.resolution] = _batch_targets(targets, m.resolution, a.shape[-1], a.device)
        t = batches[m.resolution]
        column = _columns(a, t.index)                                         # [B, heads, HW, W]
        inside = (column * t.masks[:, None]).sum(dim=2) / column.sum(dim=2)  # [B, heads, W]
        squared = ((1 - inside) ** 2 * t.valid[:, None]).sum(dim=(1, 2))
        per_image = squared / (a.shape[1] * t.valid.sum(1)).clamp(min=1)     # mean over heads and words
        total = total + per_image[t.used].mean()  # over the images that have a word
    return total


def bce(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy in float32, logs floored at -100 as ``BCELoss`` does; written out because
    ``F.binary_cross_entropy`` refuses to run under CUDA autocast (the gpu profile's bf16)."""
    return _bce_terms(probs, target).mean()


def _bce_terms(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = probs.float().clamp(0, 1)  # softmax rounding may pass 1
    inside = torch.log(p).clamp(min=-100)
    outside = torch.log1p(-p).clamp(min=-100)
    return -(target * inside + (1 - target) * outside)


def pixel_loss(maps: Sequence[AttentionMap], targets: Sequence[list[WordMask]],
               per_head: bool = False) -> torch.Tensor:
    """L_pixel: BCE between each group's head- and layer-averaged map (or each head's, ``per_head``) and the
    word masks, averaged over pixels and words, summed over groups."""
    _check_batch(maps, targets)
    total = maps[0].probs.new_zeros((), dtype=torch.float32)
    if not any(targets):
        return total
    for (_, resolution), group in _grouped(maps).items():
        a = torch.stack([m.per_head() for m in group], dim=1).float()  # [B, layers, heads, HW, T]
        if not per_head:
            a = a.mean(dim=(1, 2), keepdim=True)
        t = _batch_targets(targets, resolution, a.shape[-1], a.device)
        terms = _bce_terms(_columns(a, t.index), t.masks[:, None, None])  # [B, layers, heads, HW, W]
        summed = (terms * t.valid[:, None, None, None]).sum(dim=(1, 2, 3, 4))
        per_image = summed / (terms[0, ..., 0].numel() * t.valid.sum(1)).clamp(min=1)
        total = total + per_image[t.used].mean()  # over the images that have a word
    return total


def losses(store: AttentionStore, targets: Sequence[list[WordMask]], blocks: Sequence[str] = SUPERVISED,
           per_head: bool = False) -> Losses:
    """Both losses on the store's last forward pass, over the supervised blocks (mid and up by default)."""
    maps = store.maps(block=blocks)
    return Losses(token_loss(maps, targets), pixel_loss(maps, targets, per_head))
