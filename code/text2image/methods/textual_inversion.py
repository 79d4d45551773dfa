"""Textual inversion (Gal et al., 2023): a new word for the concept star, learned in the text encoder's input space.

The first step of pivotal tuning: before any weight of the generator moves,
find the *pivot*, a point of the text encoder's input-embedding space from
which the frozen model draws the concept. One new token (``<star>``) is added
to the pipeline's tokenizer and text encoder (``tokenizer.add_tokens``,
``text_encoder.resize_token_embeddings``); its row starts as a copy of a class
word's and is the only number that learns. The loss is the pipeline's own
diffusion loss (:func:`text2image.models.latent.latent_loss`, with the
objective the denoiser was trained on) on the concept's few images
(:func:`text2image.world.concept.training_examples`) encoded by the VAE
(posterior mode times ``scaling_factor``, as the latent recipes encode theirs).

**As diffusers' script does** (``examples/textual_inversion/textual_inversion.py``
in huggingface/diffusers): AdamW over the whole input-embedding matrix (its
defaults: betas 0.9 and 0.999, weight decay 1e-2, eps 1e-8, a constant
learning rate), and after every optimizer step every row but the new one is
written back from a copy kept before training (its ``orig_embeds_params`` and
``index_no_updates``): the other words' rows get gradients and weight decay,
so without the restore they would drift. UNet, VAE and the rest of the text
encoder take no gradient at all. The saved file is the script's:
``learned_embeds.safetensors`` holding ``{token: (1, width)}``, which diffusers'
``TextualInversionLoaderMixin.load_textual_inversion`` reads
(:class:`~text2image.pipelines.latent.LatentDiffusionPipeline` inherits it).

**Captions** are the world's, "a small red <star>": each example's size and
colour are said, the placeholder is the noun. What the captions name, the
base model already draws; the token is left to hold only what they do not
say, the shape (diffusers' templates, "a photo of a {}", say nothing, so the
token may absorb anything the images share).

**The initial word**: ``diamond`` by default (:data:`INITIALIZER`), the base
shape whose centred mask overlaps the star's most at 32 px
(:func:`~text2image.world.concept.overlap_with_star`: IoU 0.73 over the two
sizes, square 0.67, triangle 0.64, circle 0.62, cross 0.60). The inversion
starts where the frozen model already paints nearly the star's pixels, so it
has the least to travel. The cross has points and hollows like the star's,
but its arms cover other pixels. The caller may choose any word of the
tokenizer's own vocabulary.

**The distance travelled** (the source's question: "la distance parcourue vaut
environ nb steps x learning rate"): every ``log_every`` steps the history
records the Euclidean norm ``||e_t - e_0||`` of the new row from its start (and
its largest coordinate change), next to ``steps x lr`` and to a bound that holds
for AdamW whatever the gradients (:func:`adam_bound`). Adam moves each
coordinate by about ``lr`` a step when the gradient keeps its sign, so
``steps x lr`` is the order of the *largest coordinate* change, and the
Euclidean distance can reach ``sqrt(width)`` times more.

Determinism: one CPU ``torch.Generator`` seeded with ``seed`` draws the batches,
noises and time steps; the same pipeline, images and seed give the same row,
bit for bit.

**Bad input**, one :class:`InversionError` each: a placeholder already a word of
the tokenizer (or one that would cut a word of it, or that the tokenizer's
lower-casing would never match), an initial word outside the tokenizer's own
vocabulary, no example, an embedding file made for another base model.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from diffusers.loaders.textual_inversion import TEXT_INVERSION_NAME_SAFE
from safetensors.torch import save_file
from tqdm.auto import tqdm

from text2image import paths
from text2image import text as T
from text2image.models import diffusion as D
from text2image.models import latent as L
from text2image.pipelines import latent as P
from text2image.world import captions as WC
from text2image.world import concept
from text2image.world.tensors import to_tensor

PLACEHOLDER = concept.PLACEHOLDER  # "<star>"
INITIALIZER = "diamond"            # the base shape closest to the star (see the module's docstring)
LR = 5e-4                          # diffusers' README and the source: 5e-4
BETAS = (0.9, 0.999)               # diffusers' script's AdamW defaults
WEIGHT_DECAY = 1e-2
EPS = 1e-8
WEIGHTS_NAME = TEXT_INVERSION_NAME_SAFE  # "learned_embeds.safetensors", what the loader looks for in a folder
BASE_KEY = "base_text_encoder"           # the metadata field with the base's digest (see base_digest)
EVAL_SEED = 20_240_618                  # fixed noises and time steps of the monitored loss
EVAL_DRAWS = 4                           # noised copies of each example in the monitored loss


class InversionError(ValueError):
    """A placeholder, initial word, set of examples or embedding file that textual inversion cannot use."""


# ----------------------------------------------------------------------------- the base a word belongs to

def _added_ids(tokenizer) -> set[int]:
    """Ids of the words added to the tokenizer (learned words), the special tokens not counted."""
    return {i for i, t in tokenizer.added_tokens_decoder.items() if not t.special}


def base_digest(tokenizer, text_encoder) -> str:
    """A short digest of what a learned row means something to: the text encoder's weights (its embedding
    matrix without the rows of added words) and the vocabulary that indexes them, values read as float32 (an
    fp16 copy of the same weights has the same digest). Loading a word into another base model is refused."""
    added = _added_ids(tokenizer)
    embedding = text_encoder.get_input_embeddings().weight
    rows = torch.tensor([i for i in range(embedding.shape[0]) if i not in added])
    name = next(n for n, p in text_encoder.named_parameters() if p is embedding)
    digest = hashlib.sha256(json.dumps(sorted((w, i) for w, i in tokenizer.get_vocab().items()
                                              if i not in added)).encode())
    for key, tensor in sorted(text_encoder.state_dict().items()):
        tensor = tensor.detach()[rows.to(tensor.device)] if key == name else tensor.detach()
        digest.update(f"{key}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


# ----------------------------------------------------------------------------- the new word

def _own_words(tokenizer) -> list[str]:
    added = _added_ids(tokenizer)
    return sorted(w for w, i in tokenizer.get_vocab().items() if w not in T.SPECIALS and i not in added)


def check_placeholder(tokenizer, placeholder: str) -> str:
    """``placeholder`` if it can be a new word of ``tokenizer``; else the reason it cannot."""
    if not isinstance(placeholder, str) or not placeholder.strip() or placeholder != placeholder.strip() \
            or any(c.isspace() for c in placeholder):
        raise InversionError(f"the placeholder must be one word without spaces, such as {PLACEHOLDER!r}, "
                             f"not {placeholder!r}")
    if tokenizer.backend_tokenizer.normalizer.normalize_str(placeholder) != placeholder:
        raise InversionError(f"the placeholder {placeholder!r} would never be matched: the tokenizer lower-cases "
                             f"prompts first; write it {placeholder.lower()!r}")
    vocab = tokenizer.get_vocab()
    if placeholder in vocab:
        raise InversionError(f"{placeholder!r} is already a word of the tokenizer: a learned word must be new "
                             f"(choose another placeholder, such as {PLACEHOLDER!r})")
    cut = sorted(w for w in vocab if placeholder in w)
    if cut:
        raise InversionError(f"the placeholder {placeholder!r} would be matched inside the word {cut[0]!r}, "
                             f"cutting it in two; choose one that no word contains, such as {PLACEHOLDER!r}")
    return placeholder


def check_initializer(tokenizer, initializer: str) -> int:
    """The id of ``initializer`` if it is one of the tokenizer's own words (not special, not learned)."""
    words = _own_words(tokenizer)
    if initializer not in words:
        raise InversionError(f"the initial word {initializer!r} is not a word of the tokenizer's vocabulary; "
                             f"start from one of its words: {WC.vocabulary_text(words)}")
    return tokenizer.convert_tokens_to_ids(initializer)


def add_token(pipe: P.LatentDiffusionPipeline, placeholder: str = PLACEHOLDER,
              initializer: str = INITIALIZER) -> int:
    """Add ``placeholder`` to the pipeline's tokenizer and text encoder, its row a copy of ``initializer``'s;
    return its id. The pipeline changes in place (as diffusers' loader changes it); the other rows do not."""
    tokenizer = pipe.own_tokenizer()
    check_placeholder(tokenizer, placeholder)
    source = check_initializer(tokenizer, initializer)
    encoder = pipe.text_encoder
    old = encoder.get_input_embeddings().weight
    frozen = not old.requires_grad
    if len(tokenizer) != old.shape[0]:
        raise InversionError(f"the tokenizer has {len(tokenizer)} words but the text encoder {old.shape[0]} rows: "
                             f"they are not a pair")
    tokenizer.add_tokens(placeholder)
    token_id = tokenizer.convert_tokens_to_ids(placeholder)
    with torch.random.fork_rng(devices=[]):  # the new row's random start is overwritten: leave no trace
        encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    weight = encoder.get_input_embeddings().weight
    with torch.no_grad():
        weight[token_id] = weight[source].clone()
    weight.requires_grad_(not frozen)
    return token_id


# ----------------------------------------------------------------------------- the data

@torch.no_grad()
def concept_latents(pipe: P.LatentDiffusionPipeline, examples: concept.ConceptImages) -> torch.Tensor:
    """The examples' images as the denoiser sees them: the VAE's posterior mode times its scaling factor."""
    vae = pipe.vae
    images = to_tensor(np.asarray(examples.images)).to(vae.device, vae.dtype)
    return vae.encode(images).latent_dist.mode() * pipe.scaling_factor


def text_ids(tokenizer, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and masks of ``texts`` by a pipeline's tokenizer (learned words included), padded as its text
    encoder reads them."""
    enc = tokenizer(list(texts), padding="max_length", max_length=tokenizer.model_max_length, truncation=False,
                    return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def concept_text(pipe: P.LatentDiffusionPipeline, examples: concept.ConceptImages,
                 placeholder: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and masks of the examples' captions, "a <size> <colour> <placeholder>"."""
    return text_ids(pipe.tokenizer, examples.captions(placeholder))


def _states(encoder, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # models.latent.encode_text without its no_grad: the gradient must reach the new row
    return encoder(input_ids=ids, attention_mask=mask).last_hidden_state


@torch.no_grad()
def concept_loss(pipe: P.LatentDiffusionPipeline, latents: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
                 draws: int = EVAL_DRAWS, seed: int = EVAL_SEED) -> float:
    """The diffusion loss on fixed noises and time steps (``draws`` of each example, from ``seed``): the
    training loss without its sampling noise, what the history follows."""
    device = pipe.denoiser.device
    x0 = latents.to(device).repeat(draws, 1, 1, 1)
    ids, mask = ids.to(device).repeat(draws, 1), mask.to(device).repeat(draws, 1)
    states = _states(pipe.text_encoder, ids, mask)
    return float(D.denoising_loss(lambda x_t, t: L.predict(pipe.denoiser, x_t, t, states, mask), pipe.objective,
                                  D.training_scheduler(pipe.objective), x0, torch.Generator().manual_seed(seed)))


# ----------------------------------------------------------------------------- how far AdamW can go

def adam_factor(step: int, betas: tuple[float, float] = BETAS) -> float:
    """The largest ``|m_hat| / sqrt(v_hat)`` Adam can take at step ``step`` (1-based), whatever the gradients.

    With ``m_t = (1 - b1) sum b1^(t-i) g_i`` and ``v_t = (1 - b2) sum b2^(t-i) g_i^2``, Cauchy-Schwarz on
    ``b1^k g = (b1^k / b2^(k/2)) (b2^(k/2) g)`` gives ``|m_t| <= (1 - b1) sqrt(S) sqrt(v_t / (1 - b2))``, with
    ``S = sum_{k<t} (b1^2 / b2)^k``; bias corrections included, the factor is
    ``(1 - b1) / (1 - b1^t) * sqrt((1 - b2^t) / (1 - b2)) * sqrt(S)``: 1 at the first step, 1.6 at the 50th,
    7.3 in the long run for (0.9, 0.999). (Kingma and Ba's "about lr" is the typical step, not a bound.)
    """
    b1, b2 = betas
    ratio = b1 * b1 / b2
    s = step if ratio == 1 else (1 - ratio ** step) / (1 - ratio)
    return (1 - b1) / (1 - b1 ** step) * math.sqrt((1 - b2 ** step) / (1 - b2)) * math.sqrt(s)


def adam_bound(steps: int, lr: float, width: int, start_norm: float, betas: tuple[float, float] = BETAS,
               weight_decay: float = WEIGHT_DECAY) -> list[float]:
    """Bounds on ``||e_t - e_0||`` for t = 0..steps under AdamW at a constant ``lr``.

    AdamW's step is ``e_t = (1 - lr wd) e_{t-1} - lr u_t`` with ``|u_t| <= adam_factor(t)`` for each of the
    ``width`` coordinates (eps only shrinks it), so
    ``d_t <= (1 - lr wd) d_{t-1} + lr wd ||e_0|| + lr sqrt(width) adam_factor(t)``.
    """
    decay = lr * weight_decay
    bounds = [0.0]
    for t in range(1, steps + 1):
        bounds.append((1 - decay) * bounds[-1] + decay * start_norm + lr * math.sqrt(width) * adam_factor(t, betas))
    return bounds


# ----------------------------------------------------------------------------- learning it

@dataclass
class Inversion:
    """A learned word: its ``token`` and id, the ``initializer`` it started from, its row at the start
    (``initial``) and at the end (``embedding``), both (width,) float32 on the CPU, the ``history`` (one dict a
    logged step) and the ``base`` digest of the model it was learned on."""
    token: str
    token_id: int
    initializer: str
    initial: torch.Tensor
    embedding: torch.Tensor
    history: list[dict]
    base: str
    settings: dict = field(default_factory=dict)

    @property
    def distance(self) -> float:
        return float(torch.linalg.vector_norm(self.embedding - self.initial))

    def save(self, folder: str | Path) -> Path:
        """``folder/learned_embeds.safetensors`` as diffusers' script writes it (``{token: (1, width)}``), with
        the base's digest, the initial word and the settings in its metadata."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / WEIGHTS_NAME
        metadata = {"format": "pt", BASE_KEY: self.base, "initializer": self.initializer,
                    "settings": json.dumps(self.settings, sort_keys=True)}
        save_file({self.token: self.embedding.detach().cpu().float().reshape(1, -1).contiguous()}, str(path),
                  metadata=metadata)
        return path


def _entry(step: int, losses: list[float], eval_loss: float, row: torch.Tensor, start: torch.Tensor, lr: float,
           bound: float, seconds: float) -> dict:
    row = row.detach().cpu().float()
    change = row - start
    return {"step": step, "seconds": seconds, "loss": float(np.mean(losses)) if losses else None,
            "eval_loss": eval_loss, "distance": float(torch.linalg.vector_norm(change)),
            "distance_max": float(change.abs().max()),
            "steps_lr": step * lr, "bound": bound, "row": row.tolist()}


def entry_at(inversion: "Inversion", step: int) -> dict:
    """The history's entry at a logged ``step`` (its distance, ``steps x lr``, row...)."""
    for entry in inversion.history:
        if entry["step"] == step:
            return entry
    raise InversionError(f"step {step} is not in the history; the logged steps are "
                         f"{', '.join(str(e['step']) for e in inversion.history)}")


def row_at(inversion: "Inversion", step: int) -> torch.Tensor:
    """The word's row (width,) float32 at a logged ``step`` of its history: a point of the path the inversion
    walked, to draw from as if it had stopped there."""
    return torch.tensor(entry_at(inversion, step)["row"], dtype=torch.float32)


def check_learned(pipe: P.LatentDiffusionPipeline, token: str) -> str:
    """``token`` if it is a word learned (or loaded) in ``pipe``."""
    if token not in pipe.tokenizer.added_tokens_encoder:
        raise InversionError(f"{token!r} is not a learned word of this pipeline: learn it (invert) or load it first")
    return token


@torch.no_grad()
def set_row(pipe: P.LatentDiffusionPipeline, token: str, row: torch.Tensor) -> None:
    """Write ``row`` as ``token``'s input embedding in ``pipe``'s text encoder (a learned word only)."""
    check_learned(pipe, token)
    weight = pipe.text_encoder.get_input_embeddings().weight
    weight[pipe.tokenizer.convert_tokens_to_ids(token)] = row.to(weight.device, weight.dtype)


def invert(pipe: P.LatentDiffusionPipeline, examples: concept.ConceptImages | None = None,
           placeholder: str = PLACEHOLDER, initializer: str = INITIALIZER, steps: int = 3000, lr: float = LR,
           batch_size: int | None = None, log_every: int = 50, seed: int = 0, betas: tuple[float, float] = BETAS,
           weight_decay: float = WEIGHT_DECAY, eps: float = EPS) -> Inversion:
    """Learn ``placeholder`` from ``examples`` (the concept's six training images by default) in ``pipe``, which
    keeps the word. ``batch_size`` examples a step (all of them by default, else a random draw without
    replacement); the history every ``log_every`` steps, at step 0 and at the last."""
    examples = concept.training_examples() if examples is None else examples
    if len(examples) == 0:
        raise InversionError("no example image: textual inversion learns a word from a few images of the "
                             f"concept ({concept.MIN_EXAMPLES} to {concept.MAX_EXAMPLES} in the chapter)")
    if steps < 1 or log_every < 1 or lr <= 0:
        raise InversionError(f"steps ({steps}) and log_every ({log_every}) must be at least 1 and lr ({lr}) "
                             f"positive")
    n = len(examples)
    batch = n if batch_size is None else int(batch_size)
    if not 1 <= batch <= n:
        raise InversionError(f"a batch holds 1 to {n} of the {n} examples, not {batch}")
    # the base's digest first: the tokenizer check of add_token also refuses a word that is already there
    base = base_digest(pipe.tokenizer, pipe.text_encoder)
    token_id = add_token(pipe, placeholder, initializer)
    encoder, denoiser = pipe.text_encoder, pipe.denoiser
    device = denoiser.device
    latents = concept_latents(pipe, examples).to(device)
    ids, mask = (t.to(device) for t in concept_text(pipe, examples, placeholder))
    scheduler = D.training_scheduler(pipe.objective)
    weight = encoder.get_input_embeddings().weight
    frozen = [(p, p.requires_grad) for m in (pipe.vae, encoder, denoiser) for p in m.parameters()]
    original = weight.detach().clone()
    others = torch.ones(weight.shape[0], dtype=torch.bool, device=weight.device)
    others[token_id] = False
    start = original[token_id].cpu().float()
    bounds = adam_bound(steps, lr, weight.shape[1], float(torch.linalg.vector_norm(start)), betas, weight_decay)
    started = time.perf_counter()
    history = [_entry(0, [], concept_loss(pipe, latents, ids, mask), weight[token_id], start, lr, 0.0, 0.0)]
    generator = torch.Generator().manual_seed(seed)
    try:
        for p, _ in frozen:
            p.requires_grad_(p is weight)
        optimizer = torch.optim.AdamW([weight], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        losses: list[float] = []
        # a bar for a reader who learns the word again (TQDM_DISABLE=1, the book's, hides it in chapters)
        for step in tqdm(range(1, steps + 1), desc=f"inversion of {placeholder}", leave=False, mininterval=1.0):
            chosen = torch.arange(n) if batch == n else torch.randperm(n, generator=generator)[:batch]
            chosen = chosen.to(device)
            states = _states(encoder, ids[chosen], mask[chosen])
            loss = L.latent_loss(denoiser, pipe.objective, scheduler, latents[chosen], states, mask[chosen],
                                 generator)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():  # every row but the new one back to what it was (diffusers' index_no_updates)
                weight[others] = original[others]
            losses.append(float(loss.detach()))
            if step % log_every == 0 or step == steps:
                history.append(_entry(step, losses, concept_loss(pipe, latents, ids, mask), weight[token_id],
                                      start, lr, bounds[step], time.perf_counter() - started))
                losses = []
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)
            p.grad = None
    settings = {"steps": steps, "lr": lr, "batch_size": batch, "log_every": log_every, "seed": seed,
                "betas": list(betas), "weight_decay": weight_decay, "eps": eps, "examples": n,
                "objective": pipe.objective}
    return Inversion(placeholder, token_id, initializer, start, weight[token_id].detach().cpu().float().clone(),
                     history, base, settings)


# ----------------------------------------------------------------------------- loading and sampling

def weights_file(path: str | Path) -> Path:
    """The weights file a path names (the file, or the folder holding it)."""
    return paths.safetensors_file(path, WEIGHTS_NAME, "learned embedding", "Inversion.save", InversionError)


def read(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``({token: (1, width)}, metadata)`` of an embedding file."""
    return paths.read_safetensors(weights_file(path))


def load(pipe: P.LatentDiffusionPipeline, path: str | Path, token: str | None = None,
         check_base: bool = True) -> str:
    """Add a saved word to ``pipe`` with diffusers' ``load_textual_inversion`` and return it; refused first if
    the file was made for another base model than ``pipe``'s (or records none, unless ``check_base=False``)."""
    file = weights_file(path)
    tensors, metadata = read(file)
    if check_base:
        paths.check_made_for(file, metadata, BASE_KEY, base_digest(pipe.tokenizer, pipe.text_encoder),
                             "text encoder", "learned", "learn the word again on this model", InversionError)
    word = token or (next(iter(tensors)) if len(tensors) == 1 else None)
    if word is not None and word in pipe.tokenizer.get_vocab():
        raise InversionError(f"{word!r} is already a word of this pipeline's tokenizer; load it into a fresh "
                             f"pipeline, or under another token")
    pipe.load_textual_inversion(str(file), token=token)
    return word


def sample(pipe: P.LatentDiffusionPipeline, prompts: Sequence[str], seed: int = 0,
           sampling: P.Sampling | None = None, token: str = PLACEHOLDER) -> np.ndarray:
    """uint8 images (P, 32, 32, 3) of ``prompts`` written with the learned ``token`` (e.g. the texts of
    :func:`~text2image.world.concept.relation_prompts`), as the benchmark's generator draws them."""
    check_learned(pipe, token)
    return P.Generator(pipe, sampling)(list(prompts), seed)
