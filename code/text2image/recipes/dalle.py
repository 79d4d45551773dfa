"""Recipes of the DALL·E chapter: ``dalle`` (decoder-only GPT-2) and ``dalle-mini`` (BART), and their generators.

**Data.** Both models learn from the same examples: the first ``examples``
captions of the training split and their images, tokenised once by the image
tokenizer ``vqvae-long`` (64 codes each) and cached next to that checkpoint
(:func:`image_tokens`, keyed by its weights digest: a retrained tokenizer
tokenises again). The batch of step ``s`` is a pure function of ``s`` (a
permutation of the examples per epoch), so an interrupted run resumes exactly.
A share ``drop_caption`` of each batch has its caption replaced by the empty
caption ``[BOS] [EOS]``: the unconditional model that super-conditioning needs.

**Fairness.** Same data, same steps, same batch, same learning rate and about
the same number of parameters (:data:`text2image.models.dalle.SIZES`); only
the architecture differs, and DALL·E's loss also predicts the caption
(``text_weight``, the paper's 1/8).

**Monitoring** is on ``val`` only (``test`` is the benchmark's): the token
losses of the validation captions' codes, and the share of validation prompts
whose one sampled image the oracle reads right.

**Generators** ``dalle`` and ``dalle-mini`` are registered with the benchmark
(``python -m text2image bench generate dalle``), with :data:`DEFAULT_SAMPLING`;
:func:`benchmark` and the sweeps below run variants (each cached in the
model's folder under its own settings).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from filelock import FileLock
from safetensors.torch import load_file, save_file
from transformers import BartForConditionalGeneration, GPT2LMHeadModel

from text2image import checkpoints, profiles
from text2image import text as T
from text2image.evaluate import benchmark as B
from text2image.evaluate import intervals, verdicts
from text2image.models import dalle as D
from text2image.pipelines import dalle as P
from text2image.recipes import Recipe, checkpoint_folder, load_or_train, register
from text2image.train import TrainConfig, epoch_batch, pick_device
from text2image.world import splits
from text2image.world.render import render
from text2image.world.tensors import RESOLUTION, to_tensor

TOKENIZER = "vqvae-long"   # the image tokenizer: 8 x 8 codes from a 256-code book
JUDGE = "clip"             # the CLIP that reranks candidates by default
NAMES = ("dalle", "dalle-mini")
# The ablation of DALL·E's text loss: the same model, data and steps, its loss on the image codes alone.
VARIANTS = ("dalle-image-only",)
ALL = (*NAMES, *VARIANTS)
ARCHITECTURE = {"dalle": "dalle", "dalle-mini": "dalle-mini", "dalle-image-only": "dalle"}
TEXT_WEIGHT = {"dalle": D.PAPER_TEXT_WEIGHT, "dalle-image-only": 0.0}  # DALL·E's share of the loss on the caption
TOKENS_DIR = "tokens"      # inside the tokenizer's checkpoint folder (git-ignored by a .gitignore of its own)
TOKENS_VERSION = "1"       # bump when what is tokenised changes
DATA_SEED = 16
EVAL_SEED = 1616
VAL_EXAMPLES = {"smoke": 32, "cpu": 1024, "gpu": 4096}  # validation captions of the token losses
EVAL_PROMPTS = {"smoke": 8, "cpu": 128, "gpu": 512}     # validation prompts drawn once and read by the oracle

# The cpu recipes train in at most 50 minutes each on ONE thread of this machine (2 cores, AVX-512). Measured
# with the Trainer on the cpu configs below (OMP_NUM_THREADS=1, batch 32, process CPU time; the other core
# busy with other trainings, where wall time was 2.5-3.5x longer):
#   dalle-mini (BART 2+2 layers, d_model 192, 2.16M parameters): median step 0.26-0.28 s (steps 3-20 of 20),
#     mean 0.33 s over a 120-step run -> 3,600 steps in 16-20 min;
#   dalle (GPT-2 5 layers, d_model 192, 2.30M parameters): median step 0.66-0.71 s, mean 0.82 s over a
#     60-step run (start-up included) -> 3,600 steps in 40-49 min;
# plus about a minute of evaluations each, and, once for both, about 3 minutes to tokenise the 115,200
# training examples (the VQ encoder: 1.2 ms an image). Batch 64 took 0.61 s and 1.41 s a step: batch 32
# gives as many examples a minute and twice the updates. Both recipes share steps and batch.
CPU = dict(steps=3600, batch_size=32, lr=1e-3, warmup=200)
SMOKE = dict(steps=6, batch_size=8, lr=1e-3, warmup=1)
GPU = dict(steps=20000, batch_size=256, lr=5e-4, warmup=500)
EXAMPLES = {"smoke": 256, "cpu": 115_200, "gpu": 1_000_000}  # tokenised training examples (cpu: one epoch)
DROP_CAPTION = 0.1  # share of captions replaced by the empty one (dalle-mini's super-conditioning needs some)


def _config(profile: str, name: str) -> TrainConfig:
    base = {"smoke": SMOKE, "cpu": CPU, "gpu": GPU}[profile]
    steps = base["steps"]
    extra: dict[str, Any] = {"size": D.SIZES[profile], "examples": EXAMPLES[profile], "drop_caption": DROP_CAPTION,
                             "tokenizer": TOKENIZER}
    if name in TEXT_WEIGHT:
        extra["text_weight"] = TEXT_WEIGHT[name]
    return TrainConfig(steps=steps, batch_size=base["batch_size"], lr=base["lr"], warmup=base["warmup"],
                       weight_decay=0.01, betas=(0.9, 0.98),
                       eval_every=0 if profile == "smoke" else max(1, steps // 8),
                       checkpoint_every=2 if profile == "smoke" else max(1, steps // 24),
                       log_every=1 if profile == "smoke" else 10, extra=extra)


CONFIGS = {name: {p: _config(p, name) for p in profiles.PROFILES} for name in ALL}


# ----------------------------------------------------------------------------- image tokens

def tokens_folder(profile: str) -> Path:
    return checkpoint_folder(TOKENIZER, profile) / TOKENS_DIR


def _tokens_key(split: str, n: int, digest: str) -> str:
    return hashlib.sha256(json.dumps([TOKENS_VERSION, digest, split, n]).encode()).hexdigest()[:12]


def _tokenise(vq, split: str, n: int, chunk: int = 1024) -> dict[str, torch.Tensor]:
    vq = vq.to(pick_device())  # the encoder is most of the cost (on CPU, 1.2 ms of the 1.7 ms an image)
    codes, text = [], []
    for start in range(0, n, chunk):
        examples = splits.examples(split, start, min(n, start + chunk))
        images, _ = render([e.scene for e in examples], RESOLUTION)
        codes.append(P.image_codes(vq, to_tensor(images)))
        text.append(T.encode([e.caption.text for e in examples])["input_ids"])
    dtype = torch.uint8 if vq.config.num_vq_embeddings <= 256 else torch.int32
    return {"codes": torch.cat(codes).to(dtype), "text": torch.cat(text).to(torch.uint8)}


@functools.lru_cache(maxsize=8)
def _image_tokens(split: str, n: int, profile: str, digest: str) -> dict[str, torch.Tensor]:
    folder = tokens_folder(profile)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".gitignore").write_text("# a cache, rebuilt from the tokenizer's weights: never committed\n*\n")
    key = _tokens_key(split, n, digest)
    path = folder / f"{split}-{n}-{key}.safetensors"
    with FileLock(str(folder / f"{split}-{n}.lock")):  # two processes (the two recipes) tokenise once
        if not path.is_file():
            vq, _ = load_or_train(TOKENIZER, profile, progress=False)
            tensors = _tokenise(vq, split, n)
            temp = path.with_suffix(".tmp")
            save_file(tensors, str(temp), metadata={"key": key, "tokenizer_weights": digest, "split": split})
            os.replace(temp, path)
            for old in folder.glob(f"{split}-{n}-*.safetensors"):
                if old != path:
                    old.unlink()
    return load_file(str(path))


def image_tokens(split: str, n: int, profile: str | None = None) -> dict[str, torch.Tensor]:
    """The first ``n`` examples of ``split`` as tokens: ``codes`` (n, 64) and caption ids ``text`` (n, 32).

    Computed once with ``vqvae-long`` (trained first if missing) and stored as
    safetensors in ``<its checkpoint>/tokens/``, keyed by its weights digest.
    """
    profile = profiles.check(profile) if profile else profiles.current()
    load_or_train(TOKENIZER, profile, progress=False)  # a missing tokenizer is trained before it is digested
    digest = checkpoints.weights_digest(checkpoint_folder(TOKENIZER, profile))
    return _image_tokens(splits.check_split(split), int(n), profile, digest)


def tokenizer_model(profile: str | None = None):
    """The image tokenizer (a diffusers ``VQModel``)."""
    vq, _ = load_or_train(TOKENIZER, profile, progress=False)
    return vq


def tokenised_example(split: str, index: int, profile: str | None = None) -> dict[str, Any]:
    """One example as the models see it: its caption and token ids, its image, its 8 x 8 grid of codes, and
    the image those codes decode to (what the tokenizer keeps of it)."""
    example = splits.example(split, index)
    image, _ = render([example.scene], RESOLUTION)
    vq = tokenizer_model(profile)
    codes = P.image_codes(vq, image)
    return {"caption": example.caption.text, "text_ids": T.encode([example.caption.text])["input_ids"][0],
            "image": image[0], "codes": codes[0].view(D.GRID, D.GRID), "decoded": P.decode_codes(vq, codes)[0]}


# ----------------------------------------------------------------------------- batches and losses

def batch_indices(step: int, batch_size: int, n: int, seed: int = DATA_SEED) -> np.ndarray:
    """The examples of step ``step``: the ``step``-th slice of a fresh permutation each epoch."""
    return epoch_batch(step, batch_size, n, seed)


def make_batch(tokens: dict[str, torch.Tensor], step: int, batch_size: int, drop_caption: float,
               seed: int = DATA_SEED) -> dict[str, torch.Tensor]:
    """Caption ids and masks (B, 32), codes (B, 64) of a step, a share ``drop_caption`` of captions emptied."""
    index = torch.from_numpy(batch_indices(step, batch_size, len(tokens["codes"]), seed))
    text = tokens["text"][index].long()
    dropped = torch.from_numpy(np.random.default_rng([seed, 1, step]).random(batch_size) < drop_caption)
    null_ids, _ = P.null_captions(1)
    text[dropped] = null_ids[0]
    mask = (text != T.tokenizer().pad_token_id).long()
    return {"text_ids": text, "text_mask": mask, "codes": tokens["codes"][index].long(), "dropped": dropped}


class Trainee(torch.nn.Module):
    """What the Trainer trains: the transformers model, with a state dict that names each tied tensor once.

    Both models tie embeddings (BART: encoder, decoder and output; GPT-2: input
    and output) and safetensors refuses to write one tensor under two names; the
    shipped model (``Recipe.export``) is the bare transformers model, which
    ``save_pretrained`` writes with its ties.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def _aliases(self) -> set[str]:
        first: dict[int, str] = {}
        aliases = set()
        for key, value in super().state_dict(keep_vars=True).items():
            if value.data_ptr() in first:
                aliases.add(key)
            else:
                first[value.data_ptr()] = key
        return aliases

    def state_dict(self, *args, **kwargs):
        state = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", "")
        for key in self._aliases():
            state.pop(prefix + key, None)
        return state

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        wrong = set(result.missing_keys) - self._aliases()
        if strict and (wrong or result.unexpected_keys):
            raise RuntimeError(f"state dict does not fit: missing {sorted(wrong)}, "
                               f"unexpected {sorted(result.unexpected_keys)}")
        return result


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.model if isinstance(model, Trainee) else model


def loss(model, batch: dict, text_weight: float = D.PAPER_TEXT_WEIGHT):
    """The training loss of either model on a batch of :func:`make_batch`."""
    model = unwrap(model)
    device = next(model.parameters()).device
    text_ids, text_mask, codes = (batch[k].to(device) for k in ("text_ids", "text_mask", "codes"))
    if isinstance(model, BartForConditionalGeneration):
        return D.dalle_mini_loss(model, text_ids, text_mask, codes)
    return D.dalle_loss(model, text_ids, codes, text_weight)


@torch.no_grad()
def token_losses(model, tokens: dict[str, torch.Tensor], chunk: int = 256) -> dict[str, float]:
    """Mean cross-entropy (nats per token) of the codes (and, for DALL·E, of the caption) given the caption."""
    sums: dict[str, float] = {}
    n = len(tokens["codes"])
    for start in range(0, n, chunk):
        text = tokens["text"][start:start + chunk].long()
        batch = {"text_ids": text, "text_mask": (text != T.tokenizer().pad_token_id).long(),
                 "codes": tokens["codes"][start:start + chunk].long()}
        _, parts = loss(model, batch)
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(text)
    return {f"val_{k}_loss": v / n for k, v in sums.items()}


def val_correct(model, vq, n: int, sampling: P.Sampling | None = None, seed: int = EVAL_SEED) -> float:
    """Share of the first ``n`` distinct validation prompts whose one sampled image the oracle reads right."""
    prompts = list(dict.fromkeys(e.caption.text for e in splits.examples("val", 0, 4 * n)))[:n]
    pipe = P.DallePipeline(model, vq, sampling=sampling or P.Sampling())
    judged = verdicts.score_batch(prompts, pipe(prompts, seed))
    return float(np.mean([B.correct(v) for v in judged]))


def _task(name: str):
    def task(model, profile):
        config = CONFIGS[name][profiles.check(profile)]
        extra = config.extra
        tokens = image_tokens("train", extra["examples"], profile)
        val = image_tokens("val", profiles.pick(VAL_EXAMPLES, profile), profile)
        vq = tokenizer_model(profile)
        text_weight = extra.get("text_weight", 0.0)

        def batch_fn(step):
            return make_batch(tokens, step, config.batch_size, extra["drop_caption"])

        def loss_fn(m, batch):
            value, parts = loss(m, batch, text_weight)
            return value, {**parts, "dropped": batch["dropped"].float().mean()}

        def eval_fn(m):
            m = unwrap(m)
            vq.to(next(m.parameters()).device)
            return {**token_losses(m, val), "val_correct": val_correct(m, vq, profiles.pick(EVAL_PROMPTS, profile))}

        return loss_fn, batch_fn, eval_fn
    return task


def build(name: str, profile: str):
    """A fresh model of recipe ``name`` at the profile's size (seeded: the same initial weights every time)."""
    size = D.SIZES[profiles.check(profile)]
    codebook = tokenizer_model(profile).config.num_vq_embeddings
    gpt = ARCHITECTURE[name] == "dalle"
    return Trainee(D.build_dalle(size, codebook) if gpt else D.build_dalle_mini(size, codebook))


MODEL_CLASSES = {"dalle": GPT2LMHeadModel, "dalle-mini": BartForConditionalGeneration}
for _name in ALL:
    register(Recipe(_name, build=functools.partial(build, _name), task=_task(_name), configs=CONFIGS[_name],
                    model_class=MODEL_CLASSES[ARCHITECTURE[_name]], data_seed=DATA_SEED, export=unwrap,
                    base=TOKENIZER))


# ----------------------------------------------------------------------------- generators and variants

DEFAULT_SAMPLING = P.Sampling()  # the model as it is; the variants below change one knob at a time
# The settings each sweep tries (the smoke profile keeps the plain one and the ends: its numbers mean nothing).
SWEEP_VALUES = {
    "cpu": {"guidance": (0.0, 1.0, 2.0, 3.0, 5.0, 8.0), "temperature": (0.5, 0.7, 1.0, 1.3),
            "top_k": (None, 128, 32, 8, 1), "top_p": (None, 0.95, 0.8, 0.5), "candidates": (1, 2, 4, 8, 16)},
    "smoke": {"guidance": (0.0, 1.0, 2.0), "temperature": (0.5, 1.0), "top_k": (None, 1), "top_p": (None, 0.5),
              "candidates": (1, 2)},
}
SWEEP_VALUES["gpu"] = SWEEP_VALUES["cpu"]


def sweep_values(knob: str, profile: str | None = None) -> tuple:
    """The settings the sweep of ``knob`` tries in a profile."""
    return profiles.pick(SWEEP_VALUES, profile)[knob]
# Sweeps compare many settings of one model on a part of the benchmark: its four category groups, one image per
# prompt (150 images per group at the cpu size, intervals about +-8 points); the chosen settings then get the
# whole set.
SWEEP_PART = {"groups": B.CATEGORY_GROUPS, "repeats": 1}
SPEED_PROMPTS = B.CHUNK  # prompts per timed call: the benchmark's chunk
SPEED_CANDIDATES = 8     # candidates per prompt of the timed reranking
ORACLE_PICK = "oracle"  # the rerank curve's upper bound: a judge that always picks a right candidate if there is one


def pipeline(name: str, profile: str | None = None, sampling: P.Sampling | None = None,
             judge: str = JUDGE) -> P.DallePipeline:
    """The trained model ``name`` (trained first if missing) with its tokenizer and, to rerank, the CLIP ``judge``."""
    if name not in ALL:
        raise KeyError(f"no DALL·E model named {name!r}; the models are: {', '.join(ALL)}")
    profile = profiles.check(profile) if profile else profiles.current()
    sampling = sampling or DEFAULT_SAMPLING
    device = pick_device()  # CUDA when there is one: sampling, decoding and reranking all run there
    model, _ = load_or_train(name, profile, progress=True)
    clip = load_or_train(judge, profile, progress=False)[0].to(device) if sampling.candidates > 1 else None
    return P.DallePipeline(model.to(device), tokenizer_model(profile).to(device), clip, sampling)


def settings(name: str, profile: str, sampling: P.Sampling, judge: str = JUDGE) -> dict:
    """The cache key of a variant: the sampler, the judge's and the tokenizer's weights."""
    out = {"model": name, "sampling": sampling.as_dict(),
           "tokenizer": checkpoints.weights_digest(checkpoint_folder(TOKENIZER, profile))}
    if sampling.candidates > 1:
        out["judge"] = {"name": judge, "weights": checkpoints.weights_digest(checkpoint_folder(judge, profile))}
    return out


def _ensure_trained(names: Sequence[str], profile: str) -> None:
    """Train what has no checkpoint yet, so that the digests of a cache key are those of the weights used."""
    for name in names:
        if not (checkpoint_folder(name, profile) / checkpoints.MANIFEST).is_file():
            load_or_train(name, profile)


def generator(name: str, profile: str | None = None, sampling: P.Sampling | None = None,
              judge: str = JUDGE) -> B.Generator:
    """A benchmark generator for a variant of ``name`` (its model is loaded only if the result is not cached)."""
    profile = profiles.check(profile) if profile else profiles.current()
    sampling = sampling or DEFAULT_SAMPLING
    _ensure_trained([TOKENIZER, name] + ([judge] if sampling.candidates > 1 else []), profile)
    return B.Generator(name, lambda: pipeline(name, profile, sampling, judge), checkpoint_folder(name, profile),
                       settings(name, profile, sampling, judge))


for _name in ALL:
    B.register_generator(_name, functools.partial(generator, _name))


def benchmark(name: str, profile: str | None = None, sampling: P.Sampling | None = None, judge: str = JUDGE,
              progress: bool = True, frechet: bool = True, part: dict | None = None) -> dict:
    """The benchmark of one variant (on a ``part`` of the set if given, e.g. :data:`SWEEP_PART`), cached in
    the model's checkpoint folder under its settings."""
    gen = generator(name, profile, sampling, judge)
    return B.benchmark(lambda prompts, seed: gen.generate(prompts, seed), profile, gen.cache_folder, gen.settings,
                       progress, frechet, **(part or {}))


def sweep(name: str, knob: str, values: Sequence, profile: str | None = None, base: P.Sampling | None = None,
          judge: str = JUDGE, progress: bool = True, part: dict | None = SWEEP_PART) -> list[tuple[Any, dict]]:
    """``(value, benchmark)`` for each value of one sampler setting (``guidance``, ``candidates``,
    ``temperature``, ``top_k``, ``top_p``), the others as in ``base``, on :data:`SWEEP_PART` by default."""
    base = base or DEFAULT_SAMPLING
    return [(value, benchmark(name, profile, base.but(**{knob: value}), judge, progress, part=part))
            for value in values]


def guidance_sweep(name: str, profile: str | None = None, values: Sequence[float] | None = None, **kw):
    return sweep(name, "guidance", values or sweep_values("guidance", profile), profile, **kw)


def rerank_sweep(name: str, profile: str | None = None, values: Sequence[int] | None = None, judge: str = JUDGE,
                 **kw):
    """The benchmark for N candidates reranked by ``judge`` (``clip``, or ``clip-negatives``: the better judge)."""
    return sweep(name, "candidates", values or sweep_values("candidates", profile), profile, judge=judge, **kw)


def rerank_curve(name: str, profile: str | None = None, sampling: P.Sampling | None = None,
                 judges: Sequence[str] = ("clip", "clip-negatives"), candidates: Sequence[int] | None = None,
                 part: dict | None = SWEEP_PART, progress: bool = True) -> dict[str, Any]:
    """The benchmark (on ``part``) of the best of N candidates, for every N of ``candidates`` and every judge.

    One draw of ``max(candidates)`` candidates per prompt serves every N and
    every judge: its first N candidates are N independent draws, so the best of
    them by a judge is what reranking N fresh draws would pick, and each judge
    sees the same images (their difference is the judges', not the draws').
    :data:`ORACLE_PICK` adds the ceiling: a right candidate whenever one of the
    first N is right. Cached in the model's folder, keyed like the benchmark.
    """
    profile = profiles.check(profile) if profile else profiles.current()
    candidates = candidates or sweep_values("candidates", profile)
    sampling = (sampling or DEFAULT_SAMPLING).but(candidates=max(candidates))
    judges = list(judges)
    part = part or {}
    _ensure_trained([TOKENIZER, name, *judges], profile)
    key = {"version": B.VERSION, "profile": profile, "settings": settings(name, profile, sampling),
           "judges": {j: checkpoints.weights_digest(checkpoint_folder(j, profile)) for j in judges},
           "candidates": list(candidates), "part": {k: list(v) if isinstance(v, tuple) else v for k, v in part.items()}}

    def compute() -> dict[str, Any]:
        from tqdm.auto import tqdm

        pipe = pipeline(name, profile, sampling.but(candidates=1))
        clips = {j: load_or_train(j, profile, progress=False)[0].to(pick_device()).eval() for j in judges}
        right: dict[str, list[list]] = {}   # group -> per prompt, the verdict of each candidate
        scores: dict[str, dict[str, list[np.ndarray]]] = {j: {} for j in judges}
        for group, prompts, seed in tqdm(B.calls(profile, **part), desc=f"rerank {name}", unit="call",
                                         disable=not progress, leave=False):
            codes = P.seeded_codes(pipe.model, prompts, seed, sampling)
            n = codes.shape[1]
            images = P.decode_codes(pipe.vq, codes.flatten(0, 1)).reshape(len(prompts), n, 32, 32, 3)
            flat = verdicts.score_batch([p for p in prompts for _ in range(n)], images.reshape(-1, 32, 32, 3))
            right.setdefault(group, []).extend(flat[k * n:(k + 1) * n] for k in range(len(prompts)))
            for j, clip in clips.items():
                scores[j].setdefault(group, []).extend(P.clip_scores(clip, prompts, images))
        curves: dict[str, list[dict]] = {}
        for j in [*judges, ORACLE_PICK]:
            curves[j] = []
            for n in candidates:
                judged = {}
                for group, per_prompt in right.items():
                    if j == ORACLE_PICK:
                        picks = [next((k for k, v in enumerate(vs[:n]) if B.correct(v)), 0) for vs in per_prompt]
                    else:
                        picks = [int(np.argmax(s[:n])) for s in scores[j][group]]
                    judged[group] = [vs[k] for vs, k in zip(per_prompt, picks)]
                curves[j].append(B.summarise(judged))
        return {"candidates": list(candidates), "curves": curves}

    return checkpoints.cached_result(checkpoint_folder(name, profile), checkpoints.result_name("rerank", key), key, compute)


def temperature_sweep(name: str, profile: str | None = None, values: Sequence[float] | None = None, **kw):
    return sweep(name, "temperature", values or sweep_values("temperature", profile), profile, **kw)


def top_k_sweep(name: str, profile: str | None = None, values: Sequence[int | None] | None = None, **kw):
    return sweep(name, "top_k", values or sweep_values("top_k", profile), profile, **kw)


def top_p_sweep(name: str, profile: str | None = None, values: Sequence[float | None] | None = None, **kw):
    return sweep(name, "top_p", values or sweep_values("top_p", profile), profile, **kw)


def speed(name: str, profile: str | None = None, sampling: P.Sampling | None = None, use_cache: bool = True,
          prompts: int | None = None, seed: int = 0, cached: bool = True) -> dict[str, float]:
    """Images per second of one call on ``prompts`` prompts of the benchmark (its chunk size), on this
    machine: drawing the codes (all candidates), decoding them, reranking; and the same split in seconds.

    A timing is measured once per weights and settings and cached in the model's folder (``cached=False``
    measures again), so the book quotes one measurement, not a new one at every render.
    """
    profile = profiles.check(profile) if profile else profiles.current()
    sampling = sampling or DEFAULT_SAMPLING
    prompts = prompts or SPEED_PROMPTS

    def measure() -> dict[str, float]:
        import time

        texts = B.prompt_set(profile)["pair"][:prompts]
        pipe = pipeline(name, profile, sampling)
        started = time.perf_counter()
        codes = P.seeded_codes(pipe.model, texts, seed, sampling, use_cache)
        drawn = time.perf_counter()
        images = P.decode_codes(pipe.vq, codes.flatten(0, 1)).reshape(len(texts), sampling.candidates, 32, 32, 3)
        decoded = time.perf_counter()
        if sampling.candidates > 1:
            P.rerank(pipe.clip, texts, images)
        done = time.perf_counter()
        return {"images_per_second": len(texts) / (done - started), "codes_seconds": drawn - started,
                "decode_seconds": decoded - drawn, "rerank_seconds": done - decoded,
                "sequences_per_second": codes.shape[0] * codes.shape[1] / (drawn - started),
                "threads": torch.get_num_threads()}

    if not cached:
        return measure()
    _ensure_trained([TOKENIZER, name] + ([JUDGE] if sampling.candidates > 1 else []), profile)
    key = {"speed": settings(name, profile, sampling), "use_cache": use_cache, "prompts": prompts, "seed": seed,
           "device": str(pick_device())}
    return checkpoints.cached_result(checkpoint_folder(name, profile), checkpoints.result_name("speed", key), key, measure)


def candidates_with_verdicts(name: str, prompts: Sequence[str], profile: str | None = None,
                             sampling: P.Sampling | None = None, judge: str = JUDGE, seed: int = 0):
    """For sample grids: every candidate of every prompt, CLIP's scores and pick, and the oracle's verdict on
    each candidate (``verdicts[p][n]``)."""
    drawn = pipeline(name, profile, sampling, judge).draw(list(prompts), seed)
    flat = verdicts.score_batch([p for p in drawn.prompts for _ in range(drawn.images.shape[1])],
                                drawn.images.reshape(-1, 32, 32, 3))
    n = drawn.images.shape[1]
    return drawn, [flat[k * n:(k + 1) * n] for k in range(len(drawn.prompts))]


PIXEL_CHANGE = 0.25  # a pixel "differs" between two draws when a channel moves by more than this share of its range


def diversity(name: str, profile: str | None = None, sampling: P.Sampling | None = None, prompts: int = 20,
              samples: int = 8, seed: int = 0) -> dict[str, float]:
    """How different the draws for one prompt are, on the first ``prompts`` prompts of the benchmark's pair
    group, ``samples`` draws each (no reranking): the mean share of the 64 codes, and of the pixels (a
    channel moved by more than :data:`PIXEL_CHANGE`), that differ between two draws of the same prompt, and
    the share of distinct images among the draws. Cached in the model's folder, keyed by the settings.

    Codes overstate diversity: the tokenizer spends many near-equal codes on the background, so two draws of
    one image can differ in most codes and in almost no pixel.
    """
    profile = profiles.check(profile) if profile else profiles.current()
    sampling = replace(sampling or DEFAULT_SAMPLING, candidates=samples)
    _ensure_trained([TOKENIZER, name], profile)
    key = {"diversity": settings(name, profile, sampling), "prompts": prompts, "seed": seed,
           "pixel_change": PIXEL_CHANGE}

    def measure() -> dict[str, float]:
        texts = B.prompt_set(profile)["pair"][:prompts]
        pipe = pipeline(name, profile, replace(sampling, candidates=1))
        codes = P.seeded_codes(pipe.model, texts, seed, sampling)  # (P, N, 64): N draws, not reranked
        images = P.decode_codes(pipe.vq, codes.flatten(0, 1)).reshape(len(texts), samples, -1, 3)
        pairs = len(texts) * samples * (samples - 1)
        if not pairs:
            return {"codes_differ": 0.0, "pixels_differ": 0.0, "distinct": 1.0}
        codes_differ = (codes[:, :, None, :] != codes[:, None, :, :]).float().mean(-1)  # (P, N, N)
        moved = np.abs(images[:, :, None].astype(np.int16) - images[:, None].astype(np.int16)) > PIXEL_CHANGE * 255
        pixels_differ = moved.any(-1).mean(-1)  # (P, N, N)
        distinct = np.mean([len({tuple(c.tolist()) for c in row}) / samples for row in codes])
        return {"codes_differ": float(codes_differ.sum() / pairs), "pixels_differ": float(pixels_differ.sum() / pairs),
                "distinct": float(distinct)}

    return checkpoints.cached_result(checkpoint_folder(name, profile), checkpoints.result_name("diversity", key), key, measure)


# ----------------------------------------------------------------------------- what the chapter reads

def manifest(name: str, profile: str | None = None) -> dict:
    """The shipped (or trained) manifest of ``name``."""
    return load_or_train(name, profile, progress=False)[1]


def history(name: str, profile: str | None = None) -> list[dict]:
    """The evaluations on val made during training (``eval.json`` of the checkpoint), in step order."""
    profile = profiles.check(profile) if profile else profiles.current()
    manifest(name, profile)
    path = checkpoint_folder(name, profile) / "eval.json"
    return sorted(json.loads(path.read_text()), key=lambda e: e["step"]) if path.is_file() else []


def best(results: Sequence[tuple[Any, dict]], category: str = "overall") -> Any:
    """The setting of a sweep whose ``category`` share is highest (the first of equals: sweeps list the
    cheaper or plainer setting first)."""
    def share(result):
        return result["overall"]["p"] if category == "overall" else result["categories"][category]["p"]
    return max(results, key=lambda vr: share(vr[1]))[0]


# Candidates per prompt of the reranked variants on the whole benchmark: at the cpu size, 8 (33,600 guided draws
# per model: 22 minutes for dalle, 12 for dalle-mini, on one thread), where the rerank curve (which goes to 16 on
# a part of the set) still gains on every category; 4 left colours below 95 % on the whole set.
FINAL_CANDIDATES = {"smoke": 2, "cpu": 8, "gpu": 16}


@dataclass(frozen=True)
class Variant:
    """One way to sample a model, judged on the whole benchmark."""
    model: str
    sampling: P.Sampling
    judge: str = JUDGE


def rerank_points(curves: dict[str, dict], category: str = "overall") -> dict[str, dict[str, list[dict]]]:
    """``{model: {judge: [share at each N]}}`` for one category (or ``overall``) of :func:`rerank_curve`'s curves."""
    def share(result):
        return result["overall"] if category == "overall" else result["categories"][category]
    return {model: {judge: [share(r) for r in points] for judge, points in curve["curves"].items()}
            for model, curve in curves.items()}


def better_judge(curve: dict, candidates: int) -> str:
    """The CLIP whose pick among ``candidates`` scores higher overall on the curve (the baseline if tied)."""
    at = curve["candidates"].index(candidates)
    judges = [j for j in curve["curves"] if j != ORACLE_PICK]
    return max(judges, key=lambda j: (curve["curves"][j][at]["overall"]["p"], j == JUDGE))


def final_variants(best_guidance: dict[str, float], curves: dict[str, dict],
                   profile: str | None = None) -> list[Variant]:
    """Each model as it is, at its best guidance scale, and reranked among :data:`FINAL_CANDIDATES` by the
    better judge of its rerank curve."""
    n = profiles.pick(FINAL_CANDIDATES, profile)
    out = []
    for name in NAMES:
        guided = DEFAULT_SAMPLING.but(guidance=best_guidance[name])
        out += [Variant(name, DEFAULT_SAMPLING), Variant(name, guided),
                Variant(name, guided.but(candidates=n), better_judge(curves[name], n))]
    return out


def references(profile: str | None = None) -> dict[str, dict]:
    """The benchmark's reference rows (world renders, nearest caption, random image)."""
    return {name: B.benchmark_named(name, profile, progress=False) for name in ("world", "retrieval", "random")}


def speeds(best_guidance: dict[str, float], profile: str | None = None) -> dict[str, dict[str, dict]]:
    """Per model: images per second as it is, without the key/value cache, guided, and guided and reranked."""
    out = {}
    for name in NAMES:
        guided = DEFAULT_SAMPLING.but(guidance=best_guidance[name])
        out[name] = {"plain": speed(name, profile), "no_cache": speed(name, profile, use_cache=False),
                     "guided": speed(name, profile, guided),
                     "reranked": speed(name, profile, guided.but(candidates=SPEED_CANDIDATES))}
    return out


def tokenizer_agreement(name: str = TOKENIZER, profile: str | None = None) -> float:
    """The share of test scenes the oracle reads back exactly from an autoencoder's reconstruction (the
    autoencoders chapter's measurement, cached next to its weights)."""
    from text2image.evaluate.reconstruction import measure

    return measure(name, load_or_train(name, profile, progress=False)[0], profile)["oracle_agreement"]


def seven_differences(judged: Sequence[tuple[Variant, dict]], curves: dict[str, dict],
                      best_guidance: dict[str, float], speeds_of: dict[str, dict],
                      profile: str | None = None) -> dict[str, Any]:
    """What this chapter measured for each of the seven differences (the table's last column), from the
    whole-benchmark results of :func:`final_variants` (``judged``: ``(variant, result)`` pairs)."""
    from text2image.pipelines import real_dalle_mini

    by_model: dict[str, dict] = {}
    for variant, result in judged:  # each model's best variant
        if variant.model not in by_model or result["overall"]["p"] > by_model[variant.model]["overall"]["p"]:
            by_model[variant.model] = result
    best = max(NAMES, key=lambda n: by_model[n]["overall"]["p"])
    judge = better_judge(curves[best], max(curves[best]["candidates"]))
    points = rerank_points({best: curves[best]})[best][judge]
    held = [by_model[best]["heldout"][g] for g in B.HELDOUT_GROUPS]
    published = real_dalle_mini.published_parameters("mini")
    manifests = {name: manifest(name, profile) for name in NAMES}
    return {
        "codebook": ae_codebook(profile), "ceiling": tokenizer_agreement(TOKENIZER, profile),
        "dvae": tokenizer_agreement("dvae", profile),
        "overall": {name: by_model[name]["overall"] for name in NAMES},
        "speed": {name: speeds_of[name]["plain"]["images_per_second"] for name in NAMES},
        "examples": CONFIGS["dalle"][profiles.check(profile) if profile else profiles.current()].extra["examples"],
        "heldout": intervals.share(sum(s["k"] for s in held), sum(s["n"] for s in held)).as_dict(),
        "guidance": dict(best_guidance), "candidates": max(curves[best]["candidates"]),
        "rerank": (points[0], points[-1]),
        "published_mini": published["encoder"] + published["decoder"],
        "parameters": {name: manifests[name]["parameters"] for name in NAMES},
        "minutes": {name: round(manifests[name]["train_seconds"] / 60) for name in NAMES},
    }


def ae_codebook(profile: str | None = None) -> int:
    """The size of the image tokenizer's codebook."""
    return tokenizer_model(profile).config.num_vq_embeddings
