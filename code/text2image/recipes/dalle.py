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
from dataclasses import replace
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
from text2image.evaluate import verdicts
from text2image.models import dalle as D
from text2image.pipelines import dalle as P
from text2image.recipes import Recipe, checkpoint_folder, load_or_train, register
from text2image.train import TrainConfig, pick_device
from text2image.world import splits
from text2image.world.render import render
from text2image.world.tensors import RESOLUTION, to_tensor

TOKENIZER = "vqvae-long"   # the image tokenizer: 8 x 8 codes from a 256-code book
JUDGE = "clip"             # the CLIP that reranks candidates by default
NAMES = ("dalle", "dalle-mini")
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
    if name == "dalle":
        extra["text_weight"] = D.PAPER_TEXT_WEIGHT
    return TrainConfig(steps=steps, batch_size=base["batch_size"], lr=base["lr"], warmup=base["warmup"],
                       weight_decay=0.01, betas=(0.9, 0.98),
                       eval_every=0 if profile == "smoke" else max(1, steps // 8),
                       checkpoint_every=2 if profile == "smoke" else max(1, steps // 24),
                       log_every=1 if profile == "smoke" else 10, extra=extra)


CONFIGS = {name: {p: _config(p, name) for p in profiles.PROFILES} for name in NAMES}


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

@functools.lru_cache(maxsize=4)
def _permutation(n: int, epoch: int, seed: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_indices(step: int, batch_size: int, n: int, seed: int = DATA_SEED) -> np.ndarray:
    """The examples of step ``step``: the ``step``-th slice of a fresh permutation each epoch."""
    per_epoch = n // batch_size
    if per_epoch < 1:
        raise ValueError(f"{n} examples do not fill a batch of {batch_size}")
    epoch, k = divmod(step, per_epoch)
    return _permutation(n, epoch, seed)[k * batch_size:(k + 1) * batch_size]


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
    return Trainee(D.build_dalle(size, codebook) if name == "dalle" else D.build_dalle_mini(size, codebook))


MODEL_CLASSES = {"dalle": GPT2LMHeadModel, "dalle-mini": BartForConditionalGeneration}
for _name in NAMES:
    register(Recipe(_name, build=functools.partial(build, _name), task=_task(_name), configs=CONFIGS[_name],
                    model_class=MODEL_CLASSES[_name], data_seed=DATA_SEED, export=unwrap, base=TOKENIZER))


# ----------------------------------------------------------------------------- generators and variants

DEFAULT_SAMPLING = P.Sampling()  # the model as it is; the variants below change one knob at a time
GUIDANCE_SCALES = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0)
CANDIDATES = (1, 2, 4, 8, 16)
TEMPERATURES = (0.5, 0.7, 1.0, 1.3)
TOP_KS = (None, 128, 32, 8, 1)


def pipeline(name: str, profile: str | None = None, sampling: P.Sampling | None = None,
             judge: str = JUDGE) -> P.DallePipeline:
    """The trained model ``name`` (trained first if missing) with its tokenizer and, to rerank, the CLIP ``judge``."""
    if name not in NAMES:
        raise KeyError(f"no DALL·E model named {name!r}; the models are: {', '.join(NAMES)}")
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


for _name in NAMES:
    B.register_generator(_name, functools.partial(generator, _name))


def benchmark(name: str, profile: str | None = None, sampling: P.Sampling | None = None, judge: str = JUDGE,
              progress: bool = True, frechet: bool = True) -> dict:
    """The benchmark of one variant, cached in the model's checkpoint folder under its settings."""
    gen = generator(name, profile, sampling, judge)
    return B.benchmark(lambda prompts, seed: gen.generate(prompts, seed), profile, gen.cache_folder, gen.settings,
                       progress, frechet)


def sweep(name: str, knob: str, values: Sequence, profile: str | None = None, base: P.Sampling | None = None,
          judge: str = JUDGE, progress: bool = True) -> list[tuple[Any, dict]]:
    """``(value, benchmark)`` for each value of one sampler setting (``guidance``, ``candidates``,
    ``temperature``, ``top_k``, ``top_p``), the others as in ``base``."""
    base = base or DEFAULT_SAMPLING
    return [(value, benchmark(name, profile, base.but(**{knob: value}), judge, progress)) for value in values]


def guidance_sweep(name: str, profile: str | None = None, values: Sequence[float] = GUIDANCE_SCALES, **kw):
    return sweep(name, "guidance", values, profile, **kw)


def rerank_sweep(name: str, profile: str | None = None, values: Sequence[int] = CANDIDATES, judge: str = JUDGE, **kw):
    """The benchmark for N candidates reranked by ``judge`` (``clip``, or ``clip-negatives``: the better judge)."""
    return sweep(name, "candidates", values, profile, judge=judge, **kw)


def temperature_sweep(name: str, profile: str | None = None, values: Sequence[float] = TEMPERATURES, **kw):
    return sweep(name, "temperature", values, profile, **kw)


def top_k_sweep(name: str, profile: str | None = None, values: Sequence[int | None] = TOP_KS, **kw):
    return sweep(name, "top_k", values, profile, **kw)


def speed(name: str, profile: str | None = None, sampling: P.Sampling | None = None, use_cache: bool = True,
          prompts: int = 50, seed: int = 0) -> dict[str, float]:
    """Images per second of one call on ``prompts`` prompts of the benchmark (its chunk size), on this
    machine: drawing the codes (all candidates), decoding them, reranking; and the same split in seconds."""
    import time

    profile = profiles.check(profile) if profile else profiles.current()
    sampling = sampling or DEFAULT_SAMPLING
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
            "sequences_per_second": codes.shape[0] * codes.shape[1] / (drawn - started)}


def candidates_with_verdicts(name: str, prompts: Sequence[str], profile: str | None = None,
                             sampling: P.Sampling | None = None, judge: str = JUDGE, seed: int = 0):
    """For sample grids: every candidate of every prompt, CLIP's scores and pick, and the oracle's verdict on
    each candidate (``verdicts[p][n]``)."""
    drawn = pipeline(name, profile, sampling, judge).draw(list(prompts), seed)
    flat = verdicts.score_batch([p for p in drawn.prompts for _ in range(drawn.images.shape[1])],
                                drawn.images.reshape(-1, 32, 32, 3))
    n = drawn.images.shape[1]
    return drawn, [flat[k * n:(k + 1) * n] for k in range(len(drawn.prompts))]


def diversity(name: str, profile: str | None = None, sampling: P.Sampling | None = None, prompts: int = 20,
              samples: int = 8, seed: int = 0) -> dict[str, float]:
    """How different the draws for one prompt are: the mean share of the 64 codes that differ between two
    draws of the same prompt (0: always the same image), and the share of distinct images among the draws,
    on the first ``prompts`` prompts of the benchmark's pair group, ``samples`` draws each (no reranking)."""
    profile = profiles.check(profile) if profile else profiles.current()
    sampling = replace(sampling or DEFAULT_SAMPLING, candidates=samples)
    texts = B.prompt_set(profile)["pair"][:prompts]
    pipe = pipeline(name, profile, replace(sampling, candidates=1))
    codes = P.seeded_codes(pipe.model, texts, seed, sampling)  # (P, N, 64): N draws, not reranked
    differ = (codes[:, :, None, :] != codes[:, None, :, :]).float().mean(-1)  # (P, N, N)
    pairs = samples * (samples - 1)
    distinct = np.mean([len({tuple(c.tolist()) for c in row}) / samples for row in codes])
    return {"codes_differ": float(differ.sum() / (len(texts) * pairs)) if pairs else 0.0,
            "distinct": float(distinct)}
