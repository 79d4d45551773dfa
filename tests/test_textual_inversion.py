"""Textual inversion on a tiny built pipeline (smoke sizes, untrained): only the new row learns, the loss on fixed
draws goes down, the distance travelled is recorded and stays under AdamW's bound, the file is diffusers' and
``load_textual_inversion`` reads it back to the same images bit for bit, the bad inputs are refused, and a seed
repeats the run."""

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from text2image import text as T
from text2image.methods import textual_inversion as TI
from text2image.models import autoencoders as A
from text2image.models import clip as C
from text2image.models import latent as L
from text2image.models import seeded
from text2image.pipelines import latent as P
from text2image.world import concept
from text2image.world.scene import SHAPES

STEPS, LR, LOG_EVERY = 40, 2e-2, 10
PROMPTS = ["a small red <star>", "a large blue <star> to the left of a green circle"]
SAMPLING = P.Sampling(steps=2)


def tiny_pipe(seed: int = 0) -> P.LatentDiffusionPipeline:
    """The same tiny pipeline for a seed: smoke-size CLIP text tower, UNet and VAE, built (never trained)."""
    encoder = L.text_encoder(C.build(C.SIZES["smoke"], seed=seed))
    unet = L.build_unet(L.UNET_SIZES["smoke"], L.text_width(encoder), seed=seed)
    vae = seeded(lambda: A.build_vae((8, 16, 16), groups=4), seed)
    return P.assemble(unet, vae, encoder, "velocity")


def timeless(history: list[dict]) -> list[dict]:
    """A history without its wall times, what a seed must repeat bit for bit."""
    return [{k: v for k, v in entry.items() if k != "seconds"} for entry in history]


def snapshot(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def learned():
    pipe = tiny_pipe()
    before = {"unet": snapshot(pipe.unet), "vae": snapshot(pipe.vae), "text": snapshot(pipe.text_encoder)}
    inversion = TI.invert(pipe, steps=STEPS, lr=LR, log_every=LOG_EVERY, seed=0)
    return pipe, inversion, before


# ----------------------------------------------------------------------------- the word and its captions

def test_the_default_initial_word_is_the_base_shape_closest_to_the_star():
    overlap = concept.overlap_with_star()
    assert set(overlap) == set(SHAPES) and all(0 < v < 1 for v in overlap.values())
    assert max(overlap, key=overlap.get) == TI.INITIALIZER
    assert "star" not in T.tokenizer().get_vocab() and TI.PLACEHOLDER not in T.tokenizer().get_vocab()


def test_captions_say_size_and_colour_and_the_placeholder_is_one_token(learned):
    pipe, inversion, _ = learned
    examples = concept.training_examples()
    captions = examples.captions()
    for caption, scene in zip(captions, examples.scenes):
        assert caption == f"a {scene[0].size} {scene[0].colour} <star>"
    ids, mask = TI.concept_text(pipe, examples, "<star>")
    assert (ids == inversion.token_id).sum(dim=1).tolist() == [1] * len(examples)
    assert pipe.tokenizer.convert_ids_to_tokens(ids[0, :6].tolist()) == ["[BOS]", "a", captions[0].split()[1],
                                                                         captions[0].split()[2], "<star>", "[EOS]"]
    # the word went into the pipeline's own tokenizer, never into the world's shared one
    assert pipe.tokenizer is not T.tokenizer() and "<star>" not in T.tokenizer().get_vocab()
    assert len(pipe.tokenizer) == len(T.tokenizer()) + 1 == pipe.text_encoder.get_input_embeddings().weight.shape[0]
    # a word outside the vocabulary is still refused by name
    with pytest.raises(T.UnknownWordError, match="'purple'"):
        pipe.tokenizer("a purple <star>")


# ----------------------------------------------------------------------------- what learns

def test_only_the_new_row_changes(learned):
    pipe, inversion, before = learned
    for name, module in (("unet", pipe.unet), ("vae", pipe.vae)):
        after = module.state_dict()
        assert all(torch.equal(after[k], v) for k, v in before[name].items()), name
        assert all(p.grad is None for p in module.parameters())
    after = pipe.text_encoder.state_dict()
    embedding = pipe.text_encoder.get_input_embeddings().weight
    key = next(n for n, p in pipe.text_encoder.named_parameters() if p is embedding)
    for k, v in before["text"].items():
        if k != key:
            assert torch.equal(after[k], v), k
    rows, old = after[key], before["text"][key]
    assert torch.equal(rows[: len(old)], old)  # every other word's row, bit for bit
    start = old[pipe.tokenizer.convert_tokens_to_ids(TI.INITIALIZER)]
    assert torch.equal(inversion.initial, start)  # the new row started as the initial word's
    assert torch.equal(rows[inversion.token_id], inversion.embedding)
    assert not torch.equal(inversion.embedding, start)
    assert not any(p.requires_grad for p in pipe.text_encoder.parameters())  # frozen again, as it was


def test_the_loss_on_fixed_draws_goes_down(learned):
    _, inversion, _ = learned
    eval_losses = [h["eval_loss"] for h in inversion.history]
    assert [h["step"] for h in inversion.history] == list(range(0, STEPS + 1, LOG_EVERY))
    assert eval_losses[-1] < eval_losses[0] * 0.995
    assert sum(b < a for a, b in zip(eval_losses, eval_losses[1:])) >= len(eval_losses) - 2
    assert all(h["loss"] > 0 for h in inversion.history[1:])


def test_the_distance_is_the_norm_from_the_start_and_stays_under_adamws_bound(learned):
    pipe, inversion, _ = learned
    last = inversion.history[-1]
    change = inversion.embedding - inversion.initial
    assert last["distance"] == pytest.approx(float(change.norm()), rel=1e-6)
    assert last["distance_max"] == pytest.approx(float(change.abs().max()), rel=1e-6)
    assert inversion.distance == pytest.approx(last["distance"], rel=1e-6)
    width = pipe.text_encoder.config.hidden_size
    bounds = TI.adam_bound(STEPS, LR, width, float(inversion.initial.norm()))
    distances = [h["distance"] for h in inversion.history]
    assert distances[0] == 0 and all(b >= a for a, b in zip(distances, distances[1:]))  # it only moved away
    for h in inversion.history:
        assert h["steps_lr"] == pytest.approx(h["step"] * LR)
        assert h["bound"] == pytest.approx(bounds[h["step"]]) and h["distance"] <= h["bound"]
    # Adam moves a coordinate by about lr a step: the largest change is of the order of steps x lr
    assert last["distance_max"] <= 2 * last["steps_lr"]


def test_adams_factor_bounds_the_step_for_any_gradients():
    assert TI.adam_factor(1) == pytest.approx(1.0)
    assert TI.adam_factor(50) == pytest.approx(1.61, abs=0.01)
    generator = torch.Generator().manual_seed(0)
    width, steps, lr = 16, 60, 0.1
    for kind in ("steady", "random", "sparse"):
        start = torch.randn(width, generator=generator)
        row = torch.nn.Parameter(start.clone())
        optimizer = torch.optim.AdamW([row], lr=lr, betas=TI.BETAS, weight_decay=TI.WEIGHT_DECAY, eps=TI.EPS)
        bounds = TI.adam_bound(steps, lr, width, float(start.norm()))
        for t in range(1, steps + 1):
            if kind == "steady":
                grad = torch.ones(width)
            elif kind == "random":
                grad = torch.randn(width, generator=generator) * 10 ** torch.randint(-3, 3, (1,), generator=generator)
            else:  # zero gradients, then one large one: the case where Adam's step exceeds lr
                grad = torch.full((width,), 1e3) if t == steps else torch.zeros(width)
            row.grad = grad.clone()
            optimizer.step()
            assert float((row.detach() - start).norm()) <= bounds[t] * (1 + 1e-6), (kind, t)
        if kind == "steady":  # a steady gradient: about lr per coordinate a step, the bound's own scale
            assert float((row.detach() - start).abs().max()) == pytest.approx(steps * lr, rel=0.05)


# ----------------------------------------------------------------------------- the file and diffusers' loader

def test_save_then_diffusers_loader_gives_the_same_row_and_the_same_images(learned, tmp_path):
    pipe, inversion, _ = learned
    path = inversion.save(tmp_path / "star")
    assert path.name == "learned_embeds.safetensors"
    stored = load_file(str(path))
    assert list(stored) == ["<star>"] and stored["<star>"].shape == (1, pipe.text_encoder.config.hidden_size)
    tensors, metadata = TI.read(path)
    assert metadata[TI.BASE_KEY] == inversion.base and metadata["initializer"] == TI.INITIALIZER
    images = TI.sample(pipe, PROMPTS, seed=3, sampling=SAMPLING)

    fresh = tiny_pipe()
    assert TI.base_digest(fresh.tokenizer, fresh.text_encoder) == inversion.base
    fresh.load_textual_inversion(str(path.parent), token="<star>")  # diffusers' own loader, from the folder
    row = fresh.text_encoder.get_input_embeddings().weight[fresh.tokenizer.convert_tokens_to_ids("<star>")]
    assert torch.equal(row, inversion.embedding)
    assert np.array_equal(TI.sample(fresh, PROMPTS, seed=3, sampling=SAMPLING), images)

    ours = tiny_pipe()
    assert TI.load(ours, path) == "<star>"
    assert np.array_equal(TI.sample(ours, PROMPTS, seed=3, sampling=SAMPLING), images)
    assert "<star>" not in T.tokenizer().get_vocab()
    # the word changes what is drawn: the base model's diamond is another picture
    base_images = TI.sample(pipe, [p.replace("<star>", "diamond") for p in PROMPTS], seed=3, sampling=SAMPLING)
    assert not np.array_equal(base_images, images)


def test_an_embedding_for_another_base_model_is_refused(learned, tmp_path):
    _, inversion, _ = learned
    path = inversion.save(tmp_path)
    other = tiny_pipe(seed=1)
    with pytest.raises(TI.InversionError, match="learned on another base model"):
        TI.load(other, path)
    assert "<star>" not in other.tokenizer.get_vocab()  # refused before anything changed
    # a file that records no base (as diffusers' script writes it) is loaded only when asked to
    bare = tmp_path / "bare" / "learned_embeds.safetensors"
    bare.parent.mkdir()
    save_file({"<star>": inversion.embedding[None]}, str(bare), metadata={"format": "pt"})
    with pytest.raises(TI.InversionError, match="records no base model"):
        TI.load(tiny_pipe(), bare)
    again = tiny_pipe()
    assert TI.load(again, bare, check_base=False) == "<star>"
    with pytest.raises(TI.InversionError, match="already a word"):
        TI.load(again, bare, check_base=False)


# ----------------------------------------------------------------------------- bad input

def test_bad_input_is_refused_before_anything_changes():
    pipe = tiny_pipe()
    rows = pipe.text_encoder.get_input_embeddings().weight.shape[0]
    for placeholder, message in (("circle", "already a word"), ("ight", "inside the word 'right'"),
                                 ("<Star>", "lower-cases"), ("<a star>", "one word"), ("", "one word")):
        with pytest.raises(TI.InversionError, match=message):
            TI.invert(pipe, placeholder=placeholder, steps=1)
    for initializer in ("star", "[PAD]", "purple"):
        with pytest.raises(TI.InversionError, match=f"initial word '{re_escape(initializer)}' is not a word"):
            TI.invert(pipe, initializer=initializer, steps=1)
    none = concept.ConceptImages((), np.zeros((0, 32, 32, 3), np.uint8), np.zeros((0, 32, 32), bool))
    with pytest.raises(TI.InversionError, match="no example image"):
        TI.invert(pipe, none, steps=1)
    assert pipe.text_encoder.get_input_embeddings().weight.shape[0] == rows == len(pipe.tokenizer)
    with pytest.raises(TI.InversionError, match="not a learned word"):
        TI.sample(pipe, ["a small red <star>"])
    TI.add_token(pipe)
    with pytest.raises(TI.InversionError, match="'<star>' is already a word"):
        TI.add_token(pipe)
    with pytest.raises(TI.InversionError, match="initial word '<star>' is not a word"):
        TI.add_token(pipe, "<star2>", "<star>")  # a learned word is not one of the tokenizer's own


def re_escape(word: str) -> str:
    import re

    return re.escape(word)


# ----------------------------------------------------------------------------- a seed repeats the run

def test_a_seed_repeats_the_run_and_another_seed_does_not():
    runs = [TI.invert(tiny_pipe(), steps=4, lr=LR, batch_size=3, log_every=2, seed=s) for s in (5, 5, 6)]
    assert torch.equal(runs[0].embedding, runs[1].embedding) and timeless(runs[0].history) == timeless(runs[1].history)
    assert all(h["seconds"] >= 0 for h in runs[0].history)
    assert not torch.equal(runs[0].embedding, runs[2].embedding)
    assert runs[0].settings["batch_size"] == 3 and math.isfinite(runs[0].history[-1]["loss"])


def test_the_history_holds_the_path_and_any_logged_point_can_be_drawn(learned):
    pipe, inversion, _ = learned
    assert torch.equal(TI.row_at(inversion, inversion.history[-1]["step"]), inversion.embedding)
    assert torch.equal(TI.row_at(inversion, 0), inversion.initial)
    for entry in inversion.history:
        row = TI.row_at(inversion, entry["step"])
        assert abs(float(torch.linalg.vector_norm(row - inversion.initial)) - entry["distance"]) < 1e-5
    with pytest.raises(TI.InversionError, match="logged steps"):
        TI.row_at(inversion, 10_000)
    prompts = ["a small red <star>"]
    last = TI.sample(pipe, prompts, seed=1, sampling=SAMPLING)
    TI.set_row(pipe, inversion.token, inversion.initial)
    try:
        start = TI.sample(pipe, prompts, seed=1, sampling=SAMPLING)
        assert np.array_equal(start, TI.sample(pipe, ["a small red diamond"], seed=1, sampling=SAMPLING))
    finally:
        TI.set_row(pipe, inversion.token, inversion.embedding)
    assert np.array_equal(TI.sample(pipe, prompts, seed=1, sampling=SAMPLING), last)
    with pytest.raises(TI.InversionError, match="not a learned word"):
        TI.set_row(pipe, "diamond", inversion.initial)
