"""DALL·E and DALL·E mini: image tokens, the two networks and their losses, sampling, guidance, reranking,
bad input, training (resumed exactly), parameter budgets, and the benchmark of both generators."""

import json
from pathlib import Path
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from text2image import checkpoints, profiles, recipes
from text2image import text as T
from text2image.evaluate import benchmark as B
from text2image.models import autoencoders as ae
from text2image.models import clip as M
from text2image.models import dalle as D
from text2image.pipelines import dalle as P
from text2image.pipelines import real_dalle_mini as RD
from text2image.recipes import dalle as R
from text2image.train import Trainer
from text2image.world import splits
from text2image.world.render import render
from text2image.world.tensors import RESOLUTION, to_tensor, to_uint8

PROMPTS = ["a red circle", "a small blue square to the left of a green cross", "three yellow triangles"]
BUILDERS = {"dalle": D.build_dalle, "dalle-mini": D.build_dalle_mini}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """One throwaway book root for the module: the smoke tokenizer, CLIP and both models train once."""
    root = tmp_path_factory.mktemp("book")
    (root / "_quarto.yml").write_text("project:\n  type: book\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TEXT2IMAGE_ROOT", str(root))
        yield root


@pytest.fixture(scope="module")
def trained(project):
    """The two smoke models, trained by their recipes."""
    return {name: recipes.load_or_train(name, "smoke", progress=False) for name in R.NAMES}


@pytest.fixture(scope="module")
def vq(project):
    return R.tokenizer_model("smoke")


def tiny(name, seed=0, spread=None):
    """An untrained smoke-size model; ``spread``: redraw its matrices with this deviation, so that its outputs
    depend strongly on the caption (at the initial 0.02 the caption barely moves them)."""
    model = BUILDERS[name](D.SIZES["smoke"], 256, seed=seed).eval()
    if spread:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim >= 2:
                    p.copy_(torch.randn(p.shape, generator=generator) * spread)
    return model


def text_batch(prompts=PROMPTS):
    return P.encode_prompts(prompts)


# ----------------------------------------------------------------------------- image tokens

def test_image_tokens_are_cached_next_to_the_tokenizer_and_keyed_by_its_digest(project, vq):
    tokens = R.image_tokens("train", 64, "smoke")
    assert tokens["codes"].shape == (64, D.IMAGE_TOKENS) and tokens["codes"].dtype == torch.uint8
    assert tokens["text"].shape == (64, D.TEXT_LENGTH)
    folder = recipes.checkpoint_folder(R.TOKENIZER, "smoke") / R.TOKENS_DIR
    stored = sorted(folder.glob("train-64-*.safetensors"))
    assert len(stored) == 1 and (folder / ".gitignore").read_text().strip().endswith("*")
    # the weights digest of the tokenizer ignores the cache (it lives in a subfolder)
    digest = checkpoints.weights_digest(recipes.checkpoint_folder(R.TOKENIZER, "smoke"))
    assert digest == checkpoints.weights_digest(folder.parent)
    # the cached tokens are the tokenizer's codes of the split's images and the tokenizer's ids of its captions
    examples = splits.examples("train", 0, 5)
    images, _ = render([e.scene for e in examples], RESOLUTION)
    assert torch.equal(tokens["codes"][:5].long(), P.image_codes(vq, images))
    assert torch.equal(tokens["text"][:5].long(), T.encode([e.caption.text for e in examples])["input_ids"])
    # another tokenizer (another digest) tokenises again and replaces the stale file
    R._image_tokens("train", 64, "smoke", "another digest")
    again = sorted(folder.glob("train-64-*.safetensors"))
    assert len(again) == 1 and again != stored


def test_codes_decode_back_to_the_tokenizers_reconstruction(vq):
    examples = splits.examples("val", 0, 6)
    images, _ = render([e.scene for e in examples], RESOLUTION)
    codes = P.image_codes(vq, images)
    assert codes.shape == (6, 64) and int(codes.min()) >= 0 and int(codes.max()) < 256
    decoded = P.decode_codes(vq, codes)
    assert decoded.dtype == np.uint8 and decoded.shape == (6, 32, 32, 3)
    reconstruction = to_uint8(ae.reconstruct(vq, to_tensor(images)))
    assert np.abs(decoded.astype(int) - reconstruction.astype(int)).max() <= 1
    with pytest.raises(ValueError, match="shape"):
        P.decode_codes(vq, codes.view(6, 8, 8))


# ----------------------------------------------------------------------------- networks and losses

def test_layouts_shapes_and_the_decoder_start_token():
    bart, gpt = tiny("dalle-mini"), tiny("dalle")
    ids, mask = text_batch()
    codes = torch.randint(0, 256, (len(PROMPTS), 64))
    layout = D.BartLayout(256)
    assert bart.config.decoder_start_token_id == layout.start == 256  # the image vocabulary size, as dalle-mini
    assert bart.config.vocab_size == 257 + len(T.tokenizer())
    out = bart(input_ids=layout.text(ids), attention_mask=mask, labels=codes)
    assert out.logits.shape == (len(PROMPTS), 64, bart.config.vocab_size)
    glayout = D.GptLayout(256)
    stream = glayout.stream(ids, codes)
    assert stream.shape == (len(PROMPTS), D.TEXT_LENGTH + 64) == (3, 96)
    assert torch.equal(glayout.codes(stream), codes) and torch.equal(stream[:, :32], ids)
    assert gpt(input_ids=stream).logits.shape == (3, 96, len(T.tokenizer()) + 256)
    assert set(glayout.not_images()) == set(range(len(T.tokenizer())))
    assert set(layout.not_images()) == set(range(256, bart.config.vocab_size))
    with pytest.raises(ValueError, match="padded to 32"):
        glayout.stream(ids[:, :10], codes)


def _hand_losses(model, ids, codes):
    """The two parts of DALL·E's loss computed position by position."""
    stream = D.GptLayout(256).stream(ids, codes)
    logits = model(input_ids=stream).logits
    image, text = [], []
    for b in range(len(stream)):
        for t in range(1, stream.shape[1]):
            nll = -F.log_softmax(logits[b, t - 1], dim=-1)[stream[b, t]]
            if t >= D.TEXT_LENGTH:
                image.append(nll)
            elif stream[b, t] != T.tokenizer().pad_token_id:
                text.append(nll)
    return torch.stack(image).mean(), torch.stack(text).mean(), len(image), len(text)


def test_dalle_loss_weighs_the_text_part_as_configured_and_ignores_pads():
    model = tiny("dalle")
    ids, _ = text_batch()
    codes = torch.randint(0, 256, (3, 64))
    image, text, n_image, n_text = _hand_losses(model, ids, codes)
    assert n_image == 3 * 64 and n_text == int((ids[:, 1:] != T.tokenizer().pad_token_id).sum())
    for weight in (0.0, D.PAPER_TEXT_WEIGHT, 0.5):
        loss, parts = D.dalle_loss(model, ids, codes, text_weight=weight)
        torch.testing.assert_close(loss, (1 - weight) * image + weight * text)
        torch.testing.assert_close(parts["image"], image)
        torch.testing.assert_close(parts["text"], text)
    # with weight 0 the caption's own predictions get no gradient: only the image part trains
    loss, _ = D.dalle_loss(model, ids, codes, text_weight=0.0)
    logits = model(input_ids=D.GptLayout(256).stream(ids, codes)).logits
    logits.retain_grad()
    F.cross_entropy(logits[:, 31:95].reshape(-1, logits.shape[-1]), codes.reshape(-1) + len(T.tokenizer())).backward()
    assert logits.grad[:, :31].abs().max() == 0 and logits.grad[:, 31:95].abs().max() > 0
    with pytest.raises(ValueError, match="text_weight"):
        D.dalle_loss(model, ids, codes, text_weight=1.5)


def test_dalle_mini_loss_is_the_cross_entropy_of_the_codes_after_the_start_token():
    model = tiny("dalle-mini")
    ids, mask = text_batch()
    codes = torch.randint(0, 256, (3, 64))
    loss, _ = D.dalle_mini_loss(model, ids, mask, codes)
    decoder_in = torch.cat([torch.full((3, 1), 256), codes[:, :-1]], dim=1)
    logits = model(input_ids=D.BartLayout(256).text(ids), attention_mask=mask, decoder_input_ids=decoder_in).logits
    torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.reshape(-1)))


def test_both_models_have_the_same_parameters_within_10_percent_at_every_size():
    for profile in profiles.PROFILES:
        mini = D.parameters(D.build_dalle_mini(D.SIZES[profile], 256))
        dalle = D.parameters(D.build_dalle(D.SIZES[profile], 256))
        assert abs(dalle - mini) / mini <= 0.10, (profile, mini, dalle)
        if profile == "cpu":
            assert max(mini, dalle) * 2 < 10e6  # the shipped fp16 weights stay under 10 MB


# ----------------------------------------------------------------------------- sampling

@pytest.mark.parametrize("name", list(BUILDERS))
def test_generation_only_writes_image_codes(name):
    model = tiny(name)
    ids, mask = text_batch()
    ids, mask = ids.repeat(4, 1), mask.repeat(4, 1)
    # without the restriction an untrained model writes other tokens too: the test can fail
    kwargs = P.generate_kwargs(model, ids, mask, P.Sampling())
    kwargs["logits_processor"] = None
    torch.manual_seed(0)
    free = P.codes_of_output(model, model.generate(**kwargs))
    assert ((free < 0) | (free >= 256)).any()
    for sampling in (P.Sampling(), P.Sampling(guidance=3.0, top_k=20), P.Sampling(guidance=0.0, top_p=0.9)):
        torch.manual_seed(0)
        codes = P.sample_codes(model, ids, mask, sampling)
        assert codes.shape == (12, 64) and int(codes.min()) >= 0 and int(codes.max()) < 256


def _next_log_probs(model, ids, mask, decoder_ids):
    """Next-token log-probabilities of the conditional model, from a plain forward pass."""
    if isinstance(model, D.BartForConditionalGeneration):
        logits = model(input_ids=D.BartLayout(256).text(ids), attention_mask=mask, decoder_input_ids=decoder_ids).logits
    else:
        logits = model(input_ids=torch.cat([D.GptLayout(256).stream(ids), decoder_ids], dim=1)).logits
    return F.log_softmax(logits[:, -1], dim=-1)


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("scale", [1.0, 0.0, 4.0])
def test_guidance_mixes_conditional_and_unconditional_log_probabilities(name, scale):
    """The processed scores of the first three steps of generate() are uncond + s (cond - uncond) on the image
    codes (the conditional model itself at s = 1), with the key/value caches of both branches in use."""
    model = tiny(name, seed=1, spread=0.3)
    ids, mask = text_batch()
    null_ids, null_mask = P.null_captions(len(PROMPTS))
    kwargs = P.generate_kwargs(model, ids, mask, P.Sampling(guidance=scale))
    kwargs["generation_config"].max_new_tokens = 3
    torch.manual_seed(0)
    out = model.generate(**kwargs, output_scores=True, return_dict_in_generate=True)
    if isinstance(model, D.BartForConditionalGeneration):  # [start ; codes], codes are their own ids
        generated, start, image = out.sequences[:, 1:], torch.full((3, 1), 256), list(range(256))
    else:  # [caption ; codes], codes after the words
        generated, start = out.sequences[:, D.TEXT_LENGTH:], torch.zeros(3, 0, dtype=torch.long)
        image = list(range(len(T.tokenizer()), len(T.tokenizer()) + 256))
    assert len(out.scores) == 3
    for step, scores in enumerate(out.scores):
        decoder_ids = torch.cat([start, generated[:, :step]], dim=1)
        cond = _next_log_probs(model, ids, mask, decoder_ids)
        uncond = _next_log_probs(model, null_ids, null_mask, decoder_ids)
        expected = F.log_softmax((uncond + scale * (cond - uncond))[:, image], dim=-1)
        got = F.log_softmax(scores[:, image], dim=-1)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
        if scale != 1:  # the caption matters, so another scale would give other scores
            assert (got - F.log_softmax(cond[:, image], dim=-1)).abs().max() > 0.1
        others = torch.ones(scores.shape[1], dtype=torch.bool)
        others[image] = False
        assert torch.isinf(scores[:, others]).all()


@pytest.mark.parametrize("name", list(BUILDERS))
def test_guidance_scale_1_draws_what_the_conditional_model_draws(name):
    model = tiny(name, spread=0.3)
    ids, mask = text_batch()
    torch.manual_seed(3)
    plain = P.sample_codes(model, ids, mask, P.Sampling())
    kwargs = P.generate_kwargs(model, ids, mask, P.Sampling())
    assert "negative_prompt_ids" not in kwargs and len(kwargs["logits_processor"]) == 1
    torch.manual_seed(3)
    assert torch.equal(P.codes_of_output(model, model.generate(**kwargs)), plain)
    torch.manual_seed(3)
    assert not torch.equal(P.sample_codes(model, ids, mask, P.Sampling(guidance=3.0)), plain)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_sampling_is_reproducible_to_the_bit_for_a_seed(name):
    model = tiny(name)
    sampling = P.Sampling(temperature=0.8, top_k=50, guidance=2.0, candidates=2)
    a = P.seeded_codes(model, PROMPTS, 11, sampling)
    torch.manual_seed(999)  # whatever ran before
    b = P.seeded_codes(model, PROMPTS, 11, sampling)
    assert a.shape == (3, 2, 64) and torch.equal(a, b)
    assert not torch.equal(a, P.seeded_codes(model, PROMPTS, 12, sampling))
    assert not torch.equal(a[:, 0], a[:, 1])  # two candidates are two draws
    greedy = P.seeded_codes(model, PROMPTS, 5, P.Sampling(top_k=1))
    assert torch.equal(greedy, P.seeded_codes(model, PROMPTS, 6, P.Sampling(top_k=1)))  # top-1 is the argmax


def test_reranking_keeps_the_candidate_clip_scores_highest(project):
    clip = M.build(M.SIZES["smoke"]).eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 5, 32, 32, 3), dtype=np.uint8)
    best, scores, picks = P.rerank(clip, PROMPTS, images)
    for p, prompt in enumerate(PROMPTS):
        expected = M.similarity(clip, images[p], [prompt])[:, 0].numpy()
        np.testing.assert_allclose(scores[p], expected, atol=1e-5)
        assert picks[p] == expected.argmax() and np.array_equal(best[p], images[p, expected.argmax()])


def test_the_pipeline_reranks_its_candidates_with_clip(project, vq):
    clip = M.build(M.SIZES["smoke"]).eval()
    pipe = P.DallePipeline(tiny("dalle-mini"), vq, clip, P.Sampling(candidates=4))
    drawn = pipe.draw(PROMPTS, 0)
    assert drawn.images.shape == (3, 4, 32, 32, 3) and drawn.scores.shape == (3, 4)
    assert np.array_equal(drawn.picks, drawn.scores.argmax(axis=1))
    assert np.array_equal(pipe(PROMPTS, 0), drawn.best)
    assert np.array_equal(drawn.images.reshape(12, 32, 32, 3), P.decode_codes(vq, drawn.codes.flatten(0, 1)))


def test_bad_input_gets_one_clear_error_each(vq):
    pipe = P.DallePipeline(tiny("dalle"), vq)
    with pytest.raises(P.SamplingError, match="prompt 1 is empty"):
        pipe(["a red circle", "  "], 0)
    with pytest.raises(T.UnknownWordError, match="'purple'.*the vocabulary is: .*circle"):
        pipe(["a purple circle"], 0)
    with pytest.raises(P.SamplingError, match="guidance scale must be >= 0"):
        P.Sampling(guidance=-1)
    for temperature in (0, -0.5):
        with pytest.raises(P.SamplingError, match="temperature must be > 0"):
            P.Sampling(temperature=temperature)
    with pytest.raises(P.SamplingError, match="candidates per prompt must be an integer >= 1"):
        P.Sampling(candidates=0)
    with pytest.raises(P.SamplingError, match="needs a CLIP"):
        P.DallePipeline(tiny("dalle"), vq, None, P.Sampling(candidates=2))
    with pytest.raises(P.SamplingError, match="top_k"):
        P.Sampling(top_k=0)
    with pytest.raises(P.SamplingError, match="top_p"):
        P.Sampling(top_p=1.5)
    assert pipe([], 0).shape == (0, 32, 32, 3)


# ----------------------------------------------------------------------------- recipes and training

def test_both_recipes_share_data_steps_and_batch_and_state_the_caption_drop():
    for profile in profiles.PROFILES:
        a, b = R.CONFIGS["dalle"][profile], R.CONFIGS["dalle-mini"][profile]
        assert (a.steps, a.batch_size, a.lr, a.warmup) == (b.steps, b.batch_size, b.lr, b.warmup)
        assert a.extra["examples"] == b.extra["examples"] and a.extra["size"] == b.extra["size"]
        assert a.extra["drop_caption"] == b.extra["drop_caption"] == R.DROP_CAPTION > 0
        assert a.extra["text_weight"] == D.PAPER_TEXT_WEIGHT and "text_weight" not in b.extra
        assert recipes.get("dalle").base == recipes.get("dalle-mini").base == R.TOKENIZER


def test_the_text_loss_ablation_differs_from_dalle_by_its_text_weight_alone():
    for profile in profiles.PROFILES:
        paper, ablation = R.CONFIGS["dalle"][profile], R.CONFIGS["dalle-image-only"][profile]
        assert ablation.extra["text_weight"] == 0.0 and paper.extra["text_weight"] == D.PAPER_TEXT_WEIGHT
        assert replace(ablation, extra={**ablation.extra, "text_weight": paper.extra["text_weight"]}) == paper
    assert recipes.get("dalle-image-only").model_class is recipes.get("dalle").model_class
    assert "dalle-image-only" in B.GENERATORS


def test_batches_are_a_pure_function_of_the_step_and_drop_captions_at_the_stated_rate():
    n = 96
    tokens = {"codes": torch.randint(0, 256, (n, 64), dtype=torch.uint8),
              "text": T.encode([e.caption.text for e in splits.examples("train", 0, n)])["input_ids"].to(torch.uint8)}
    a, b = R.make_batch(tokens, 5, 16, 0.25), R.make_batch(tokens, 5, 16, 0.25)
    assert all(torch.equal(a[k], b[k]) for k in a)
    epoch = np.concatenate([R.batch_indices(s, 16, n) for s in range(6)])
    assert sorted(epoch.tolist()) == list(range(n))  # an epoch sees every example once
    assert not np.array_equal(R.batch_indices(6, 16, n), R.batch_indices(0, 16, n))  # then a new order
    null = P.null_captions(1)[0][0]
    dropped = [R.make_batch(tokens, s, 16, 0.25)["dropped"] for s in range(200)]
    assert abs(torch.cat(dropped).float().mean().item() - 0.25) < 0.03
    batch = R.make_batch(tokens, 7, 16, 0.25)
    assert all(torch.equal(row, null) for row in batch["text_ids"][batch["dropped"]])
    assert torch.equal(batch["text_mask"][batch["dropped"]].sum(1), torch.full((int(batch["dropped"].sum()),), 2))


@pytest.mark.parametrize("name", R.NAMES)
def test_an_interrupted_smoke_training_resumes_exactly(name, project):
    recipe = recipes.get(name)
    config = replace(recipe.config("smoke"), steps=6, checkpoint_every=3, eval_every=0)

    def run(folder, stop_at=None):
        model = recipe.build("smoke")
        loss_fn, batch_fn, _ = recipe.task(model, "smoke")

        def batches(step):
            if step == stop_at:
                raise KeyboardInterrupt
            return batch_fn(step)
        trainer = Trainer(model, loss_fn, batches, config, folder)
        trainer.fit(progress=False)
        return trainer

    straight = run(project / f"straight-{name}")
    with pytest.raises(KeyboardInterrupt):
        run(project / f"resumed-{name}", stop_at=4)  # stops after step 4, its state saved at step 4
    resumed = run(project / f"resumed-{name}")
    assert resumed.step == straight.step == 6
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert len(a) < len(torch.nn.Module.state_dict(straight.model))  # each tied tensor written once


def test_smoke_recipes_train_load_and_monitor_on_val(trained):
    for name, (model, manifest) in trained.items():
        assert isinstance(model, R.MODEL_CLASSES[name]) and manifest["steps"] == R.CONFIGS[name]["smoke"].steps
        assert manifest["base"]["name"] == R.TOKENIZER
        assert manifest["parameters"] == D.parameters(model)
        metrics = manifest["metrics"]
        assert 0.0 <= metrics["val_correct"] <= 1.0 and np.isfinite(metrics["val_image_loss"])
        assert ("val_text_loss" in metrics) == (name == "dalle")
        assert not any("test" in key for key in metrics)


# ----------------------------------------------------------------------------- the benchmark

def test_the_generators_output_passes_the_benchmarks_check(trained, project):
    for name in R.NAMES:
        pipe = R.pipeline(name, "smoke", P.Sampling(candidates=2, guidance=2.0))
        images = B.check_images(pipe(PROMPTS, 0), PROMPTS)
        assert images.shape == (3, 32, 32, 3)
        assert np.array_equal(images, pipe(PROMPTS, 0))


def test_a_smoke_benchmark_of_both_generators_is_cached_with_its_settings(trained, project, monkeypatch):
    results = {}
    for name in R.NAMES:
        folder = recipes.checkpoint_folder(name, "smoke")
        before = set(folder.glob("benchmark-*.json"))
        results[name] = result = B.benchmark_named(name, "smoke", progress=False)
        assert result["images"] == sum(np.prod(B.size(g.name, "smoke")) for g in B.GROUPS)
        assert set(result["categories"]) and 0 <= result["overall"]["p"] <= 1 and "frechet" in result
        assert len(set(folder.glob("benchmark-*.json")) - before) == 1
    # a second call reads the cache: no model is built
    monkeypatch.setattr(R, "pipeline", lambda *a, **k: pytest.fail("the cached benchmark rebuilt its model"))
    for name in R.NAMES:
        assert B.benchmark_named(name, "smoke", progress=False) == json.loads(json.dumps(results[name]))
    # a variant is another entry, keyed by its settings
    gen = R.generator("dalle", "smoke", P.Sampling(guidance=3.0))
    assert gen.settings["sampling"]["guidance"] == 3.0 and gen.cache_folder == recipes.checkpoint_folder("dalle", "smoke")


def test_a_failed_call_caches_nothing(trained, project, vq):
    pipe = P.DallePipeline(trained["dalle"][0], vq)
    folder = recipes.checkpoint_folder("dalle", "smoke")
    before = set(folder.glob("benchmark-*.json"))
    with pytest.raises(T.UnknownWordError):
        B.benchmark(lambda prompts, seed: pipe([*prompts[:-1], "a purple circle"], seed), "smoke", folder,
                    {"failing": True}, progress=False, frechet=False)
    assert set(folder.glob("benchmark-*.json")) == before


def test_sample_grids_carry_clip_picks_and_oracle_verdicts(trained, project):
    drawn, judged = R.candidates_with_verdicts("dalle-mini", PROMPTS[:2], "smoke", P.Sampling(candidates=3))
    assert drawn.images.shape == (2, 3, 32, 32, 3) and len(judged) == 2 and all(len(v) == 3 for v in judged)
    assert judged[1][0].prompt.relation is not None
    example = R.tokenised_example("train", 0, "smoke")
    assert example["codes"].shape == (8, 8) and example["decoded"].shape == example["image"].shape == (32, 32, 3)
    assert example["caption"] == splits.example("train", 0).caption.text


def test_sweeps_benchmark_one_knob_at_a_time(trained, project):
    results = R.sweep("dalle-mini", "candidates", (1, 2), "smoke", progress=False)
    assert [value for value, _ in results] == [1, 2]
    folder = recipes.checkpoint_folder("dalle-mini", "smoke")
    keys = {json.loads(p.read_text())["key"] for p in folder.glob("benchmark-*.json")}
    assert len(keys) >= 2
    diversity = R.diversity("dalle-mini", "smoke", prompts=2, samples=3)
    assert 0 <= diversity["codes_differ"] <= 1 and 0 < diversity["distinct"] <= 1
    assert 0 <= diversity["pixels_differ"] <= 1
    greedy = R.diversity("dalle-mini", "smoke", P.Sampling(top_k=1), prompts=2, samples=3)
    assert greedy["codes_differ"] == greedy["pixels_differ"] == 0 and greedy["distinct"] == 1 / 3
    assert R.diversity("dalle-mini", "smoke", prompts=2, samples=3) == diversity  # cached


def test_the_rerank_curve_picks_by_each_judge_among_the_first_n_candidates(trained, project):
    part = {"groups": ("pair",), "repeats": 1}
    curve = R.rerank_curve("dalle-mini", "smoke", judges=("clip",), candidates=(1, 3), part=part, progress=False)
    assert curve["candidates"] == [1, 3] and set(curve["curves"]) == {"clip", R.ORACLE_PICK}
    prompts = B.size("pair", "smoke")[0]
    for judge, points in curve["curves"].items():
        assert [p["images"] for p in points] == [prompts, prompts]
    clip_1, clip_3 = (p["categories"]["two_objects"]["k"] for p in curve["curves"]["clip"])
    oracle_1, oracle_3 = (p["categories"]["two_objects"]["k"] for p in curve["curves"][R.ORACLE_PICK])
    assert oracle_1 == clip_1   # one candidate: nothing to choose
    assert oracle_3 >= max(oracle_1, clip_3)  # a judge never beats the ceiling, and more candidates never hurt it
    assert R.rerank_curve("dalle-mini", "smoke", judges=("clip",), candidates=(1, 3), part=part,
                          progress=False) == curve  # cached


def test_shipped_checkpoints_reproduce_their_manifest(monkeypatch):
    """Every shipped DALL·E checkpoint (none until they are trained) loads and gives back its val losses."""
    monkeypatch.setenv("TEXT2IMAGE_ROOT", str(Path(__file__).resolve().parents[1]))
    for name in R.NAMES:
        folder = checkpoints.checkpoint_dir(name)
        if not (folder / checkpoints.MANIFEST).is_file():
            continue
        model, manifest = recipes.load_or_train(name, "cpu", progress=False)
        assert manifest["profile"] == "cpu" and D.parameters(model) == manifest["parameters"]
        assert checkpoints.weights_digest(folder) and sum(f.stat().st_size for f in folder.glob("*.safetensors")) < 10e6
        val = R.image_tokens("val", profiles.pick(R.VAL_EXAMPLES, "cpu"), "cpu")  # the manifest's validation set
        measured = R.token_losses(model, val)  # on the fp16-rounded weights: close, not equal
        assert measured["val_image_loss"] == pytest.approx(manifest["metrics"]["val_image_loss"], abs=0.02)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_the_cache_changes_the_speed_not_the_codes(name):
    model = tiny(name, spread=0.3)
    for sampling in (P.Sampling(), P.Sampling(guidance=2.0)):
        cached = P.seeded_codes(model, PROMPTS, 4, sampling)
        assert torch.equal(cached, P.seeded_codes(model, PROMPTS, 4, sampling, use_cache=False))


def test_speed_splits_the_time_of_a_call(trained, project):
    measured = R.speed("dalle", "smoke", P.Sampling(candidates=2), prompts=3)
    assert measured["images_per_second"] > 0 and measured["sequences_per_second"] > 0
    assert min(measured["codes_seconds"], measured["decode_seconds"], measured["rerank_seconds"]) > 0
    assert R.speed("dalle", "smoke", P.Sampling(candidates=2), prompts=3) == measured  # one measurement, cached
    assert R.speed("dalle", "smoke", P.Sampling(candidates=2), prompts=3, cached=False) != measured


# ----------------------------------------------------------------------------- the real weights path (min-dalle)

TINY_MIN_DALLE = dict(layers=1, heads=2, d_model=16, glu=32, text_vocab=40, image_vocab=RD.VQGAN_CODES)


@pytest.fixture(scope="module")
def min_dalle_folder(tmp_path_factory):
    """A tiny random dalle-mini saved as min-dalle ships it (pickled BART halves, BPE files), the VQGAN at its
    one fixed size as safetensors."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("min-dalle")
    words = ["Ġ" + w for w in ("a", "red", "circle", "blue", "square")] + list("abcdeilqrsuĠ")
    vocab = {token: i for i, token in enumerate(["<s>", "<pad>", "</s>", "<unk>", *dict.fromkeys(words)])}
    (folder / "vocab_mini.json").write_text(json.dumps(vocab))
    (folder / "merges_mini.txt").write_text("#version: 0.2\nĠ r\nĠr e\nĠre d\n")
    torch.manual_seed(0)
    encoder, decoder, detokenizer = RD.build(dict(TINY_MIN_DALLE, text_vocab=len(vocab)))
    torch.save(encoder.state_dict(), folder / "encoder_mini.pt")
    torch.save(decoder.state_dict(), folder / "decoder_mini.pt")
    (folder / "vqgan").mkdir()
    save_file({k: v.contiguous() for k, v in detokenizer.state_dict().items()}, str(folder / "vqgan/detoker.safetensors"))
    return folder, dict(TINY_MIN_DALLE, text_vocab=len(vocab))


def test_the_real_dalle_mini_refuses_pickles_and_never_downloads_unasked(min_dalle_folder, tmp_path, monkeypatch):
    folder, sizes = min_dalle_folder
    monkeypatch.setattr(RD, "download", lambda *a, **k: pytest.fail("downloaded without being asked"))
    with pytest.raises(RD.WeightsUnavailable, match="pickles .*encoder_mini.pt.*never loaded.*convert"):
        RD.load(folder, sizes=sizes)
    with pytest.raises(RD.WeightsUnavailable, match="downloading was not allowed.*allow_download=True"):
        RD.load(tmp_path, sizes=sizes)
    assert not RD.available(tmp_path)


def test_the_real_dalle_mini_runs_a_tiny_random_model_saved_locally(min_dalle_folder):
    folder, sizes = min_dalle_folder
    written = RD.convert(folder)
    assert {p.name for p in written} == {"encoder.safetensors", "decoder.safetensors", "vocab.json", "merges.txt"}
    grad, threads = torch.is_grad_enabled(), torch.get_num_threads()
    model = RD.load(folder, sizes=sizes, device="cpu")
    assert (torch.is_grad_enabled(), torch.get_num_threads()) == (grad, threads)  # min-dalle's import undone
    vocab = json.loads((folder / "dalle_bart_mini/vocab.json").read_text())
    tokens = model.tokens("a red circle")  # BART's BPE: [BOS], the merged "Ġred", the letters of the rest, [EOS]
    assert tokens[0] == vocab["<s>"] and tokens[-1] == vocab["</s>"] and vocab["Ġred"] in tokens
    sampling = P.Sampling(top_k=64, guidance=4.0, candidates=2)
    codes = model.codes("a red circle", 3, sampling)
    assert codes.shape == (2, RD.IMAGE_TOKENS) and int(codes.min()) >= 0 and int(codes.max()) < RD.VQGAN_CODES
    assert torch.equal(codes, model.codes("a red circle", 3, sampling))
    assert not torch.equal(codes, model.codes("a red circle", 4, sampling))
    image = model.decode(codes[:1])
    assert image.shape == (1, RD.IMAGE_SIZE, RD.IMAGE_SIZE, 3) and image.dtype == np.uint8
    best, scores, pick = RD.rerank_with(lambda im, t: np.array([[0.1], [0.7], [0.3]]), "a red circle",
                                        np.stack([image[0]] * 3))
    assert pick == 1 and scores.shape == (3,)
    with pytest.raises(P.SamplingError, match="empty"):
        model.codes(" ", 0)


def test_the_published_sizes_are_dalle_minis():
    sizes = RD.published_parameters("mini")
    assert RD.PUBLISHED["mini"]["layers"] == 12 and RD.PUBLISHED["mini"]["d_model"] == 1024
    assert 0.40e9 < sizes["encoder"] + sizes["decoder"] < 0.47e9  # "0.4B parameters"
    assert 40e6 < sizes["vqgan"] < 50e6
    assert 2.5e9 < RD.published_parameters("mega")["total"] < 2.7e9  # DALL·E mega: 2.6B
