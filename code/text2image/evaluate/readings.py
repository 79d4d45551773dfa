"""The benchmark's images read by colour alone: is the asked colour there, whatever the shape?

A benchmark verdict wants an object of the asked shape *and* colour (GenEval's
rule), so a generator that paints a red blob the oracle cannot read as a
circle fails "a red circle" on colours as it fails it on shape. A reading by
colour alone tells the two failures apart, and is what the calibration
reference of the pixel-space chapter reported (ANCHORS.md: "single-object
colour right", "both colours present", "left/right right in those"). The
readings judge the benchmark's own calls (its prompts and seeds: for a
deterministic generator, the very images of the benchmark), each share with
its Wilson 95 % interval:

* ``colour``: single-object prompts that name a colour, whose image holds at
  least one object and only objects of that colour;
* ``both_colours``: two-object prompts that name two different colours,
  whose image holds an object of each;
* ``relation``: among relation prompts that name two different colours and
  whose image holds an object of each, those where an object of the first
  colour stands in the asked relation to an object of the second.

Shape alone needs no new reading: it is the benchmark's ``single_object``
and ``two_objects``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from text2image import checkpoints, profiles
from text2image.evaluate import benchmark as B
from text2image.evaluate import intervals, verdicts
from text2image.world import captions as C
from text2image.world.scene import Object, holds

VERSION = "1"  # bump when a reading changes: cached readings are then recomputed
GROUPS = ("single", "pair", "relation")  # the benchmark groups whose images are read
READINGS = ("colour", "both_colours", "relation")


def read(prompt: C.Prompt, detected: Sequence[Object]) -> dict[str, bool]:
    """The colour readings that apply to one prompt (none for a prompt that names no colour, or one colour
    twice), from the objects the oracle found."""
    colours = [s.colour for s in prompt.specs]
    if None in colours or len(set(colours)) != len(colours):
        return {}
    found = {o.colour for o in detected}
    if prompt.kind == "single":
        return {"colour": bool(detected) and found == {colours[0]}}
    if len(prompt.specs) != 2:
        return {}
    both = set(colours) <= found
    if prompt.kind == "list":
        return {"both_colours": both}
    if prompt.kind == "relation" and both:
        i, rel, j = prompt.relation
        first = [o for o in detected if o.colour == colours[i]]
        second = [o for o in detected if o.colour == colours[j]]
        return {"relation": any(holds(a, rel, b) for a in first for b in second)}
    return {}


def run(generate: Callable, profile: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Call ``generate`` on the benchmark's calls of :data:`GROUPS` and read every image (no cache)."""
    from tqdm.auto import tqdm

    profile = profiles.check(profile) if profile else profiles.current()
    tallies = {name: [0, 0] for name in READINGS}
    for _, prompts, seed in tqdm(B.calls(profile, GROUPS), desc="colour readings", unit="call",
                                 disable=not progress, leave=False):
        images = B.check_images(generate(list(prompts), seed), prompts)
        for verdict in verdicts.score_batch(prompts, images):
            for name, ok in read(verdict.prompt, verdict.detected).items():
                tallies[name][0] += ok
                tallies[name][1] += 1
    return {name: intervals.share(k, n).as_dict() for name, (k, n) in tallies.items()}


def readings(generate: Callable, profile: str | None = None, cache_folder: str | Path | None = None,
             settings: dict | None = None, progress: bool = True) -> dict[str, Any]:
    """:func:`run`, cached in the model's checkpoint folder as the benchmark is (keyed by its weights digest,
    the sampler ``settings``, this module's and the benchmark's versions, and the profile)."""
    profile = profiles.check(profile) if profile else profiles.current()
    if cache_folder is None:
        return run(generate, profile, progress)
    key = {"version": VERSION, "benchmark": B.VERSION, "profile": profile, "settings": settings or {}}
    return checkpoints.cached_result(cache_folder, checkpoints.result_name("readings", key), key,
                                     lambda: run(generate, profile, progress))
