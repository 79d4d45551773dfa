"""LoRA (Hu et al., 2022) on the UNet's attention, around the pivot: the second step of pivotal tuning.

Textual inversion (:mod:`text2image.methods.textual_inversion`) found a word,
``<star>``, from which the frozen model draws the concept as well as it can;
the generator is then tuned *lightly* around that pivot. Each attention
projection ``W`` (``to_q``, ``to_k``, ``to_v``, ``to_out.0`` of every self- and
cross-attention of the UNet) gets a low-rank update, ``W + (alpha / r) B A``
with ``A`` (r, in) and ``B`` (out, r); only ``A`` and ``B`` learn, every weight
of the base model stays as it was. ``B`` starts at zero (peft's
``init_lora_weights="gaussian"``: ``A`` Gaussian, ``B`` zero), so the adapted
model starts *as* the base model and moves away from it only as far as the few
images pull it.

**As diffusers' scripts do** (``examples/dreambooth/train_dreambooth_lora.py``
and ``examples/text_to_image/train_text_to_image_lora.py`` in
huggingface/diffusers): ``unet.requires_grad_(False)``, then a
``peft.LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
target_modules=["to_k", "to_q", "to_v", "to_out.0"])`` added with
``unet.add_adapter`` (PEFT's injection through diffusers), AdamW over the
parameters left trainable (betas 0.9 and 0.999, weight decay 1e-2, eps 1e-8, a
constant rate; the LoRA weights only), gradients clipped to norm 1 (their
``max_grad_norm``), and the file their save hook writes:
``get_peft_model_state_dict`` converted by ``convert_state_dict_to_diffusers``
and written by ``StableDiffusionLoraLoaderMixin.save_lora_weights`` as
``pytorch_lora_weights.safetensors``, the ``LoraConfig`` in its metadata (so a
rank and an alpha that differ are read back as they were, not guessed from the
shapes). The rate is the text-to-image LoRA README's, 1e-4 (:data:`LR`).
Unlike the scripts, the text states are computed once (the text encoder, with
the learnt word, is frozen: their ``--pre_compute_text_embeddings``) and the
latents are the VAE's posterior mode, as the inversion's.

**The data and the loss** are the inversion's: the concept's few images
(:func:`text2image.world.concept.training_examples`) as latents, their captions
"a small red <star>" with the learnt word, the pipeline's own diffusion loss
(:func:`text2image.models.latent.latent_loss`, with the objective the UNet was
trained on). One CPU ``torch.Generator`` seeded with ``seed`` draws the
batches, noises and time steps: the same pipeline, images and seed give the
same adapter, bit for bit (peft draws ``A``'s start from torch's global generator: :func:`add` seeds it
with the same ``seed``, leaving it as it was).

**The history**, every ``log_every`` steps: the loss on fixed draws
(:func:`text2image.methods.textual_inversion.concept_loss`), and how far the
model moved, ``sum_l ||(alpha / r) B_l A_l||`` over the adapted layers (peft's
``get_delta_weight``; Frobenius norms), next to the same sum of the base
weights' norms ``||W_l||``, so "lightly" is a ratio one can read.

**Loading and removing**: :class:`~text2image.pipelines.latent.LatentDiffusionPipeline`
inherits diffusers' ``StableDiffusionLoraLoaderMixin`` (its components are
SD's), so :func:`load` is ``pipe.load_lora_weights(folder, adapter_name=...)``
once the file's base is checked: its metadata records :func:`base_digest`, a
digest of the UNet's own weights, and an adapter made for another UNet is
refused. The documented calls take it out: ``pipe.disable_lora()`` (kept,
switched off), ``pipe.delete_adapters(name)``, ``pipe.unload_lora_weights()``;
after any of them the pipeline draws the base model's images bit for bit
(peft's disabled or removed layer returns its base layer's output untouched).

**Bad input**, one :class:`LoRAError` each: a rank below 1 or an alpha that is
not positive, a target module the UNet does not have, no example, a word the
pipeline does not know, a pipeline with no UNet, an adapter name already used,
an adapter file for another base model (or recording none, unless asked).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from diffusers.loaders import StableDiffusionLoraLoaderMixin
from diffusers.loaders.lora_base import LORA_WEIGHT_NAME_SAFE
from diffusers.training_utils import cast_training_params
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig, get_peft_model_state_dict
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import save_file
from tqdm.auto import tqdm

from text2image import paths
from text2image.methods import textual_inversion as TI
from text2image.models import diffusion as D
from text2image.models import latent as L
from text2image.models import seeded
from text2image.pipelines import latent as P
from text2image.world import concept

TARGETS = ("to_q", "to_k", "to_v", "to_out.0")  # the attention projections, as diffusers' scripts target them
RANK = 4                                       # the scripts' default --rank
LR = 1e-4                                      # diffusers' text-to-image LoRA README
BETAS = TI.BETAS                               # the scripts' AdamW defaults, the inversion's too
WEIGHT_DECAY = TI.WEIGHT_DECAY
EPS = TI.EPS
MAX_GRAD_NORM = 1.0                            # the scripts' --max_grad_norm
ADAPTER = "pivot"                              # the adapter's name in the UNet
WEIGHTS_NAME = LORA_WEIGHT_NAME_SAFE           # "pytorch_lora_weights.safetensors", what the loader looks for
BASE_KEY = "base_unet"                         # the metadata field with the base's digest (see base_digest)


class LoRAError(ValueError):
    """A rank, target, set of examples, word or adapter file that the LoRA step cannot use."""


# ----------------------------------------------------------------------------- the base an adapter belongs to

def _base_key(key: str) -> str | None:
    """The base model's name of a state-dict key of a UNet holding adapters (``None``: an adapter's own)."""
    if ".lora_" in key:
        return None
    return key.replace(".base_layer.", ".")


def base_digest(unet) -> str:
    """A short digest of the UNet's own weights (read as float32, adapters left out, peft's ``base_layer``
    names undone): the same with or without an adapter in it, another for any other UNet."""
    digest = hashlib.sha256()
    state = {_base_key(k): v for k, v in unet.state_dict().items() if _base_key(k) is not None}
    for key, tensor in sorted(state.items()):
        digest.update(f"{key}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


# ----------------------------------------------------------------------------- the adapter

def _unet(pipe: P.LatentDiffusionPipeline):
    if getattr(pipe, "unet", None) is None:
        raise LoRAError(f"this pipeline's denoiser is a {type(pipe.denoiser).__name__}, not a UNet: the LoRA "
                        f"step adapts a UNet2DConditionModel's attention")
    return pipe.unet


def check_targets(unet, targets) -> list[str]:
    """``targets`` as a list if each names modules of ``unet`` (as peft matches them: the module's full name,
    or its last components); else the first that does not."""
    targets = [targets] if isinstance(targets, str) else list(targets)
    if not targets:
        raise LoRAError(f"no target module: LoRA needs layers to adapt, such as {', '.join(TARGETS)}")
    names = [n for n, _ in unet.named_modules()]
    for target in targets:
        if not isinstance(target, str) or not any(n == target or n.endswith(f".{target}") for n in names):
            raise LoRAError(f"the UNet has no module {target!r} to adapt; its attention projections are "
                            f"{', '.join(TARGETS)}")
    return targets


def config(rank: int = RANK, alpha: float | None = None, targets=TARGETS) -> LoraConfig:
    """The scripts' ``LoraConfig``: rank ``rank``, ``lora_alpha`` ``alpha`` (the rank by default: a scale of 1),
    ``B`` zero at the start, no dropout."""
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise LoRAError(f"the rank of a LoRA update is a whole number of at least 1, not {rank!r}")
    alpha = rank if alpha is None else alpha
    if not alpha > 0:
        raise LoRAError(f"alpha scales the update by alpha / rank and must be positive, not {alpha!r}")
    return LoraConfig(r=int(rank), lora_alpha=alpha, init_lora_weights="gaussian", target_modules=list(targets))


def add(pipe: P.LatentDiffusionPipeline, rank: int = RANK, alpha: float | None = None, targets=TARGETS,
        adapter_name: str = ADAPTER, seed: int = 0) -> list[torch.nn.Parameter]:
    """Add an adapter to the pipeline's UNet with diffusers' ``unet.add_adapter`` (the UNet frozen first, as
    the scripts do) and return its parameters, the only trainable ones. peft draws ``A`` from torch's global
    generator: under ``seed`` here, that generator left as it was."""
    unet = _unet(pipe)
    lora = config(rank, alpha, check_targets(unet, targets))
    if adapter_name in getattr(unet, "peft_config", {}):
        raise LoRAError(f"the UNet already holds an adapter named {adapter_name!r}: delete it first "
                        f"(pipe.delete_adapters({adapter_name!r})) or choose another name")
    unet.requires_grad_(False)
    seeded(lambda: unet.add_adapter(lora, adapter_name=adapter_name), seed)
    cast_training_params(unet, torch.float32)  # a half-precision base trains its adapter in float32
    return [p for p in unet.parameters() if p.requires_grad]


def layers(unet, adapter_name: str = ADAPTER) -> dict[str, BaseTunerLayer]:
    """The UNet's adapted layers (peft's LoRA layers holding ``adapter_name``), by module name."""
    return {n: m for n, m in unet.named_modules()
            if isinstance(m, BaseTunerLayer) and adapter_name in getattr(m, "lora_A", {})}


@torch.no_grad()
def update_norms(unet, adapter_name: str = ADAPTER) -> dict[str, tuple[float, float]]:
    """``{layer: (||(alpha / r) B A||, ||W||)}``, Frobenius norms of each adapted layer's update (peft's
    ``get_delta_weight``) and of its base weight."""
    return {n: (float(torch.linalg.matrix_norm(m.get_delta_weight(adapter_name).float())),
                float(torch.linalg.matrix_norm(m.get_base_layer().weight.float())))
            for n, m in layers(unet, adapter_name).items()}


@dataclass
class Adapter:
    """A trained LoRA: its ``name`` in the UNet, the word its captions used (``token``), ``rank``, ``alpha``,
    ``targets``, the peft ``config`` (a dict), its ``weights`` (peft's state dict, float32 on the CPU), the
    ``history`` (one dict a logged step) and the ``base`` digest of the UNet it was trained on."""
    name: str
    token: str
    rank: int
    alpha: float
    targets: list[str]
    config: dict
    weights: dict[str, torch.Tensor]
    history: list[dict]
    base: str
    settings: dict = field(default_factory=dict)

    @classmethod
    def from_unet(cls, unet, adapter_name: str = ADAPTER, token: str = TI.PLACEHOLDER, history: list | None = None,
                  base: str | None = None, settings: dict | None = None) -> "Adapter":
        """The adapter ``adapter_name`` a UNet holds (added, trained or loaded), its weights copied; ``base`` the
        digest of the UNet's own weights unless given."""
        if adapter_name not in getattr(unet, "peft_config", {}):
            raise LoRAError(f"the UNet holds no adapter named {adapter_name!r}")
        lora = unet.peft_config[adapter_name]
        weights = {k: v.detach().cpu().float().clone()
                   for k, v in get_peft_model_state_dict(unet, adapter_name=adapter_name).items()}
        return cls(adapter_name, token, int(lora.r), float(lora.lora_alpha), sorted(lora.target_modules),
                   lora.to_dict(), weights, list(history or []), base or base_digest(unet), dict(settings or {}))

    @property
    def size(self) -> int:
        """The adapter's numbers."""
        return sum(t.numel() for t in self.weights.values())

    def save(self, folder: str | Path) -> Path:
        """``folder/pytorch_lora_weights.safetensors`` as diffusers' scripts write it (``unet.``-prefixed
        diffusers keys, the ``LoraConfig`` in the metadata), with the base's digest, the word and the settings
        added to the metadata."""
        folder = Path(folder)
        StableDiffusionLoraLoaderMixin.save_lora_weights(
            folder, unet_lora_layers=convert_state_dict_to_diffusers(dict(self.weights)),
            unet_lora_adapter_metadata=dict(self.config), safe_serialization=True)
        # safetensors has no header edit in place: the same tensors written again with the fields added
        path = folder / WEIGHTS_NAME
        tensors, metadata = read(path)
        metadata.update({"format": "pt", BASE_KEY: self.base, "token": self.token,
                         "settings": json.dumps(self.settings, sort_keys=True)})
        save_file(tensors, str(path), metadata=metadata)
        return path


def _entry(step: int, losses: list[float], eval_loss: float, norms: dict[str, tuple[float, float]],
           locality: list[float], seconds: float) -> dict:
    update = sum(u for u, _ in norms.values())
    return {"step": step, "seconds": seconds, "loss": float(np.mean(losses)) if losses else None,
            "eval_loss": eval_loss,
            "update_norm": update, "update_max": max((u for u, _ in norms.values()), default=0.0),
            "relative": update / sum(w for _, w in norms.values()),
            "locality": float(np.mean(locality)) if locality else None}


# ----------------------------------------------------------------------------- PTI's locality term

def slerp_states(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Each vector of ``a`` (..., width) moved a fraction ``t`` of the way to the same vector of ``b`` along the
    great circle, its norm going linearly from ``|a|`` to ``|b|``: the text encoder's states keep the norms the
    denoiser knows (a straight line would shorten them between two directions). Equal vectors stay put."""
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / na.clamp_min(1e-12), b / nb.clamp_min(1e-12)
    omega = torch.arccos((ua * ub).sum(-1, keepdim=True).clamp(-1.0, 1.0))
    sin = torch.sin(omega)
    small = sin < 1e-6
    wa = torch.where(small, 1 - t, torch.sin((1 - t) * omega) / sin.clamp_min(1e-6))
    wb = torch.where(small, t, torch.sin(t * omega) / sin.clamp_min(1e-6))
    moved = ((1 - t) * na + t * nb) * (wa * ua + wb * ub)
    return torch.where((a == b).all(-1, keepdim=True), a, moved)  # bit for bit, not to rounding


def _swap(text: str, word: str, other: str) -> str:
    return " ".join(other if w == word else w for w in text.split())


def _locality(unet, objective: str, scheduler, latents, between, mask, generator) -> torch.Tensor:
    """PTI's locality term, at the states half-way between the word and its class word: the adapted UNet's
    prediction held to the base UNet's (its adapters switched off), on the same noised latents."""
    x_t, timestep, _ = D.draw_noised(objective, scheduler, latents, generator)
    with torch.no_grad():
        unet.disable_adapters()
        try:
            reference = L.predict(unet, x_t, timestep, between, mask)
        finally:
            unet.enable_adapters()
    return torch.nn.functional.mse_loss(L.predict(unet, x_t, timestep, between, mask), reference)


def tune(pipe: P.LatentDiffusionPipeline, examples: concept.ConceptImages | None = None,
         token: str = TI.PLACEHOLDER, steps: int = 500, lr: float = LR, rank: int = RANK,
         alpha: float | None = None, targets=TARGETS, batch_size: int | None = None, log_every: int = 25,
         seed: int = 0, adapter_name: str = ADAPTER, max_grad_norm: float = MAX_GRAD_NORM,
         betas: tuple[float, float] = BETAS, weight_decay: float = WEIGHT_DECAY, eps: float = EPS,
         locality: float = 0.0, anchor: str = TI.INITIALIZER, between: float = 0.5,
         contexts: Sequence[str] = ()) -> Adapter:
    """Train a LoRA of ``rank`` on ``pipe``'s UNet (which keeps it, active) from ``examples`` (the concept's six
    training images by default) captioned with ``token`` (the word the inversion learnt in ``pipe``).
    ``batch_size`` examples a step (all by default, else a random draw without replacement); the history every
    ``log_every`` steps, at step 0 and at the last.

    ``locality > 0`` adds PTI's locality term with that weight (Roich et al., 2022, their lambda_R): the same
    captions with the class word ``anchor`` instead of ``token``, the two texts' states interpolated a fraction
    ``between`` of the way by :func:`slerp_states`, and the adapted UNet's prediction there held to the base's
    (:func:`_locality`): the model may change what it draws for the word, not for the class around it.
    ``contexts`` (prompts written with ``token``, e.g. the star beside a base shape) take the captions' place in
    that term when given: the model is then held to the base around the word *in those contexts*, where the
    captions of a few single-object images say nothing."""
    unet = _unet(pipe)
    examples = concept.training_examples() if examples is None else examples
    if len(examples) == 0:
        raise LoRAError("no example image: the LoRA step tunes the UNet on a few images of the concept "
                        f"({concept.MIN_EXAMPLES} to {concept.MAX_EXAMPLES} in the chapter)")
    if steps < 1 or log_every < 1 or not lr > 0:
        raise LoRAError(f"steps ({steps}) and log_every ({log_every}) must be at least 1 and lr ({lr}) positive")
    n = len(examples)
    batch = n if batch_size is None else int(batch_size)
    if not 1 <= batch <= n:
        raise LoRAError(f"a batch holds 1 to {n} of the {n} examples, not {batch}")
    if locality < 0 or not 0 < between < 1:
        raise LoRAError(f"the locality weight ({locality}) cannot be negative and the interpolation ({between}) "
                        f"lies strictly between 0 and 1")
    if token not in pipe.tokenizer.get_vocab():
        raise LoRAError(f"{token!r} is not a word of this pipeline: learn it first (textual_inversion.invert) or "
                        f"load it (textual_inversion.load), the pivot the LoRA is tuned around")
    config(rank, alpha, check_targets(unet, targets))  # every check before the UNet changes
    if adapter_name in getattr(unet, "peft_config", {}):
        raise LoRAError(f"the UNet already holds an adapter named {adapter_name!r}: delete it first "
                        f"(pipe.delete_adapters({adapter_name!r})) or choose another name")
    base = base_digest(unet)
    device = unet.device
    latents = TI.concept_latents(pipe, examples).to(device)
    ids, mask = (t.to(device) for t in TI.concept_text(pipe, examples, token))
    states = L.encode_text(pipe.text_encoder, ids, mask)  # the text side is frozen: computed once
    halfway = None
    if locality > 0:
        TI.check_initializer(pipe.own_tokenizer(), anchor)
        texts = list(contexts) or examples.captions(token)
        if any(token not in t.split() for t in texts):
            raise LoRAError(f"every context prompt must hold the word {token!r}, the pivot it is held around")
        word_ids, word_mask = (t.to(device) for t in TI.text_ids(pipe.tokenizer, texts))
        swapped = [_swap(t, token, anchor) for t in texts]
        anchor_ids, anchor_mask = (t.to(device) for t in TI.text_ids(pipe.tokenizer, swapped))
        if not torch.equal(anchor_mask, word_mask):
            raise LoRAError(f"the class word {anchor!r} is not one token, as {token!r} is: choose a word of the "
                            f"vocabulary")
        halfway = slerp_states(L.encode_text(pipe.text_encoder, word_ids, word_mask),
                               L.encode_text(pipe.text_encoder, anchor_ids, anchor_mask), between)
        halfway_mask = word_mask
    scheduler = D.training_scheduler(pipe.objective)
    frozen = [(p, p.requires_grad) for m in (pipe.vae, pipe.text_encoder) for p in m.parameters()]
    flags = {n: p.requires_grad for n, p in unet.named_parameters()}
    generator = torch.Generator().manual_seed(seed)
    done = False
    try:
        for p, _ in frozen:
            p.requires_grad_(False)
        params = add(pipe, rank, alpha, targets, adapter_name, seed)
        started = time.perf_counter()
        history = [_entry(0, [], TI.concept_loss(pipe, latents, ids, mask), update_norms(unet, adapter_name), [],
                          0.0)]
        optimizer = torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        losses: list[float] = []
        local: list[float] = []
        for step in tqdm(range(1, steps + 1), desc=f"LoRA around {token}", leave=False, mininterval=1.0):
            chosen = torch.arange(n) if batch == n else torch.randperm(n, generator=generator)[:batch]
            chosen = chosen.to(device)
            loss = L.latent_loss(unet, pipe.objective, scheduler, latents[chosen], states[chosen], mask[chosen],
                                 generator)
            if halfway is not None:
                around = chosen if not contexts else torch.randint(0, len(halfway), (len(chosen),),
                                                                   generator=generator).to(device)
                term = _locality(unet, pipe.objective, scheduler, latents[chosen], halfway[around],
                                 halfway_mask[around], generator)
                local.append(float(term.detach()))
                (loss + locality * term).backward()
            else:
                loss.backward()
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            if step % log_every == 0 or step == steps:
                history.append(_entry(step, losses, TI.concept_loss(pipe, latents, ids, mask),
                                      update_norms(unet, adapter_name), local, time.perf_counter() - started))
                losses, local = [], []
        done = True
    finally:
        if not done and adapter_name in getattr(unet, "peft_config", {}):
            unet.delete_adapters(adapter_name)  # a failed run leaves the UNet as it found it
        for p, flag in frozen:
            p.requires_grad_(flag)
        for name, p in unet.named_parameters():  # the base's flags as they were, the adapter frozen for sampling
            key = _base_key(name)
            p.requires_grad_(key is not None and flags.get(key, False))
            p.grad = None
    settings = {"steps": steps, "lr": lr, "rank": int(rank), "alpha": float(rank if alpha is None else alpha),
                "targets": list(targets), "batch_size": batch, "log_every": log_every, "seed": seed,
                "max_grad_norm": max_grad_norm, "betas": list(betas), "weight_decay": weight_decay, "eps": eps,
                "examples": n, "objective": pipe.objective, "token": token}
    if locality > 0:
        settings.update(locality=locality, anchor=anchor, between=between)
    if contexts:
        settings["contexts"] = list(contexts)
    return Adapter.from_unet(unet, adapter_name, token, history, base, settings)


# ----------------------------------------------------------------------------- the file, loading

def weights_file(path: str | Path) -> Path:
    """The weights file a path names (the file, or the folder holding it)."""
    return paths.safetensors_file(path, WEIGHTS_NAME, "LoRA adapter", "Adapter.save", LoRAError)


def read(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of an adapter file, as stored (``unet.``-prefixed diffusers keys)."""
    return paths.read_safetensors(weights_file(path))


def load(pipe: P.LatentDiffusionPipeline, path: str | Path, adapter_name: str = ADAPTER,
         check_base: bool = True) -> str:
    """Add a saved adapter to ``pipe``'s UNet with diffusers' ``load_lora_weights`` and return its name; refused
    first if the file was made for another UNet than ``pipe``'s (or records none, unless ``check_base=False``)."""
    unet = _unet(pipe)
    file = weights_file(path)
    _, metadata = read(file)
    if check_base:
        paths.check_made_for(file, metadata, BASE_KEY, base_digest(unet), "UNet", "trained",
                             "tune the adapter again on this model", LoRAError)
    if adapter_name in getattr(unet, "peft_config", {}):
        raise LoRAError(f"the UNet already holds an adapter named {adapter_name!r}: delete it first "
                        f"(pipe.delete_adapters({adapter_name!r})) or load this one under another name")
    pipe.load_lora_weights(str(file.parent), weight_name=file.name, adapter_name=adapter_name)
    return adapter_name
