"""The text-to-image benchmark: one fixed, versioned set of prompts, judged the same way for every generator.

A *generator* is any callable ``generate(prompts: list[str], seed: int)`` that
returns uint8 images ``(len(prompts), 32, 32, 3)``. :func:`benchmark` calls it
over the set in fixed chunks with fixed seeds (so a result never depends on a
batch size), reads every image with the oracle (:mod:`.verdicts`), and reports,
each proportion with its Wilson 95 % interval (:mod:`.intervals`):

* the six GenEval-style categories and ``overall``, their mean, as GenEval;
* MG-2 to MG-5 on five-object prompts in the style of TokenCompose's MultiGen;
* the relation accuracy given that both objects are there (VISOR's);
* the share of correct images on each held-out split (compositions no
  training caption contains), the test of generalisation;
* the failures, counted by kind (an object missing, a colour leaked to the
  other object, a relation reversed, ...), and the generator's speed;
* a Fréchet distance in the image space of the project's CLIP, against the
  world's own renders of the same prompts, with its noise floor (the distance
  between two sets of world renders).

The prompts come from the splits no model trains on (``test`` for the
categories, ``heldout_pairs``, ``heldout_relations`` and ``multigen``); short
prompts such as "a red circle" still read like training captions, since the
world has few of them: only the held-out splits are new compositions.
"""

from __future__ import annotations

import functools
import importlib
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from text2image import checkpoints, profiles, recipes
from text2image import text as T
from text2image.evaluate import frechet as F
from text2image.evaluate import intervals, verdicts
from text2image.world import captions as C
from text2image.world import splits
from text2image.world.scene import holds
from text2image.world.tensors import RESOLUTION

VERSION = "1"  # bump when the prompts, their seeds or what is reported change: cached results are then recomputed
CHUNK = 50     # prompts per call of the generator


@dataclass(frozen=True)
class Group:
    """Prompts drawn from ``split``, of one prompt kind (any when ``None``) and number of objects."""
    name: str
    split: str
    kind: str | None = None
    objects: int | None = None


GROUPS = (
    Group("single", "test", "single"),             # single object, colours
    Group("counting", "test", "count"),            # counting
    Group("pair", "test", "list", 2),              # two objects, colour attribution
    Group("relation", "test", "relation", 2),      # position
    Group("heldout_pairs", "heldout_pairs"),
    Group("heldout_relations", "heldout_relations", "relation", 2),
    Group("multigen", "multigen", "list", 5),
)
CATEGORY_GROUPS = ("single", "counting", "pair", "relation")
HELDOUT_GROUPS = ("heldout_pairs", "heldout_relations")
# (prompts, images per prompt) per group: 150 x 4 = 600 images per category keep every 95 % interval
# within 4 points at the cpu size; MultiGen draws 10 images per prompt, as TokenCompose does.
SIZES = {
    "smoke": {"default": (3, 2), "multigen": (2, 2)},
    "cpu": {"default": (150, 4), "multigen": (60, 10)},
    "gpu": {"default": (400, 4), "multigen": (160, 10)},
}
# What the book quotes of GenEval (Ghosh et al., 2023, table 2): Stable Diffusion v1.5, the share of correct
# images per category, under the names of verdicts.CATEGORIES
GENEVAL_SD15 = {"single_object": 0.97, "two_objects": 0.38, "counting": 0.35, "colours": 0.76,
                "position": 0.04, "colour_attribution": 0.06, "overall": 0.43}
FAILURES = ("missing", "leaked", "colour", "reversed", "relation", "too_few", "too_many", "other")


class GeneratorError(ValueError):
    """A generator returned something else than the images it was asked for."""


def size(group: str, profile: str | None = None) -> tuple[int, int]:
    """``(prompts, images per prompt)`` of a group in a profile."""
    sizes = profiles.pick(SIZES, profile)
    return sizes.get(group, sizes["default"])


@functools.lru_cache(maxsize=64)
def _prompts(group: Group, n: int) -> tuple[str, ...]:
    found: list[str] = []
    index = 0
    while len(found) < n:
        example = splits.example(group.split, index)
        prompt = example.prompt
        if ((group.kind is None or prompt.kind == group.kind)
                and (group.objects is None or len(prompt.specs) == group.objects)
                and example.caption.text not in found):
            found.append(example.caption.text)
        index += 1
    return tuple(found)


def prompt_set(profile: str | None = None) -> dict[str, list[str]]:
    """The prompts of every group: the first distinct captions of their split that fit the group."""
    return {g.name: list(_prompts(g, size(g.name, profile)[0])) for g in GROUPS}


def seed_of(group: str, chunk: int, repeat: int) -> int:
    """The seed of one call of the generator: fixed by the set's version, the group, the chunk and the repeat."""
    return zlib.crc32(f"{VERSION}/{group}/{chunk}/{repeat}".encode())


def check_part(groups: Sequence[str] | None, repeats: int | None) -> None:
    """A part of the set (see :func:`calls`) names known groups and at least one image per prompt."""
    unknown = sorted(set(groups or ()) - {g.name for g in GROUPS})
    if unknown:
        raise KeyError(f"no benchmark group named {', '.join(map(repr, unknown))}; the groups are: "
                       f"{', '.join(g.name for g in GROUPS)}")
    if groups is not None and not groups:
        raise ValueError("a part of the benchmark needs at least one group")
    if repeats is not None and not (isinstance(repeats, int) and repeats >= 1):
        raise ValueError(f"images per prompt must be an integer >= 1, not {repeats!r}")


def calls(profile: str | None = None, groups: Sequence[str] | None = None,
          repeats: int | None = None) -> list[tuple[str, list[str], int]]:
    """Every call the benchmark makes: ``(group, prompts, seed)``, in order.

    A *part* of the set, for sweeps that compare many settings of one model:
    only ``groups``, and only the first ``repeats`` images of each prompt (the
    same calls, with the same seeds, as the full set makes: a part's images
    are the full set's, so its numbers are a subsample of the full numbers).
    """
    check_part(groups, repeats)
    out = []
    for group, prompts in prompt_set(profile).items():
        if groups is not None and group not in groups:
            continue
        for repeat in range(min(size(group, profile)[1], repeats or size(group, profile)[1])):
            for chunk, start in enumerate(range(0, len(prompts), CHUNK)):
                out.append((group, prompts[start:start + CHUNK], seed_of(group, chunk, repeat)))
    return out


def check_images(images: Any, prompts: Sequence[str]) -> np.ndarray:
    """The generator's output as it must be, or one error saying what came back and what was expected."""
    expected = f"a uint8 array of shape ({len(prompts)}, {RESOLUTION}, {RESOLUTION}, 3)"
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    if not isinstance(images, np.ndarray):
        raise GeneratorError(f"the generator returned a {type(images).__name__}; expected {expected}")
    if images.dtype != np.uint8 or images.shape != (len(prompts), RESOLUTION, RESOLUTION, 3):
        raise GeneratorError(f"the generator returned a {images.dtype} array of shape {images.shape}; "
                             f"expected {expected}")
    return images


def correct(verdict: verdicts.Verdict) -> bool:
    """Every check of the prompt passes; a list of three or more objects, which GenEval's categories do not
    cover, needs every object it names, each with its colour."""
    return verdict.correct if verdict.checks else verdict.found == verdict.wanted


def failure(verdict: verdicts.Verdict) -> str | None:
    """What went wrong first in a failed image (one of :data:`FAILURES`), ``None`` if it is correct.

    An object is *missing* when no detected object has its shape; a colour has
    *leaked* when every shape is there but one wears the colour another noun
    asked for; a relation is *reversed* when the opposite relation holds.
    """
    if correct(verdict):
        return None
    prompt, detected = verdict.prompt, verdict.detected
    if prompt.kind == "count":
        spec = prompt.specs[0]
        n = sum(spec.shape == o.shape and spec.colour in (None, o.colour) for o in detected)
        return "too_few" if n < prompt.count else "too_many"
    by_shape = verdicts.match(prompt.specs, detected, colour=False)
    if len(by_shape) < len(prompt.specs):
        return "missing"
    if verdict.found < len(prompt.specs):
        asked = {s.colour for s in prompt.specs}
        for s, d in by_shape:
            if prompt.specs[s].colour not in (None, detected[d].colour):
                return "leaked" if detected[d].colour in asked else "colour"
    if prompt.relation is not None and verdict.relation is False:
        i, rel, j = prompt.relation
        where = dict(verdict.matches)
        a, b = detected[where[i]], detected[where[j]]
        return "reversed" if holds(b, rel, a) else "relation"
    return "other"


def summarise(judged: dict[str, list[verdicts.Verdict]]) -> dict[str, Any]:
    """The benchmark's numbers from the verdicts of each group (see the module's docstring).

    Only what was measured is reported: a part of the set (:func:`calls`) has
    no held-out share, MG-k or category its groups do not check.
    """
    categories = {}
    for category in verdicts.CATEGORIES:
        checks = [v.checks[category] for g in CATEGORY_GROUPS for v in judged.get(g, []) if category in v.checks]
        if checks:
            categories[category] = intervals.share(sum(checks), len(checks))
    relation = [v.relation for v in judged.get("relation", []) if v.relation is not None]
    multigen = judged.get("multigen", [])
    failed = [failure(v) for g in (*CATEGORY_GROUPS, *HELDOUT_GROUPS) for v in judged.get(g, [])]
    counts = {kind: failed.count(kind) for kind in FAILURES if failed.count(kind)}
    return {
        "categories": {k: s.as_dict() for k, s in categories.items()},
        "overall": intervals.mean_of(list(categories.values())),
        "mg": {str(k): intervals.share(sum(v.found >= k for v in multigen), len(multigen)).as_dict()
               for k in range(2, 6)} if multigen else {},
        "relation": intervals.share(sum(relation), len(relation)).as_dict() if relation else None,
        "heldout": {g: intervals.share(sum(map(correct, judged[g])), len(judged[g])).as_dict()
                    for g in HELDOUT_GROUPS if judged.get(g)},
        "failures": dict(sorted(counts.items(), key=lambda kv: -kv[1])),
        "images": sum(len(v) for v in judged.values()),
    }


def run(generate: Callable, profile: str | None = None, progress: bool = True,
        features: Callable[[np.ndarray], torch.Tensor] | None = None, groups: Sequence[str] | None = None,
        repeats: int | None = None) -> dict[str, Any]:
    """Call ``generate`` over the set (or a part: see :func:`calls`) and score it (no cache: :func:`benchmark`)."""
    from tqdm.auto import tqdm

    profile = profiles.check(profile) if profile else profiles.current()
    plan = calls(profile, groups, repeats)
    check_prompts([prompt for _, prompts, _ in plan for prompt in prompts])
    judged: dict[str, list[verdicts.Verdict]] = {}
    images_of: list[np.ndarray] = []
    prompts_of: list[str] = []
    generating = scoring = 0.0
    bar = tqdm(plan, desc="benchmark", unit="call", disable=not progress, leave=False)
    for group, prompts, seed in bar:
        started = time.perf_counter()
        images = generate(list(prompts), seed)
        generating += time.perf_counter() - started
        started = time.perf_counter()
        images = check_images(images, prompts)
        judged.setdefault(group, []).extend(verdicts.score_batch(prompts, images))
        scoring += time.perf_counter() - started
        images_of.append(images)
        prompts_of.extend(prompts)
    result = summarise(judged)
    result.update(version=VERSION, profile=profile, groups=sorted(judged), repeats=repeats,
                  images_per_second=result["images"] / max(generating, 1e-9),
                  scoring_per_second=result["images"] / max(scoring, 1e-9))
    if features is not None:
        result["frechet"] = F.against_world(features, np.concatenate(images_of), prompts_of)
    return result


def benchmark(generate: Callable, profile: str | None = None, cache_folder: str | Path | None = None,
              settings: dict | None = None, progress: bool = True, frechet: bool = True,
              groups: Sequence[str] | None = None, repeats: int | None = None) -> dict[str, Any]:
    """The benchmark of a generator, cached next to the model it came from.

    ``cache_folder``: the model's checkpoint folder; the result is stored there,
    keyed by the folder's weights digest, the set's version, the profile, the
    sampler ``settings`` and the digest of the CLIP whose features the Fréchet
    distance uses, so a second call with the same model does not call the
    generator. Nothing is written when the generator fails. ``groups`` and
    ``repeats`` ask for a part of the set (:func:`calls`), cached apart.
    """
    profile = profiles.check(profile) if profile else profiles.current()
    check_part(groups, repeats)
    features = feature_digest = None
    if frechet:
        features, feature_digest = F.clip_features(profile)
    if cache_folder is None:
        return run(generate, profile, progress, features, groups, repeats)
    key = {"version": VERSION, "profile": profile, "settings": settings or {}, "features": feature_digest}
    if groups is not None or repeats is not None:  # the full set's key is unchanged
        key["part"] = {"groups": sorted(groups) if groups is not None else None, "repeats": repeats}
    return checkpoints.cached_result(cache_folder, checkpoints.result_name("benchmark", key), key,
                                     lambda: run(generate, profile, progress, features, groups, repeats))


# ----------------------------------------------------------------------------- named generators

class Generator:
    """A generator ready for :func:`benchmark`: its callable, built on first use (so a cached result
    loads no model), the folder its results are cached in, and its settings (part of the cache key)."""

    def __init__(self, name: str, make: Callable[[], Callable[[list[str], int], np.ndarray]],
                 cache_folder: Path | None = None, settings: dict | None = None):
        self.name, self.make, self.cache_folder, self.settings = name, make, cache_folder, settings or {}

    @functools.cached_property
    def generate(self) -> Callable[[list[str], int], np.ndarray]:
        return self.make()

    @classmethod
    def of_checkpoint(cls, name: str, profile: str, make: Callable[[], Callable[[list[str], int], np.ndarray]],
                      settings: dict) -> "Generator":
        """The generator of a recipe's checkpoint, trained first if it is missing (the cache key's digest is
        that of the weights used), its results cached in the checkpoint folder."""
        folder = recipes.checkpoint_folder(name, profile)
        if not (folder / checkpoints.MANIFEST).is_file():
            recipes.load_or_train(name, profile)
        return cls(name, make, folder, settings)


GENERATORS: dict[str, Callable[[str], Generator]] = {}
# Modules whose import registers generators (each generative chapter adds its own).
GENERATOR_MODULES: tuple[str, ...] = ("text2image.evaluate.references",)


def register_generator(name: str, factory: Callable[[str], Generator]) -> None:
    """``factory(profile)`` builds the generator (loading its model) only when it is asked for."""
    GENERATORS[name] = factory


def generator(name: str, profile: str | None = None) -> Generator:
    for module in GENERATOR_MODULES + recipes.RECIPE_MODULES:
        importlib.import_module(module)
    if name not in GENERATORS:
        raise KeyError(f"no generator named {name!r}; known generators: {', '.join(sorted(GENERATORS))}")
    return GENERATORS[name](profiles.check(profile) if profile else profiles.current())


def benchmark_named(name: str, profile: str | None = None, progress: bool = True) -> dict[str, Any]:
    """:func:`benchmark` of a registered generator, with its own cache folder and settings."""
    gen = generator(name, profile)
    return benchmark(lambda prompts, seed: gen.generate(prompts, seed), profile, gen.cache_folder, gen.settings,
                     progress)


def check_prompts(prompts: Sequence[str]) -> None:
    """Every prompt of the set reads with the world's tokenizer (its own error otherwise)."""
    T.tokenizer().check(list(prompts))
