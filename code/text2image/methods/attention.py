"""An attention store: the cross-attention probabilities of a UNet's forward pass, kept on the graph.

TokenCompose (Wang et al., 2024) supervises *where* each word of the caption
looks, so it needs the maps ``softmax(Q K^T / sqrt(d))`` of every
cross-attention layer. diffusers' default processor (``AttnProcessor2_0``)
calls ``scaled_dot_product_attention`` and never materialises them; so, inside

    with AttentionStore(unet) as store:
        prediction = unet(latents, t, encoder_hidden_states=states).sample
        maps = store.maps(block="up", resolution=8)

every cross-attention layer (``attn2`` in SD's UNet; self-attention keeps its
processor) runs :class:`Recorder`, which computes the probabilities with
``attn.get_attention_scores`` and applies them to the values as diffusers'
plain ``AttnProcessor`` does: the prediction is the same, and the maps are not
detached, so a loss on them trains the UNet.

A map has shape [batch x heads, H x W, tokens] (row ``b * heads + h``) and is
filed under its block (``down``, ``mid``, ``up``, read from the layer's name)
and its grid ``(H, W)``, found from the query length and the latent given to
the UNet (each level halves the side, rounding up as diffusers' stride-2
convolutions do): SD 1.4 at 512 px gives 64 x 64 = 4096 positions in its first
block. Records are fresh for each forward pass of the UNet (a pass empties
them when it starts), and only a pass records: a recomputation during the
backward (gradient checkpointing) adds nothing. On exit the UNet gets back
its original processor objects, also when the body raised, and the records
are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

BLOCKS = ("down", "mid", "up")
PREFIXES = {"down_blocks": "down", "mid_block": "mid", "up_blocks": "up"}  # UNet2DConditionModel's children


class StoreError(ValueError):
    """A misuse of the attention store (unknown block, read outside its context, no cross-attention)."""


@dataclass(frozen=True)
class AttentionMap:
    """One layer's cross-attention probabilities, [batch x heads, height x width, tokens], on the graph."""
    layer: str
    block: str
    height: int
    width: int
    heads: int
    probs: torch.Tensor

    @property
    def resolution(self) -> tuple[int, int]:
        return self.height, self.width

    def per_head(self) -> torch.Tensor:
        """The probabilities as [batch, heads, height x width, tokens] (diffusers puts heads inside batch)."""
        rows, positions, tokens = self.probs.shape
        return self.probs.reshape(rows // self.heads, self.heads, positions, tokens)


def block_of(name: str) -> str:
    """``down``, ``mid`` or ``up``: the block of a processor name such as ``up_blocks.1.attentions.0...``."""
    first = name.split(".", 1)[0]
    if first not in PREFIXES:
        raise StoreError(f"cannot tell the block of layer {name!r}: a UNet's layers start with "
                         f"{', '.join(PREFIXES)}")
    return PREFIXES[first]


def check_blocks(blocks: str | Sequence[str]) -> tuple[str, ...]:
    blocks = (blocks,) if isinstance(blocks, str) else tuple(blocks)
    unknown = [b for b in blocks if b not in BLOCKS]
    if unknown or not blocks:
        raise StoreError(f"unknown block(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"the blocks are: {', '.join(BLOCKS)}")
    return blocks


def cross_attention_layers(unet: torch.nn.Module) -> list[str]:
    """Processor names (``...attn2.processor`` in SD's UNet) of the model's cross-attention layers, in module
    order (``mid_block`` comes after ``up_blocks`` there; records come in forward order)."""
    processors = getattr(unet, "attn_processors", None)
    modules = dict(unet.named_modules())
    names = [] if processors is None else [
        n for n in processors if getattr(modules[n.removesuffix(".processor")], "is_cross_attention", False)]
    if not names:
        raise StoreError(f"{type(unet).__name__} has no cross-attention layer to record")
    return names


def grid_of(positions: int, latent: tuple[int, int]) -> tuple[int, int]:
    """The (H, W) of a layer with ``positions`` queries in a UNet fed latents of side ``latent``."""
    height, width = latent
    while True:
        if height * width == positions:
            return height, width
        if height * width < positions or (height == 1 and width == 1):
            raise StoreError(f"a layer with {positions} positions matches no level of a "
                             f"{latent[0]}x{latent[1]} latent")
        height, width = -(-height // 2), -(-width // 2)


class Recorder:
    """The processor of one cross-attention layer: diffusers' ``AttnProcessor`` arithmetic, maps kept."""

    def __init__(self, store: "AttentionStore", name: str):
        self.store, self.name = store, name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        spatial = hidden_states.ndim == 4
        if spatial:
            batch, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channels, height * width).transpose(1, 2)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch, tokens, _ = context.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, tokens, batch)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        if attn.norm_q is not None:  # per head, over its channels, as AttnProcessor2_0 does
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        probs = attn.get_attention_scores(query, key, attention_mask)  # [batch x heads, queries, tokens]
        self.store._record(self.name, attn.heads, probs)
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        out = attn.to_out[1](attn.to_out[0](out))  # projection, dropout
        if spatial:
            out = out.transpose(-1, -2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


class AttentionStore:
    """Records the cross-attention maps of ``unet`` inside a ``with`` block (see the module's docstring).

    ``blocks``: the blocks whose layers record (the others keep their own processor, so e.g. TokenCompose's
    ``("mid", "up")`` does not materialise the maps of the down blocks).
    """

    def __init__(self, unet: torch.nn.Module, blocks: str | Sequence[str] = BLOCKS):
        self.unet = unet
        self.blocks = check_blocks(blocks)
        self.layers = [n for n in cross_attention_layers(unet) if block_of(n) in self.blocks]
        self._original: dict | None = None
        self._records: list[AttentionMap] | None = None  # None: no forward pass yet in this context
        self._latent: tuple[int, int] | None = None       # set while a forward pass runs
        self._hooks: list = []

    # -- the context
    def __enter__(self) -> "AttentionStore":
        if self._original is not None:
            raise StoreError("this attention store is already installed")
        self._original = dict(self.unet.attn_processors)
        installed = dict(self._original)
        installed.update({name: Recorder(self, name) for name in self.layers})
        self.unet.set_attn_processor(installed)
        self._records, self._latent = None, None
        self._hooks = [self.unet.register_forward_pre_hook(self._start, with_kwargs=True),
                       self.unet.register_forward_hook(self._stop)]
        return self

    def __exit__(self, *exc) -> None:
        for hook in self._hooks:
            hook.remove()
        self.unet.set_attn_processor(dict(self._original))  # the very objects that were there
        self._original, self._records, self._latent, self._hooks = None, None, None, []

    def _start(self, module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        self._latent = tuple(sample.shape[-2:])
        self._records = []

    def _stop(self, module, args, output):
        self._latent = None

    def _record(self, name: str, heads: int, probs: torch.Tensor) -> None:
        if self._latent is None:  # outside a forward pass of the UNet (a recomputation in the backward)
            return
        height, width = grid_of(probs.shape[1], self._latent)
        self._records.append(AttentionMap(name, block_of(name), height, width, heads, probs))

    # -- reading
    def clear(self) -> None:
        """Drop the records now (and the graph they hold); the next forward pass records afresh anyway."""
        self._check_open()
        self._records = None

    def _check_open(self) -> None:
        if self._original is None:
            raise StoreError("the attention store is read outside its `with` block: its maps live only "
                             "inside it")

    def maps(self, block: str | Sequence[str] | None = None,
             resolution: int | tuple[int, int] | None = None) -> list[AttentionMap]:
        """The maps of the last forward pass, in forward order, of ``block`` (one or several; all recorded
        blocks if ``None``) at ``resolution`` (a side for square grids, or ``(H, W)``; all if ``None``)."""
        self._check_open()
        if self._records is None:
            raise StoreError("no forward pass of the UNet has run inside this `with` block (or the store was "
                             "cleared since)")
        blocks = self.blocks if block is None else check_blocks(block)
        missing = [b for b in blocks if b not in self.blocks]
        if missing:
            raise StoreError(f"block(s) {', '.join(missing)} are not recorded by this store "
                             f"(it records {', '.join(self.blocks)})")
        found = [m for m in self._records if m.block in blocks]
        if resolution is not None:
            wanted = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
            there = sorted({m.resolution for m in found}, reverse=True)
            found = [m for m in found if m.resolution == wanted]
            if not found:
                raise StoreError(f"no recorded map at {wanted[0]}x{wanted[1]} in block(s) {', '.join(blocks)}; "
                                 f"there are: {', '.join(f'{h}x{w}' for h, w in there) or 'none'}")
        return found

    def groups(self, block: str | Sequence[str] | None = None) -> dict[tuple[str, tuple[int, int]],
                                                                        list[AttentionMap]]:
        """The maps of :meth:`maps` filed by ``(block, (H, W))``, e.g. ``("up", (8, 8))``."""
        out: dict[tuple[str, tuple[int, int]], list[AttentionMap]] = {}
        for m in self.maps(block):
            out.setdefault((m.block, m.resolution), []).append(m)
        return out


# ----------------------------------------------------------------------------- reading the shapes, seeing the maps

@dataclass(frozen=True)
class LayerShape:
    """What one cross-attention layer works on: its input ``hidden`` [batch, H x W, channels] (the latent's
    positions, each a vector of the block's channels), the text states ``context`` [batch, tokens, text width],
    the ``inner`` width both are projected to (heads x head width: W_Q, W_K, W_V) and the probabilities
    ``maps`` [batch x heads, H x W, tokens]."""
    layer: str
    block: str
    grid: tuple[int, int]
    heads: int
    hidden: tuple[int, ...]
    context: tuple[int, ...]
    inner: int
    maps: tuple[int, ...]


def layer_shapes(unet: torch.nn.Module, tokens: int) -> list[LayerShape]:
    """Every cross-attention layer's shapes in one forward pass of one latent of the UNet's configured size and
    ``tokens`` text states, read off the tensors themselves (on the ``meta`` device this costs nothing: SD 1.4's
    860M-parameter UNet is built and run without a weight)."""
    config, device = unet.config, next(unet.parameters()).device
    sample = torch.zeros((1, config.in_channels, config.sample_size, config.sample_size), device=device)
    states = torch.zeros((1, tokens, config.cross_attention_dim), device=device)
    timestep = torch.tensor([500], device=device)
    inputs: dict[str, tuple[tuple[int, ...], tuple[int, ...], int]] = {}

    def keep(name):
        def hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            inputs[name] = (tuple(hidden.shape), tuple(kwargs["encoder_hidden_states"].shape),
                            module.to_k.out_features)
        return hook

    layers = cross_attention_layers(unet)
    handles = [unet.get_submodule(n.removesuffix(".processor")).register_forward_pre_hook(keep(n), with_kwargs=True)
               for n in layers]
    try:
        with torch.no_grad(), AttentionStore(unet) as store:
            unet(sample, timestep, encoder_hidden_states=states)
            maps = store.maps()
    finally:
        for handle in handles:
            handle.remove()
    return [LayerShape(m.layer.removesuffix(".processor"), m.block, m.resolution, m.heads, *inputs[m.layer],
                       tuple(m.probs.shape)) for m in maps]


@dataclass(frozen=True)
class SamplingMaps:
    """The maps of one prompt over a sampling run: ``image`` (32, 32, 3) uint8, the scheduler's ``timesteps``,
    and per step ``maps[step][(block, (H, W))]``: the conditional branch's map averaged over the heads and
    layers of that group, (H, W, tokens) float32."""
    image: object
    timesteps: list[float]
    maps: list[dict[tuple[str, tuple[int, int]], object]]


def sampling_maps(pipe, prompt: str, steps: int, guidance: float, seed: int,
                  blocks: str | Sequence[str] = BLOCKS) -> SamplingMaps:
    """Draw ``prompt`` with ``pipe`` (a latent-diffusion pipeline with a UNet) and keep, after every forward
    pass of its UNet, each group's map of the conditional branch (the last row of a guided batch)."""
    kept: list[dict] = []

    def after_forward(module, args, output):
        step = {}
        for key, group in store.groups().items():
            mean = torch.stack([m.per_head()[-1].float() for m in group]).mean(dim=(0, 1))  # [H x W, tokens]
            step[key] = mean.reshape(*key[1], -1).cpu().numpy()
        kept.append(step)

    with AttentionStore(pipe.unet, blocks) as store:
        handle = pipe.unet.register_forward_hook(after_forward)  # after the store's own hook: records complete
        try:
            image = pipe(prompt, num_inference_steps=steps, guidance_scale=guidance,
                         generator=torch.Generator().manual_seed(int(seed)), output_type="uint8").images[0]
        finally:
            handle.remove()
    return SamplingMaps(image, [float(t) for t in pipe.scheduler.timesteps], kept)
