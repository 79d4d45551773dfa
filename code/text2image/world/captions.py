"""English captions of scenes, the structured prompts behind them, and word-to-object links.

A caption is generated *from* a structured :class:`Prompt` (what the image must
contain) with one of several phrasings, so the same prompt can read
"a red circle to the left of a blue square" or "a red circle is on the left of
a blue square". Four kinds of prompt:

* ``single``: one object ("a large red circle");
* ``count``: ``n`` identical objects ("three green triangles");
* ``list``: several different objects ("a red circle, a blue square and a green star");
* ``relation``: two objects and where one is ("a red circle above a blue square").

Every caption also says which scene objects each noun (and each colour or size
adjective) names, and where that word sits after tokenisation
(``token_index``: the word's position plus one for the BOS token), which is what
TokenCompose needs to supervise cross-attention with masks.

:func:`parse` reads a caption (or a user's prompt in the same language) back into
a :class:`Caption`; unknown words raise an error that names them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from text2image.world.scene import (COLOUR_NAMES, MAX_OBJECTS, PLURALS, RELATIONS, SHAPES, SIZES,
                                    WorldError)

KINDS = ("single", "count", "list", "relation")
NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
SINGULAR = {PLURALS[shape]: shape for shape in SHAPES}  # captions name the base shapes only, never a concept
BOS_OFFSET = 1  # token index = word index + 1: the tokenizer puts [BOS] first

# Phrasings. A relation phrase is said between the two noun phrases.
RELATION_PHRASES = {
    "left": (("to", "the", "left", "of"), ("left", "of"), ("on", "the", "left", "of")),
    "right": (("to", "the", "right", "of"), ("right", "of"), ("on", "the", "right", "of")),
    "above": (("above",), ("over",)),
    "below": (("below",), ("under",), ("beneath",)),
}
PREFIXES = {  # words that may open a caption, by kind
    "single": ((), ("a", "picture", "of"), ("there", "is")),
    "count": ((), ("a", "picture", "of"), ("there", "are"), ("exactly",)),
    "list": ((), ("a", "picture", "of"), ("there", "is")),
    "relation": ((), ("a", "picture", "of"), ("there", "is")),
}
FILLER = {"a", "picture", "of", "there", "is", "are", "exactly", "to", "the", "on", "and", ","}


def vocabulary() -> list[str]:
    """Every word a caption can contain, sorted."""
    words = set(FILLER) | set(NUMBERS.values()) | set(SIZES) | set(COLOUR_NAMES) | set(SHAPES)
    words |= set(SINGULAR)
    for phrases in RELATION_PHRASES.values():
        for phrase in phrases:
            words |= set(phrase)
    for prefixes in PREFIXES.values():
        for prefix in prefixes:
            words |= set(prefix)
    return sorted(words)


def vocabulary_text(words=None) -> str:
    """The vocabulary as an error message lists it: every token quoted, so that the comma and the
    one-letter words stay readable (``',', 'a', 'above', ...`` rather than ``, a above ...``)."""
    return ", ".join(map(repr, vocabulary() if words is None else words))


@dataclass(frozen=True)
class Spec:
    """One object a prompt asks for; ``colour`` or ``size`` is ``None`` when the prompt leaves it free."""
    shape: str
    colour: str | None = None
    size: str | None = None

    def matches(self, obj) -> bool:
        return (obj.shape == self.shape and (self.colour is None or obj.colour == self.colour)
                and (self.size is None or obj.size == self.size))


@dataclass(frozen=True)
class Prompt:
    """What an image must contain.

    ``relation = (i, "left", j)``: the object of spec ``i`` is left of the object of spec ``j``.
    ``count``: for ``kind == "count"``, how many objects of ``specs[0]``.
    """
    kind: str
    specs: tuple[Spec, ...]
    count: int = 1
    relation: tuple[int, str, int] | None = None

    @property
    def n_objects(self) -> int:
        return self.count if self.kind == "count" else len(self.specs)

    def objects_of(self, spec: int) -> tuple[int, ...]:
        """Indices of the scene objects that spec ``spec`` names (scenes list objects in spec order)."""
        return tuple(range(self.count)) if self.kind == "count" else (spec,)


@dataclass(frozen=True)
class Grounding:
    """A word that names scene objects: a noun (``role="noun"``) or an adjective (``"colour"``, ``"size"``)."""
    word: str
    role: str
    word_index: int
    objects: tuple[int, ...]

    @property
    def token_index(self) -> int:
        return self.word_index + BOS_OFFSET


@dataclass(frozen=True)
class Caption:
    text: str
    words: tuple[str, ...]
    prompt: Prompt
    groundings: tuple[Grounding, ...] = field(default=())

    @property
    def nouns(self) -> tuple[Grounding, ...]:
        return tuple(g for g in self.groundings if g.role == "noun")


# ----------------------------------------------------------------------------- writing

def _noun_phrase(spec: Spec, index: int, article: str | None, count: int = 1):
    """Words of one noun phrase, each tagged ``(role, spec index)`` or ``None``."""
    out: list[tuple[str, tuple[str, int] | None]] = []
    if count > 1:
        out.append((NUMBERS[count], None))
    elif article:
        out.append((article, None))
    if spec.size is not None:
        out.append((spec.size, ("size", index)))
    if spec.colour is not None:
        out.append((spec.colour, ("colour", index)))
    out.append((PLURALS[spec.shape] if count > 1 else spec.shape, ("noun", index)))
    return out


def _join(parts: list[list], oxford: bool) -> list:
    out: list = []
    for k, part in enumerate(parts):
        if k > 0:
            last = k == len(parts) - 1
            if not last:
                out.append((",", None))
            elif len(parts) > 2 and oxford:
                out += [(",", None), ("and", None)]
            else:
                out.append(("and", None))
        out += part
    return out


def text_of(words: Sequence[str]) -> str:
    return " ".join(words).replace(" ,", ",")


def _caption(tagged: list, prompt: Prompt) -> Caption:
    words = tuple(w for w, _ in tagged)
    groundings = tuple(Grounding(w, tag[0], k, prompt.objects_of(tag[1]))
                       for k, (w, tag) in enumerate(tagged) if tag is not None)
    return Caption(text_of(words), words, prompt, groundings)


def write(prompt: Prompt, rng) -> Caption:
    """A caption of ``prompt`` with a phrasing drawn from ``rng`` (a Generator or ``scene.Draws``)."""
    from text2image.world.scene import draws

    check_prompt(prompt)
    rng = draws(rng)
    prefix = rng.pick(PREFIXES[prompt.kind])
    if prompt.kind == "count" and prefix == ("there", "is"):
        prefix = ("there", "are")
    tagged: list = [(w, None) for w in prefix]
    if prompt.kind == "single":
        article = "one" if (not prefix and rng.random() < 0.3) else "a"
        tagged += _noun_phrase(prompt.specs[0], 0, article)
    elif prompt.kind == "count":
        tagged += _noun_phrase(prompt.specs[0], 0, None, prompt.count)
    elif prompt.kind == "list":
        parts = [_noun_phrase(s, k, "a") for k, s in enumerate(prompt.specs)]
        tagged += _join(parts, oxford=rng.random() < 0.3)
    else:
        i, rel, j = prompt.relation
        phrase = rng.pick(RELATION_PHRASES[rel])
        verb = [("is", None)] if (not prefix and rng.random() < 0.3) else []
        tagged += _noun_phrase(prompt.specs[i], i, "a") + verb + [(w, None) for w in phrase]
        tagged += _noun_phrase(prompt.specs[j], j, "a")
    return _caption(tagged, prompt)


def check_prompt(prompt: Prompt, shapes: Sequence[str] = SHAPES) -> Prompt:
    """``prompt`` if it is one the world can draw; ``shapes`` those it may name (the base shapes unless told:
    a concept's prompts are judged with ``ALL_SHAPES``)."""
    from text2image.world.scene import check_colour, check_relation, check_shape, check_size

    if prompt.kind not in KINDS:
        raise WorldError(f"unknown prompt kind {prompt.kind!r}; the kinds are: {', '.join(KINDS)}")
    for spec in prompt.specs:
        check_shape(spec.shape, shapes)
        if spec.colour is not None:
            check_colour(spec.colour)
        if spec.size is not None:
            check_size(spec.size)
    if prompt.n_objects > MAX_OBJECTS:
        raise WorldError(f"the prompt asks for {prompt.n_objects} objects; a scene holds at most {MAX_OBJECTS}")
    if prompt.kind in ("single", "count") and len(prompt.specs) != 1:
        raise WorldError(f"a {prompt.kind} prompt names exactly one kind of object, not {len(prompt.specs)}")
    if prompt.kind == "count" and not 2 <= prompt.count <= MAX_OBJECTS:
        raise WorldError(f"a count prompt asks for 2 to {MAX_OBJECTS} objects, not {prompt.count}")
    if prompt.kind == "list" and len(prompt.specs) < 2:
        raise WorldError("a list prompt names at least two objects")
    if prompt.kind == "relation":
        if prompt.relation is None:
            raise WorldError("a relation prompt needs a relation")
        if len(prompt.specs) != 2:
            raise WorldError(f"a relation links exactly two objects; the prompt names {len(prompt.specs)}")
        check_relation(prompt.relation[1])
    elif prompt.relation is not None:
        raise WorldError(f"only relation prompts carry a relation, not {prompt.kind!r} prompts")
    return prompt


# ----------------------------------------------------------------------------- reading

WORD = re.compile(r"\w+|[^\w\s]")


def split_words(text: str) -> list[str]:
    """Lower-case words and punctuation marks, as the tokenizer's pre-tokenizer splits them."""
    return WORD.findall(text.lower())


def unknown_words(words: Sequence[str]) -> list[str]:
    vocab = set(vocabulary())
    return sorted({w for w in words if w not in vocab})


def _read_noun_phrase(words: list[str], start: int, stop: int, allow_count: bool):
    """Parse ``words[start:stop]`` as ``[a|one|number] [size] [colour] shape(s)``."""
    k, count = start, 1
    if k < stop and words[k] in ("a", "one"):
        k += 1
    elif k < stop and words[k] in NUMBERS.values():
        count = next(n for n, w in NUMBERS.items() if w == words[k])
        k += 1
    size = colour = None
    tags = []
    if k < stop and words[k] in SIZES:
        size = words[k]
        tags.append(("size", k))
        k += 1
    if k < stop and words[k] in COLOUR_NAMES:
        colour = words[k]
        tags.append(("colour", k))
        k += 1
    if k != stop - 1 or words[k] not in SHAPES and words[k] not in SINGULAR:
        raise WorldError(f"cannot read {' '.join(words[start:stop])!r} as an object "
                         f"('[a|one|two...] [size] [colour] shape')")
    noun = words[k]
    plural = noun in SINGULAR
    if plural != (count > 1):
        raise WorldError(f"{' '.join(words[start:stop])!r}: number and noun disagree")
    if count > 1 and not allow_count:
        raise WorldError(f"{' '.join(words[start:stop])!r}: counts cannot be mixed with other objects")
    tags.append(("noun", k))
    return Spec(SINGULAR.get(noun, noun), colour, size), count, tags


def parse(text: str) -> Caption:
    """Read a caption (or a prompt written the same way) into a :class:`Caption`."""
    words = split_words(text)
    if not words:
        raise WorldError("empty prompt")
    unknown = unknown_words(words)
    if unknown:
        raise WorldError(f"unknown word(s) {', '.join(map(repr, unknown))}; "
                         f"the vocabulary is: {vocabulary_text()}")
    k = 0
    for prefix in (("a", "picture", "of"), ("there", "is"), ("there", "are"), ("exactly",)):
        if tuple(words[:len(prefix)]) == prefix:
            k = len(prefix)
            break
    # A relation: a relation phrase between two noun phrases (longest phrases first).
    candidates = sorted(((len(phrase), at, rel, phrase) for rel in RELATIONS
                         for phrase in RELATION_PHRASES[rel]
                         for at in range(k + 1, len(words) - len(phrase) + 1)
                         if tuple(words[at:at + len(phrase)]) == phrase), key=lambda c: (-c[0], c[1]))
    error = None
    for n, at, rel, phrase in candidates:
        end_a = at - 1 if words[at - 1] == "is" else at
        try:
            a, _, ta = _read_noun_phrase(words, k, end_a, False)
            b, _, tb = _read_noun_phrase(words, at + n, len(words), False)
        except WorldError as problem:
            error = error or problem
            continue
        prompt = check_prompt(Prompt("relation", (a, b), 1, (0, rel, 1)))
        return _read_caption(text, words, prompt, [ta, tb])
    if error is not None:
        raise error
    # Otherwise: noun phrases separated by commas and "and".
    parts, start = [], k
    for at in range(k, len(words) + 1):
        if at == len(words) or words[at] in (",", "and"):
            if at > start:
                parts.append((start, at))
            start = at + 1
    if not parts:
        raise WorldError(f"no object in {text!r}")
    read = [_read_noun_phrase(words, s, e, allow_count=len(parts) == 1) for s, e in parts]
    specs = tuple(spec for spec, _, _ in read)
    if len(read) == 1:
        spec, count, tags = read[0]
        prompt = Prompt("count", specs, count) if count > 1 else Prompt("single", specs)
    else:
        prompt = Prompt("list", specs)
    return _read_caption(text, words, check_prompt(prompt), [tags for _, _, tags in read])


def _read_caption(text: str, words: list[str], prompt: Prompt, tags: list) -> Caption:
    groundings = tuple(sorted((Grounding(words[k], role, k, prompt.objects_of(i))
                               for i, spec_tags in enumerate(tags) for role, k in spec_tags),
                              key=lambda g: g.word_index))
    return Caption(text, tuple(words), prompt, groundings)
