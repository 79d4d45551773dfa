"""What the CLIP chapter measures: zero-shot classification, prompt sensitivity,
caption ranking, retrieval, the bag-of-words probe and the geometry of the embeddings.

Every protocol takes a model and a pool of world examples whose ground truth is
exact, and the pure scoring parts (recall@k, probe accuracy, ranking order) work
on plain similarity arrays, so tests can check them on hand-built matrices.

The protocols run on any split: ``test`` for the chapter's tables, and the
held-out compositions (``heldout_pairs``, ``heldout_relations``), where the
probes meet colour-shape pairs and relations that no training caption states.
:func:`share_of` turns any proportion of an analysis back into ``k`` of ``n``
with its 95 % Wilson interval.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from text2image.evaluate import intervals
from text2image.models import clip as M
from text2image.models.clip import Template
from text2image.world import captions as C
from text2image.world import splits
from text2image.world.render import render
from text2image.world.scene import COLOUR_NAMES, PLURALS, SHAPES, SIZES

NUMBER_WORDS = ("two", "three", "four")
ATTRIBUTES = ("shape", "colour", "size", "count")
PROBES = ("relation", "attribute", "exchange")


# ----------------------------------------------------------------------------- pools of examples

@dataclass
class Pool:
    examples: list
    images: np.ndarray  # (N, 32, 32, 3) uint8

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def captions(self) -> list[str]:
        return [e.caption.text for e in self.examples]

    def subset(self, keep: Sequence[int]) -> "Pool":
        keep = list(keep)
        return Pool([self.examples[i] for i in keep], self.images[keep])


@functools.lru_cache(maxsize=8)
def pool(split: str = "test", n: int = 1000, start: int = 0) -> Pool:
    """Examples ``start .. start + n - 1`` of ``split`` and their 32 px images (cached in memory)."""
    examples = splits.examples(split, start, start + n)
    images, _ = render([e.scene for e in examples], M.RESOLUTION)
    return Pool(examples, images)


def of_kind(p: Pool, *kinds: str) -> Pool:
    return p.subset([i for i, e in enumerate(p.examples) if e.prompt.kind in kinds])


# ----------------------------------------------------------------------------- zero-shot

def labels_of(p: Pool, attribute: str) -> tuple[list[str], np.ndarray]:
    """Class names and the true class of each image (single-object images; count images for ``count``)."""
    if attribute == "count":
        names = list(NUMBER_WORDS)
        truth = [names.index(C.NUMBERS[e.prompt.count]) for e in p.examples]
    else:
        names = list({"shape": SHAPES, "colour": COLOUR_NAMES, "size": SIZES}[attribute])
        truth = [names.index(getattr(e.scene.objects[0], attribute)) for e in p.examples]
    return names, np.array(truth)


def zero_shot_pool(p: Pool, attribute: str) -> Pool:
    return of_kind(p, "count" if attribute == "count" else "single")


def _noun(label_kind: str, label: str, colour: str, shape: str, size: str | None = None) -> str:
    """A noun phrase naming ``label`` (of kind ``label_kind``) with the other attributes given."""
    if label_kind == "count":
        return f"{label} {colour} {PLURALS[shape]}"
    words = {"size": size, "colour": colour, "shape": shape, label_kind: label}
    return " ".join(w for w in (words["size"], words["colour"], words["shape"]) if w)


def templates(attribute: str) -> dict[str, list[Template]]:
    """Prompt families per attribute: the bare label, three sentence frames, and an ensemble.

    The frames carry the label alone ("a picture of a red"), which is not how any
    training caption reads; the ensemble averages full noun phrases over every
    value of the *other* attributes ("a red circle", "a red square", ...), the way
    CLIP's authors average 80 templates over ImageNet classes.
    """
    bare = [Template("{}", lambda x: x)]
    if attribute == "count":
        frames = {"there are {}": [Template("there are {}", lambda x: f"there are {x}")],
                  "exactly {}": [Template("exactly {}", lambda x: f"exactly {x}")]}
        full = [Template(f"{{}} {c} {PLURALS[s]}", lambda x, c=c, s=s: _noun("count", x, c, s))
                for c in COLOUR_NAMES for s in SHAPES]
    else:
        frames = {"a {}": [Template("a {}", lambda x: f"a {x}")],
                  "a picture of a {}": [Template("a picture of a {}", lambda x: f"a picture of a {x}")],
                  "there is a {}": [Template("there is a {}", lambda x: f"there is a {x}")]}
        if attribute == "shape":
            full = [Template(f"a {c} {{}}", lambda x, c=c: f"a {c} {x}") for c in COLOUR_NAMES]
        elif attribute == "colour":
            full = [Template(f"a {{}} {s}", lambda x, s=s: f"a {x} {s}") for s in SHAPES]
        else:
            full = [Template(f"a {{}} {c} {s}", lambda x, c=c, s=s: f"a {x} {c} {s}")
                    for c in COLOUR_NAMES for s in SHAPES]
    framed = [t for family in frames.values() for t in family]
    out = {"{}": bare, **frames, "ensemble": full, "ensemble + frames": full + framed}
    if attribute != "count":
        out["ensemble + frames"] = full + [Template(f"a picture of {t.name}",
                                                     lambda x, t=t: f"a picture of {t.text(x)}") for t in full]
    return out


def confusion(truth: np.ndarray, predicted: np.ndarray, n: int) -> np.ndarray:
    """Counts: row = true class, column = predicted class."""
    out = np.zeros((n, n), dtype=int)
    np.add.at(out, (truth, predicted), 1)
    return out


@torch.no_grad()
def zero_shot_report(model, p: Pool, attributes: Sequence[str] = ATTRIBUTES, family: str = "ensemble") -> dict:
    """Per attribute: labels, accuracy and confusion matrix with the prompt ``family``, and the accuracy of
    every family.

    An attribute whose images the pool lacks (``heldout_relations`` holds relation
    scenes only) is left out of the report.
    """
    report = {}
    for attribute in attributes:
        sub = zero_shot_pool(p, attribute)
        if not len(sub):
            continue
        names, truth = labels_of(sub, attribute)
        z = M.embed_images(model, sub.images)
        accuracy = {}
        for name, family_templates in templates(attribute).items():
            predicted = M.zero_shot(model, None, names, family_templates, image_emb=z)
            accuracy[name] = float((predicted == truth).mean())
            if name == family:
                chosen = predicted
        report[attribute] = {"labels": names, "n": len(sub), "accuracy": accuracy[family],
                             "by_template": accuracy, "confusion": confusion(truth, chosen, len(names))}
    return report


# ----------------------------------------------------------------------------- retrieval and ranking

def recall_at_k(sim: np.ndarray, k: int, groups: Sequence | None = None) -> float:
    """Share of queries (rows) whose true item (column ``i`` for row ``i``) is among the top ``k``.

    With ``groups``, any column whose group equals the row's true column's group
    counts as a hit (two images with the same caption text are both right).
    """
    sim = np.asarray(sim, dtype=float)
    order = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    if groups is None:
        return float((order == np.arange(len(sim))[:, None]).any(axis=1).mean())
    groups = np.asarray(groups)
    return float((groups[order] == groups[: len(sim), None]).any(axis=1).mean())


def retrieval(model, p: Pool, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Image-to-text and text-to-image recall@k on the pool (identical captions count as the same text)."""
    sim = (M.embed_images(model, p.images) @ M.embed_texts(model, p.captions).T).numpy()
    _, text_group = np.unique(p.captions, return_inverse=True)
    out = {"n": len(p)}
    for k in ks:
        out[f"i2t_r{k}"] = recall_at_k(sim, k, groups=text_group)
        out[f"t2i_r{k}"] = recall_at_k(sim.T, k)
    return out


def partial_caption(e, rng: np.random.Generator) -> str | None:
    """The true caption with one colour changed to a colour absent from the scene: half right."""
    colours = [g for g in e.caption.groundings if g.role == "colour"]
    if not colours:
        return None
    g = colours[int(rng.integers(len(colours)))]
    absent = [c for c in COLOUR_NAMES if c not in {o.colour for o in e.scene.objects}]
    words = list(e.caption.words)
    words[g.word_index] = absent[int(rng.integers(len(absent)))]
    return C.text_of(words)


def unrelated_caption(e, p: Pool, rng: np.random.Generator) -> str:
    """The caption of another image of the pool that shares no colour and no shape with this one
    (or, when no image qualifies, the one that shares the fewest)."""
    colours = {o.colour for o in e.scene.objects}
    shapes = {o.shape for o in e.scene.objects}
    best, best_shared = None, None
    for i in rng.permutation(len(p)):
        other = p.examples[i]
        if other is e:
            continue
        shared = (len({o.colour for o in other.scene.objects} & colours)
                  + len({o.shape for o in other.scene.objects} & shapes))
        if best_shared is None or shared < best_shared:
            best, best_shared = other.caption.text, shared
        if shared == 0:
            break
    if best is None:
        raise ValueError("the caption ranking needs a pool of at least two images")
    return best


def ranking_triples(p: Pool, seed: int = 0) -> tuple[list[int], list[tuple[str, str, str]]]:
    """For each image that has a colour word: (matching, partly matching, unrelated) captions."""
    rng = np.random.default_rng(seed)
    keep, triples = [], []
    for i, e in enumerate(p.examples):
        partial = partial_caption(e, rng)
        if partial is None:
            continue
        keep.append(i)
        triples.append((e.caption.text, partial, unrelated_caption(e, p, rng)))
    return keep, triples


def ranking_scores(scores: np.ndarray) -> dict[str, float]:
    """``scores`` (N, 3): similarity to (matching, partial, unrelated). How often the order is right."""
    s = np.asarray(scores, dtype=float)
    return {"order": float(((s[:, 0] > s[:, 1]) & (s[:, 1] > s[:, 2])).mean()),
            "match_over_partial": float((s[:, 0] > s[:, 1]).mean()),
            "partial_over_unrelated": float((s[:, 1] > s[:, 2]).mean()),
            "match_over_unrelated": float((s[:, 0] > s[:, 2]).mean())}


def caption_ranking(model, p: Pool, seed: int = 0) -> dict:
    keep, triples = ranking_triples(p, seed)
    z = M.embed_images(model, p.images[keep])
    t = M.embed_texts(model, [c for triple in triples for c in triple]).reshape(len(triples), 3, -1)
    scores = torch.einsum("nd,nkd->nk", z, t).numpy()
    return {**ranking_scores(scores), "n": len(triples), "scores": scores, "triples": triples, "images": keep}


# ----------------------------------------------------------------------------- bag-of-words probe

def probe_items(p: Pool, kind: str) -> tuple[list[int], list[tuple[str, str]]]:
    """(true caption, negative) pairs of the probe ``kind``: relation reversed, attributes swapped,
    or the two objects exchanged (the same words, the other order)."""
    keep, pairs = [], []
    for i, e in enumerate(p.examples):
        if kind == "relation":
            neg = M.reverse_relation(e.caption)
        elif kind == "attribute":
            neg = M.swap_attributes(e.caption, e.scene)
        elif kind == "exchange":
            neg = M.exchange_objects(e.caption)
        else:
            raise ValueError(f"unknown probe {kind!r}; the probes are: {', '.join(PROBES)}")
        if neg is not None and neg != e.caption.text:
            keep.append(i)
            pairs.append((e.caption.text, neg))
    return keep, pairs


def probe_accuracy(scores: np.ndarray) -> float:
    """``scores`` (N, 2): similarity to (true, negative). Ties count half (chance is 0.5)."""
    s = np.asarray(scores, dtype=float)
    return float(((s[:, 0] > s[:, 1]) + 0.5 * (s[:, 0] == s[:, 1])).mean())


def probe(model, p: Pool, kinds: Sequence[str] = PROBES) -> dict[str, float]:
    """Accuracy of each probe, with its number of items (``<kind>_n``) and of exact ties (``<kind>_ties``)."""
    out = {}
    for kind in kinds:
        keep, pairs = probe_items(p, kind)
        if not pairs:
            continue
        z = M.embed_images(model, p.images[keep])
        t = M.embed_texts(model, [c for pair in pairs for c in pair]).reshape(len(pairs), 2, -1)
        scores = torch.einsum("nd,nkd->nk", z, t).numpy()
        out[kind] = probe_accuracy(scores)
        out[f"{kind}_n"] = len(pairs)
        out[f"{kind}_ties"] = int((scores[:, 0] == scores[:, 1]).sum())
    return out


# ----------------------------------------------------------------------------- geometry

def modality_gap(image_emb: torch.Tensor, text_emb: torch.Tensor) -> float:
    """Distance between the centres of the unit image and unit text embeddings (Liang et al., 2022)."""
    return float((F.normalize(image_emb, dim=-1).mean(0) - F.normalize(text_emb, dim=-1).mean(0)).norm())


def shell(x: torch.Tensor) -> dict[str, float]:
    """Norms of raw vectors: mean, relative spread, and how far their centre sits from the origin."""
    norms = x.norm(dim=-1)
    return {"norm_mean": float(norms.mean()), "norm_cv": float(norms.std() / norms.mean()),
            "centre_shift": float(x.mean(0).norm() / norms.mean()),
            "variance": float(x.var(0).sum())}


@torch.no_grad()
def raw_geometry(model, p: Pool, inner: int = 1) -> dict[str, dict]:
    """Raw (unnormalised) embeddings and text hidden states at ``[EOS]`` and at token ``inner``."""
    enc = M.tokens(p.captions)
    hidden, pooled = M.text_states(model, enc["input_ids"], enc["attention_mask"])
    return {"image": shell(M.embed_images(model, p.images, normalize=False)),
            "text": shell(model.text_projection(pooled)),
            "hidden_eos": shell(pooled), "hidden_inner": shell(hidden[:, inner])}


def bootstrap_gap(image_emb: torch.Tensor, text_emb: torch.Tensor, draws: int = 1000,
                  seed: int = 0) -> tuple[float, float]:
    """A 95 % percentile bootstrap interval of :func:`modality_gap`, resampling the image-caption pairs."""
    zi, zt = F.normalize(image_emb, dim=-1).double(), F.normalize(text_emb, dim=-1).double()
    n = len(zi)
    rng = np.random.default_rng(seed)
    gaps = []
    for start in range(0, draws, 100):  # 100 resamples at a time: a (100, n) matrix of counts
        idx = rng.integers(0, n, (min(100, draws - start), n))
        counts = torch.zeros(len(idx), n, dtype=torch.float64)
        counts.scatter_add_(1, torch.as_tensor(idx), torch.ones(idx.shape, dtype=torch.float64))
        gaps.append(((counts @ zi - counts @ zt) / n).norm(dim=-1))
    lo, hi = np.percentile(torch.cat(gaps).numpy(), [2.5, 97.5])
    return float(lo), float(hi)


@torch.no_grad()
def geometry(model, p: Pool) -> dict[str, float]:
    """The modality gap (with its bootstrap interval) and the mean cosine of true pairs."""
    zi, zt = M.embed_images(model, p.images), M.embed_texts(model, p.captions)
    lo, hi = bootstrap_gap(zi, zt)
    return {"gap": modality_gap(zi, zt), "gap_lo": lo, "gap_hi": hi,
            "cos_pairs": float((zi * zt).sum(-1).mean())}


def slerp_path(model, start: str, end: str, p: Pool, steps: int = 7, k: int = 1) -> list[dict]:
    """Points along the great circle between two captions' embeddings, each decoded by retrieval:
    the nearest captions of the pool (``k``) and the nearest image."""
    za, zb = M.embed_texts(model, [start, end])
    texts = sorted(set(p.captions) | {start, end})
    zt = M.embed_texts(model, texts)
    zi = M.embed_images(model, p.images)
    out = []
    for t in np.linspace(0, 1, steps):
        z = M.slerp(za, zb, float(t))
        near_t = (zt @ z).topk(k).indices.tolist()
        near_i = int((zi @ z).argmax())
        out.append({"t": float(t), "captions": [texts[j] for j in near_t], "image": near_i,
                    "lerp_norm": float(M.lerp(za, zb, float(t)).norm())})
    return out


def path_switches(path: Sequence[dict], p: Pool,
                  attributes: Sequence[str] = ("size", "shape", "colour")) -> dict[str, list[float]]:
    """Where each attribute of the retrieved images changes along a path: the ``t`` of every change.

    The attribute of a point is that of the object of its nearest image (a point
    whose nearest image holds several objects counts as a change, both ways).
    """
    def value(point, attribute):
        objects = p.examples[point["image"]].scene.objects
        return getattr(objects[0], attribute) if len(objects) == 1 else None

    out = {}
    for attribute in attributes:
        values = [value(point, attribute) for point in path]
        out[attribute] = [path[k]["t"] for k in range(1, len(path))
                          if values[k] != values[k - 1] or values[k] is None]
    return out


# ----------------------------------------------------------------------------- during training

def training_metrics(model, p: Pool) -> dict[str, float]:
    """The small evaluation logged during training (lands in ``eval.json`` and the manifest)."""
    out = {}
    zs = zero_shot_report(model, p, ("shape", "colour"))
    for attribute, r in zs.items():
        out[f"zero_shot_{attribute}"] = r["accuracy"]
    out.update({f"probe_{k}": v for k, v in probe(model, p).items() if k in PROBES})
    zi, zt = M.embed_images(model, p.images), M.embed_texts(model, p.captions)
    out.update({"gap": modality_gap(zi, zt), "cos_pairs": float((zi * zt).sum(-1).mean())})
    out.update(retrieval(model, p, ks=(1,)))
    out["logit_scale"] = float(model.logit_scale.detach().exp().clamp(max=100.0))
    return out


# ----------------------------------------------------------------------------- the chapter's report

def analyse(model, p: Pool, seed: int = 0) -> dict:
    """Everything the chapter reports for one model on one pool of examples (of any split)."""
    return {"zero_shot": zero_shot_report(model, p), "ranking": caption_ranking(model, p, seed),
            "retrieval": retrieval(model, p), "probe": probe(model, p), "geometry": geometry(model, p),
            "raw": raw_geometry(model, p)}


def best_template(report: dict, attribute: str, exclude: Sequence[str] = ()) -> tuple[str, float]:
    """The prompt family with the best accuracy for ``attribute``."""
    by = {k: v for k, v in report[attribute]["by_template"].items() if k not in exclude}
    name = max(by, key=by.get)
    return name, by[name]


# ----------------------------------------------------------------------------- intervals

def share_of(result: dict, group: str, key: str, family: str | None = None) -> intervals.Share:
    """A proportion of an :func:`analyse` result as ``k`` of ``n`` with its 95 % Wilson interval.

    ``group`` is ``zero_shot`` (``key``: an attribute; ``family``: a prompt family
    other than the chosen one), ``probe`` (a probe), ``ranking`` or ``retrieval``
    (a key of those reports). ``p`` is the measured value itself: a probe counts
    an exact tie as half a success, so its ``k`` may be a half, and the interval
    is computed from that ``k`` (``Share.k`` holds it rounded).
    """
    part = result[group]
    if group == "zero_shot":
        value = part[key]["by_template"][family] if family else part[key]["accuracy"]
        n = part[key]["n"]
    elif group == "probe":
        value, n = part[key], part[f"{key}_n"]
    else:
        value, n = part[key], part["n"]
    lo, hi = intervals.wilson(min(n, max(0.0, value * n)), n)
    return intervals.Share(int(round(value * n)), int(n), float(value), lo, hi)


def class_share(report: dict, attribute: str, labels: Sequence[str]) -> intervals.Share:
    """Zero-shot accuracy over the images whose true class is one of ``labels`` (read from the confusion matrix).

    What lets a held-out split, whose images hold only some classes, be set
    against the test split on the same classes.
    """
    r = report[attribute]
    rows = [r["labels"].index(label) for label in labels]
    counts = np.asarray(r["confusion"])
    return intervals.share(int(sum(counts[i, i] for i in rows)), int(counts[rows].sum()))


def heldout_labels(attribute: str) -> list[str]:
    """The classes of ``attribute`` that the held-out colour-shape pairs use (``shape`` or ``colour``)."""
    index = {"colour": 0, "shape": 1}[attribute]
    return sorted({pair[index] for pair in splits.HELDOUT_PAIRS})


def heldout_in_negatives(examples: Sequence[splits.Example]) -> dict[str, int]:
    """How many of the hard negative captions of ``examples`` state a held-out composition.

    No training caption or image is held out, but a negative is made by editing
    a caption, and the edit can land on a held-out pair ("a red circle and a
    blue triangle" swapped) or relation: such a composition then reaches the
    model as a caption it must reject.
    """
    out = {"negatives": 0, "heldout": 0, "pairs": 0, "relations": 0}
    for e in examples:
        for text in M.hard_negatives(e.caption, e.scene).values():
            prompt = C.parse(text).prompt
            out["negatives"] += 1
            pairs = bool(splits.pairs_of(prompt) & set(splits.HELDOUT_PAIRS))
            relation = splits.relation_of(prompt) in splits.HELDOUT_RELATIONS
            out["heldout"] += pairs or relation
            out["pairs"] += pairs
            out["relations"] += relation
    return out


# ----------------------------------------------------------------------------- cache

ANALYSIS_VERSION = "2"  # bump when a protocol changes: cached analyses are then recomputed


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def analyse_cached(name: str, model, p: Pool, split: str, profile: str | None = None, keep_scores: int = 16) -> dict:
    """:func:`analyse` of a recipe's checkpoint, cached as JSON next to the checkpoint it came from.

    The key covers the weights, the pool and :data:`ANALYSIS_VERSION`; per-image
    ranking scores are kept for the first ``keep_scores`` images only (what the figures show).
    """
    from text2image import checkpoints, profiles, recipes

    profile = profiles.check(profile) if profile else profiles.current()
    folder = recipes.checkpoint_folder(name, profile)

    def compute() -> dict:
        result = analyse(model, p)
        for field in ("scores", "triples", "images"):
            result["ranking"][field] = result["ranking"][field][:keep_scores]
        return _jsonable(result)

    return checkpoints.cached_result(folder, f"analysis-{split}-{len(p)}.json", [split, len(p), ANALYSIS_VERSION],
                                     compute)
