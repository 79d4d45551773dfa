"""How well a learned concept is drawn, and how well it still obeys: the pivotal-tuning chapter's two measures.

Both read the images with the oracle that knows the star
(:func:`text2image.world.oracle.parse_batch` with ``shapes=ALL_SHAPES``) and
judge them with the benchmark's verdicts (:func:`text2image.evaluate.verdicts.judge`).

* :func:`reconstruction`, on "a <size> <colour> <star>" prompts
  (:func:`text2image.world.concept.attribute_prompts`): the share of images where
  a star is read (the concept is drawn), where a star of the asked colour is
  read, and where the star found has the asked size, apart for the colour-size
  pairs the training images showed and those they did not; and the share of
  stars drawn where the training image of that colour had its star (within
  :data:`COPY_RADIUS`), next to the same share for scenes the world draws for
  these prompts: a model that copies its examples draws them where they were;
  and what the oracle reads where the star should be (``read_as``).
* :func:`editability`, on "a small blue <star> above a red circle" prompts
  (:func:`text2image.world.concept.relation_prompts`): the benchmark's
  *position* check (both objects with their colours, the relation holding), its
  parts, and the same check with the star's shape left free (:func:`composed`:
  what the word keeps of the composition, whatever shape it draws).
  :func:`base_editability` asks the same prompts with a base shape in the
  star's place, the reference a learned word is compared with.
* :func:`state_shells`, for the locality term's interpolation: whether the
  text encoder's states at an inner token lie on a shell, as its end states do.

A generator is the benchmark's: ``generate(prompts, seed) -> uint8 (N, 32, 32, 3)``,
called on chunks of :data:`BATCH` prompts, chunk ``c`` with seed ``seed * 1000 + c``.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from text2image.evaluate import benchmark as B
from text2image.evaluate import clip as clip_eval
from text2image.evaluate import intervals, verdicts
from text2image.methods import textual_inversion as TI
from text2image.models import latent as L
from text2image.world import captions as C
from text2image.world import concept, oracle
from text2image.world.render import render
from text2image.world.scene import ALL_SHAPES, SHAPES, SIZES, holds
from text2image.world.splits import HELDOUT_PAIRS

BATCH = 60
COPY_RADIUS = 0.08  # in canvas widths: a star this close to an example's is drawn where the example had it


def _images(generate: Callable, texts: Sequence[str], seed: int) -> np.ndarray:
    chunks = []
    starts = range(0, len(texts), BATCH)
    for c, start in enumerate(tqdm(starts, desc="concept measure", unit="batch", leave=False, mininterval=1.0)):
        part = list(texts[start:start + BATCH])
        chunks.append(B.check_images(generate(part, seed * 1000 + c), part))
    return np.concatenate(chunks)


def _share(flags: Sequence[bool]) -> dict:
    return intervals.share(int(sum(bool(f) for f in flags)), len(flags)).as_dict()


def drawing(scenes: Sequence, through: Callable[[np.ndarray], np.ndarray] | None = None) -> Callable:
    """A generator that draws the world's ``scenes`` in the order it is called, whatever the texts say (the
    prompts' own scenes: what a perfect model would draw), each batch sent ``through`` a function of the images
    when given (an autoencoder's round trip: what a perfect denoiser of its latents would draw)."""
    remaining = iter(scenes)

    def generate(prompts, seed):
        images = render([next(remaining) for _ in prompts], 32, max_objects=2)[0]
        return images if through is None else through(images)
    return generate


def _judged(prompts: Sequence[C.Prompt], images: np.ndarray) -> list[verdicts.Verdict]:
    return [verdicts.judge(p, found, shapes=ALL_SHAPES)
            for p, found in zip(prompts, oracle.parse_batch(images, shapes=ALL_SHAPES))]


def reconstruction(generate: Callable, n: int, seed: int = 0, word: str = concept.PLACEHOLDER,
                   examples: concept.ConceptImages | None = None, by_size: bool = False) -> dict:
    """Shares (:func:`~text2image.evaluate.intervals.share` dicts) over ``n`` prompts of the star alone:
    ``star``, ``colour``, ``size_seen`` / ``size_unseen`` (the asked size, among stars of the asked colour, for
    pairs the examples showed or not), ``copied`` and its reference ``copied_world``; with ``by_size``, also
    ``star_<size>``, the star's share among the prompts of each size."""
    examples = concept.training_examples() if examples is None else examples
    where = {s[0].colour: (s[0].x, s[0].y) for s in examples.scenes}
    seen = {(s[0].colour, s[0].size) for s in examples.scenes}
    prompts = concept.attribute_prompts(n, seed)
    judged = _judged([p.prompt for p in prompts], _images(generate, [p.text(word) for p in prompts], seed))

    def near(colour: str, obj) -> bool:
        return colour in where and math.dist((obj.x, obj.y), where[colour]) < COPY_RADIUS

    size = {True: [], False: []}
    copied = []
    read_as = {shape: 0 for shape in (*ALL_SHAPES, "nothing")}
    for p, v in zip(prompts, judged):
        spec = p.prompt.specs[0]
        coloured = [o.shape for o in v.detected if o.colour == spec.colour]
        read_as[spec.shape if spec.shape in coloured else coloured[0] if coloured else "nothing"] += 1
        if v.matches:
            obj = v.detected[v.matches[0][1]]
            size[(spec.colour, spec.size) in seen].append(obj.size == spec.size)
            copied.append(near(spec.colour, obj))
    sizes = {}
    if by_size:
        for size in SIZES:
            sizes[f"star_{size}"] = _share([v.checks["single_object"] for p, v in zip(prompts, judged)
                                            if p.prompt.specs[0].size == size])
    return {**sizes, "star": _share([v.checks["single_object"] for v in judged]),
            "colour": _share([v.checks["colours"] for v in judged]),
            "size_seen": _share(size[True]), "size_unseen": _share(size[False]),
            "copied": _share(copied),
            "copied_world": _share([near(p.prompt.specs[0].colour, p.scene[0]) for p in prompts]),
            "read_as": read_as}


def composed(verdict: verdicts.Verdict) -> bool:
    """The position check with the first object's shape left free: some object of the first colour stands in
    the relation to an object of the second's shape and colour (sizes are not checked, as by the position
    check). What a word keeps of the prompt's composition, whatever it draws for the shape."""
    first, (second, (_, relation, _)) = verdict.prompt.specs[0], (verdict.prompt.specs[1], verdict.prompt.relation)
    return any(a is not b and a.colour == first.colour and (b.shape, b.colour) == (second.shape, second.colour)
               and holds(a, relation, b)
               for a in verdict.detected for b in verdict.detected)


def _parts(judged: Sequence[verdicts.Verdict]) -> dict:
    """The position check and its parts: each object found with its colour, the relation given both; and
    :func:`composed`."""
    found = [{s for s, _ in v.matches} for v in judged]
    return {"position": _share([v.checks["position"] for v in judged]),
            "composed": _share([composed(v) for v in judged]),
            "first": _share([0 in f for f in found]), "second": _share([1 in f for f in found]),
            "relation": _share([v.relation for v in judged if v.relation is not None])}


def editability(generate: Callable, n: int, seed: int = 0, word: str = concept.PLACEHOLDER) -> dict:
    """:func:`_parts` over ``n`` prompts that put the star, at a size and colour, in relation to a base shape
    (``first`` is the star)."""
    prompts = concept.relation_prompts(n, seed)
    return _parts(_judged([p.prompt for p in prompts], _images(generate, [p.text(word) for p in prompts], seed)))


def stand_in(prompt: concept.ConceptPrompt, k: int) -> str:
    """The base shape that takes the star's place in the ``k``-th reference prompt: the base shapes in turn,
    skipping the other object's shape and a held-out colour-shape pair."""
    star, other = prompt.prompt.specs
    choices = [s for s in SHAPES if s != other.shape and (star.colour, s) not in HELDOUT_PAIRS]
    return choices[k % len(choices)]


def base_editability(generate: Callable, n: int, seed: int = 0) -> dict:
    """:func:`editability`'s prompts with a base shape (:func:`stand_in`) for the star: what the model does
    with words it was trained on, the reference an edited word is held to."""
    prompts = concept.relation_prompts(n, seed)
    words = [stand_in(p, k) for k, p in enumerate(prompts)]
    asked = [C.Prompt("relation", (C.Spec(w, p.prompt.specs[0].colour, p.prompt.specs[0].size), p.prompt.specs[1]),
                      1, p.prompt.relation) for w, p in zip(words, prompts)]
    return _parts(_judged(asked, _images(generate, [p.text(w) for w, p in zip(words, prompts)], seed)))


# ----------------------------------------------------------------------------- the shells of the text states

def shells(states: torch.Tensor) -> dict:
    """The CLIP chapter's :func:`~text2image.evaluate.clip.shell` of ``states`` (N, width), raw and centred on
    their mean."""
    return {"raw": clip_eval.shell(states), "centred": clip_eval.shell(states - states.mean(0))}


def layer_norm_radius(text_encoder) -> float:
    """The norm the text encoder's last layer norm gives every state, about ``sqrt(sum(gamma^2 + beta^2))``: its
    output is ``gamma * z + beta`` with ``z`` of mean 0 and variance 1 over the width, whatever the input.

    This is the answer to the source's puzzle, "a lower variance without centring": the states are pinned to
    a sphere about the origin by that layer norm, and gather on a cap of it (their mean sits well off the
    origin). Measured from the origin, their norms barely vary; measured from the cap's centre, which is not
    the sphere's, they vary with the angle. A fact of the architecture, not a bug, and the reason an
    interpolation on the sphere about the origin (SLERP, not one about the cloud's centre) keeps the states
    where the denoiser has seen them.
    """
    norm = next(m for n, m in text_encoder.named_modules() if n.endswith("final_layer_norm"))
    return float(((norm.weight.float() ** 2) + (norm.bias.float() ** 2)).sum().sqrt())


@torch.no_grad()
def state_shells(text_encoder, tokenizer, captions: Sequence[str], position: int) -> dict:
    """:func:`shells` of the text encoder's states at token ``position`` (the star's place in "a small red
    <star>", after the beginning token) and at the end token, over the ``captions`` long enough to have one, with
    :func:`layer_norm_radius`."""
    ids, mask = TI.text_ids(tokenizer, captions)
    keep = mask.sum(1) > position + 1  # a word at the position, not the end token
    ids, mask = ids[keep], mask[keep]
    device = text_encoder.device
    hidden = L.encode_text(text_encoder, ids.to(device), mask.to(device)).float().cpu()
    eos = mask.sum(1) - 1
    return {"captions": int(keep.sum()), "radius": layer_norm_radius(text_encoder),
            "inner": shells(hidden[:, position]), "eos": shells(hidden[torch.arange(len(hidden)), eos])}
