"""GANs, DDPM and flow matching (issue 17): the schedulers' forward processes against their closed forms, the
GAN's two-player loop, guidance, samplers, bad input, the pipelines' determinism, smoke training of each
recipe (resumed exactly), parameter budgets, and the benchmark, sweeps and throughput of the generators."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from text2image import checkpoints, profiles, recipes
from text2image import text as T
from text2image.evaluate import benchmark as B
from text2image.models import diffusion as D
from text2image.models import gan as G
from text2image.pipelines import diffusion as P
from text2image.pipelines.gan import GanPipeline
from text2image.recipes import generative as R
from text2image.world import splits

PROMPTS = ["a red circle", "a small blue square to the left of a green cross", "three yellow triangles"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """One throwaway book root for the module: the four smoke recipes train once."""
    root = tmp_path_factory.mktemp("book")
    (root / "_quarto.yml").write_text("project:\n  type: book\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TEXT2IMAGE_ROOT", str(root))
        yield root


@pytest.fixture(scope="module")
def trained(project):
    return {name: recipes.load_or_train(name, "smoke", progress=False) for name in R.NAMES}


def tiny_denoiser(seed=0, spread=None):
    """An untrained smoke-size denoiser; ``spread`` redraws its matrices so that the caption moves its output."""
    model = D.build(D.SIZES["smoke"], seed=seed).eval()
    if spread:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim >= 2:
                    p.copy_(torch.randn(p.shape, generator=generator) * spread)
    return model


# ----------------------------------------------------------------------------- forward processes

def test_ddpm_forward_process_is_the_closed_form():
    scheduler = D.ddpm_scheduler()
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    alpha_bar = np.cumprod(1 - betas)
    np.testing.assert_allclose(D.alpha_bar(scheduler).double().numpy(), alpha_bar, rtol=1e-5)
    x0, noise = torch.rand(5, 3, 32, 32) * 2 - 1, torch.randn(5, 3, 32, 32)
    t = torch.tensor([0, 10, 250, 600, 999])
    expected = (np.sqrt(alpha_bar[t.numpy()])[:, None, None, None] * x0.double().numpy()
                + np.sqrt(1 - alpha_bar[t.numpy()])[:, None, None, None] * noise.double().numpy())
    np.testing.assert_allclose(scheduler.add_noise(x0, noise, t).double().numpy(), expected, atol=1e-5)
    x_t, timestep, target = D.noised("epsilon", scheduler, x0, noise, t)
    assert torch.equal(timestep, t) and torch.equal(target, noise) and torch.allclose(x_t, scheduler.add_noise(x0, noise, t))
    snr = D.snr_ddpm(scheduler)
    assert (snr[1:] < snr[:-1]).all() and snr[0] > 1e3 and snr[-1] < 1e-4  # from almost all signal to almost none


def test_flow_matching_forward_process_is_the_straight_line():
    scheduler = D.flow_scheduler()
    assert torch.allclose(scheduler.sigmas, scheduler.timesteps / 1000)
    assert float(scheduler.sigmas.max()) == 1.0 and abs(float(scheduler.sigmas.min()) - 0.001) < 1e-6
    x0, noise = torch.rand(4, 3, 32, 32) * 2 - 1, torch.randn(4, 3, 32, 32)
    index = torch.tensor([0, 1, 500, 999])
    x_t, timestep, target = D.noised("velocity", scheduler, x0, noise, index)
    s = (timestep / 1000)[:, None, None, None]
    torch.testing.assert_close(x_t, (1 - s) * x0 + s * noise)
    torch.testing.assert_close(target, noise - x0)  # d x_s / d s
    assert torch.allclose(scheduler.scale_noise(x0, timestep, noise), x_t)
    # one exact Euler step along the true velocity lands on the line
    sampler = P.scheduler_for("euler")
    sampler.set_timesteps(4)
    t0 = sampler.timesteps[0]
    start = (1 - t0 / 1000) * x0 + t0 / 1000 * noise
    moved = sampler.step(noise - x0, t0, start).prev_sample
    s1 = sampler.sigmas[1]
    torch.testing.assert_close(moved, (1 - s1) * x0 + s1 * noise, atol=1e-5, rtol=1e-5)


def test_samplers_start_from_pure_noise_and_refuse_the_wrong_objective():
    for sampler in ("ddpm", "ddim"):
        s = P.scheduler_for(sampler)
        s.set_timesteps(10)
        assert int(s.timesteps[0]) == 999 and len(s.timesteps) == 10  # trailing: the first step is at t = 999
    euler = P.scheduler_for("euler")
    euler.set_timesteps(10)
    assert float(euler.timesteps[0]) == 1000 and float(euler.sigmas[-1]) == 0
    with pytest.raises(P.SamplingError, match="velocity samples with euler, not ddim"):
        P.Sampling(sampler="ddim").for_objective("velocity")
    with pytest.raises(P.SamplingError, match="noise samples with ddpm or ddim, not euler"):
        P.Sampling(sampler="euler").for_objective("epsilon")
    assert P.Sampling().for_objective("epsilon").sampler == "ddim"
    assert P.Sampling().for_objective("velocity").sampler == "euler"


# ----------------------------------------------------------------------------- guidance

def test_guidance_scale_1_is_the_conditional_model_and_0_the_unconditional_one():
    model = tiny_denoiser(spread=0.2)
    ids, mask = P.encode_prompts(PROMPTS)
    null = T.empty_caption(3)
    with torch.no_grad():
        states, _ = model.text(ids, mask)
        null_states, _ = model.text(null["input_ids"], null["attention_mask"])
        x, t = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3)), torch.tensor(500)
        cond = model.predict(x, t, states, mask)
        uncond = model.predict(x, t, null_states, null["attention_mask"])
        assert (cond - uncond).abs().max() > 1e-3  # the caption matters, so the test can fail
        one = P.guided_prediction(model, x, t, states, mask, null_states, null["attention_mask"], 1.0)
        assert torch.equal(one, cond)  # one forward pass of the conditional model, nothing mixed in
        for scale in (0.0, 1.0 + 1e-12, 4.0):  # the two-branch path, in one batch of prompts and empty captions
            mixed = P.guided_prediction(model, x, t, states, mask, null_states, null["attention_mask"], scale)
            # one batched pass rounds unlike two passes (by CPU kernel) and the mix multiplies that by the scale;
            # a wrong mix is off by ~1e-3 times the scale
            torch.testing.assert_close(mixed, uncond + scale * (cond - uncond), atol=1e-5 * max(1.0, scale),
                                       rtol=1e-4)
    # sampling at scale 1 draws what a loop on the conditional model alone draws
    sampling = P.Sampling(sampler="ddim", steps=3, guidance=1.0)
    images, _ = P.sample(model, "epsilon", PROMPTS, 5, sampling)
    generator = torch.Generator().manual_seed(5)
    x = torch.randn((3, 3, 32, 32), generator=generator)
    scheduler = P.scheduler_for("ddim")
    scheduler.set_timesteps(3)
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(model.predict(x, t, states, mask), t, x).prev_sample
    assert torch.equal(images, x)
    guided, _ = P.sample(model, "epsilon", PROMPTS, 5, sampling.but(guidance=3.0))
    assert not torch.equal(guided, images)


# ----------------------------------------------------------------------------- bad input

def test_bad_input_gets_one_clear_error_each():
    pipe = P.DiffusionPipeline(tiny_denoiser(), "velocity", P.Sampling(steps=2))
    with pytest.raises(T.UnknownWordError, match="'purple'.*the vocabulary is: .*circle"):
        pipe(["a purple circle"], 0)
    with pytest.raises(P.SamplingError, match="prompt 1 is empty"):
        pipe(["a red circle", "  "], 0)
    with pytest.raises(P.SamplingError, match="prompt 0 is empty"):
        GanPipeline(G.build_generator(G.SIZES["smoke"]))([""], 0)
    for steps in (0, -3, 2.5, True):
        with pytest.raises(P.SamplingError, match="sampling steps must be an integer >= 1"):
            P.Sampling(steps=steps)
    for guidance in (-0.5, -1, float("nan")):
        with pytest.raises(P.SamplingError, match="guidance scale must be >= 0"):
            P.Sampling(guidance=guidance)
    with pytest.raises(P.SamplingError, match="unknown sampler 'heun'"):
        P.Sampling(sampler="heun")
    with pytest.raises(P.SamplingError, match="one pass: it has no sampler"):
        R.sampling_of("gan", P.Sampling(steps=5))
    with pytest.raises(P.SamplingError, match="list of prompts"):
        pipe("a red circle", 0)
    with pytest.raises(KeyError, match="no generator of this chapter named 'vae'"):
        R.pipeline("vae", "smoke")
    assert pipe([], 0).shape == (0, 32, 32, 3)
    # one line each
    for message in (str(P.SamplingError("x")),):
        assert "\n" not in message


# ----------------------------------------------------------------------------- determinism

@pytest.mark.parametrize("sampler,objective", [("ddpm", "epsilon"), ("ddim", "epsilon"), ("euler", "velocity")])
def test_the_diffusion_pipeline_is_reproducible_to_the_bit_for_a_seed(sampler, objective):
    pipe = P.DiffusionPipeline(tiny_denoiser(spread=0.05), objective, P.Sampling(sampler=sampler, steps=3))
    a = pipe(PROMPTS, 7)
    torch.manual_seed(999)  # whatever ran before
    torch.randn(10)
    b = pipe(PROMPTS, 7)
    assert a.dtype == np.uint8 and a.shape == (3, 32, 32, 3) and np.array_equal(a, b)
    assert not np.array_equal(a, pipe(PROMPTS, 8))


def test_the_gan_pipeline_is_reproducible_and_batch_independent():
    pipe = GanPipeline(G.build_generator(G.SIZES["smoke"]))
    a = pipe(PROMPTS, 3)
    torch.manual_seed(123)  # the global generator moved; the pipeline does not read it
    assert np.array_equal(a, pipe(PROMPTS, 3)) and not np.array_equal(a, pipe(PROMPTS, 4))
    ids, mask = P.encode_prompts(PROMPTS)
    z = torch.randn(3, pipe.generator.z_dim)
    with torch.no_grad():  # in evaluation mode an image does not depend on the rest of its batch
        torch.testing.assert_close(pipe.generator(z, ids, mask)[:1], pipe.generator(z[:1], ids[:1], mask[:1]))


# ----------------------------------------------------------------------------- the GAN's loop

def test_each_phase_of_the_gan_step_moves_one_player_only():
    pair = G.build_pair(G.SIZES["smoke"]).train()
    batch = R.make_batch(0, 6)
    loss, parts = R.gan_loss(pair, ("discriminator", *batch))
    loss.backward()
    assert all(p.grad is None for p in pair.generator.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in pair.discriminator.parameters())
    assert 0 <= parts["d_real"] <= 1 and 0 <= parts["d_fake"] <= 1
    pair.zero_grad(set_to_none=True)
    loss, _ = R.gan_loss(pair, ("generator", *batch))
    loss.backward()
    assert all(p.grad is None for p in pair.discriminator.parameters())
    assert all(p.requires_grad for p in pair.discriminator.parameters())  # unfrozen after the turn
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in pair.generator.parameters())
    with pytest.raises(ValueError, match="'discriminator' and a 'generator' phase"):
        R.gan_loss(pair, ("both", *batch))


def test_the_losses_are_those_of_the_papers():
    real, wrong, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 0.0]), torch.tensor([-3.0, 1.0])
    sig = torch.sigmoid
    expected = -torch.log(sig(real)).mean() - 0.5 * (torch.log(1 - sig(wrong)).mean() + torch.log(1 - sig(fake)).mean())
    torch.testing.assert_close(G.discriminator_loss(real, wrong, fake), expected)
    torch.testing.assert_close(G.generator_loss(fake), -torch.log(sig(fake)).mean())
    ids, mask = P.encode_prompts(PROMPTS)
    wrong_ids, _ = G.mismatched(ids, mask)
    assert torch.equal(wrong_ids[1], ids[0])


def test_spectral_norm_takes_the_place_of_batch_norm_in_the_discriminator_only():
    plain, normed = G.build_pair(G.SIZES["smoke"]), G.build_pair(G.SIZES["smoke"], spectral_norm=True)
    batch_norms = lambda m: sum(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())  # noqa: E731
    assert batch_norms(plain.discriminator) > 0 and batch_norms(normed.discriminator) == 0
    assert batch_norms(plain.generator) == batch_norms(normed.generator) > 0
    normed.eval()
    conv = normed.discriminator.image[0]
    sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
    assert abs(float(sigma) - 1) < 0.1  # weights divided by their largest singular value (power iteration)


# ----------------------------------------------------------------------------- budgets and recipes

def test_the_three_families_have_the_same_parameters_within_10_percent_at_every_size():
    for profile in profiles.PROFILES:
        denoiser = D.parameters(D.build(D.SIZES[profile]))
        generator = G.parameters(G.build_generator(G.SIZES[profile]))
        assert abs(generator - denoiser) / denoiser <= 0.10, (profile, denoiser, generator)
        if profile == "cpu":
            assert max(denoiser, generator) * 2 < 10e6  # the shipped fp16 weights stay under 10 MB


def test_ddpm_and_flow_matching_share_data_steps_batch_and_network():
    for profile in profiles.PROFILES:
        a, b = R.CONFIGS["ddpm"][profile], R.CONFIGS["flow-matching"][profile]
        assert (a.steps, a.batch_size, a.lr, a.warmup, a.extra["size"]) == (b.steps, b.batch_size, b.lr, b.warmup,
                                                                             b.extra["size"])
        assert a.extra["objective"] == "epsilon" and b.extra["objective"] == "velocity"
        assert a.extra["drop_caption"] == b.extra["drop_caption"] == R.DROP_CAPTION > 0
        g, s = R.CONFIGS["gan"][profile], R.CONFIGS["gan-sn"][profile]
        assert replace(g, extra={}) == replace(s, extra={}) and not g.extra["spectral_norm"] and s.extra["spectral_norm"]
    assert recipes.get("gan").trainer is R.GanTrainer and recipes.get("ddpm").trainer is None


def test_batches_are_a_pure_function_of_the_step_and_drop_captions_at_the_stated_rate():
    a, b = R.make_batch(3, 8, 0.25), R.make_batch(3, 8, 0.25)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    images, ids, mask = a
    assert images.shape == (8, 3, 32, 32) and ids.shape == mask.shape == (8, T.MAX_LENGTH)
    examples = splits.examples("train", 24, 32)
    null = T.empty_caption(1)["input_ids"][0]
    kept = [k for k in range(8) if not torch.equal(ids[k], null)]
    assert all(torch.equal(ids[k], T.encode([examples[k].caption.text])["input_ids"][0]) for k in kept)
    dropped = sum(int(torch.equal(row, null)) for s in range(100) for row in R.make_batch(s, 8, 0.25)[1])
    assert abs(dropped / 800 - 0.25) < 0.05
    assert not any(torch.equal(row, null) for row in R.make_batch(3, 8)[1])  # the GAN keeps every caption


@pytest.mark.parametrize("name", ["gan-sn", "flow-matching"])
def test_an_interrupted_smoke_training_resumes_exactly(name, project):
    recipe = recipes.get(name)
    config = replace(recipe.config("smoke"), steps=5, checkpoint_every=2, eval_every=0)

    def run(folder, stop_at=None):
        model = recipe.build("smoke")
        loss_fn, batch_fn, _ = recipe.task(model, "smoke")

        def batches(step):
            if step == stop_at:
                raise KeyboardInterrupt
            return batch_fn(step)
        trainer = (recipe.trainer or R.Trainer)(model, loss_fn, batches, config, folder)
        trainer.fit(progress=False)
        return trainer

    straight = run(project / f"straight-{name}")
    with pytest.raises(KeyboardInterrupt):
        run(project / f"resumed-{name}", stop_at=3)
    resumed = run(project / f"resumed-{name}")
    assert resumed.step == straight.step == 5
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_smoke_recipes_train_load_and_monitor_on_val(trained):
    for name, (model, manifest) in trained.items():
        assert isinstance(model, G.Generator if name in R.GANS else D.PixelDenoiser), name
        assert manifest["steps"] == R.CONFIGS[name]["smoke"].steps
        assert manifest["parameters"] == sum(p.numel() for p in model.parameters())
        metrics = manifest["metrics"]
        assert 0 <= metrics["val_correct"] <= 1 and metrics["val_diversity"] >= 0
        assert ("val_loss" in metrics) == (name in R.DIFFUSION)
        assert not any("test" in key for key in metrics)
        log, _ = R.history(name, "smoke")
        assert log and (("d_loss" in log[0] and "g_loss" in log[0]) == (name in R.GANS))


# ----------------------------------------------------------------------------- benchmark, sweeps, diversity

def test_every_generator_is_registered_and_a_smoke_benchmark_is_cached(trained, project, monkeypatch):
    for name in R.NAMES:
        assert B.generator(name, "smoke").settings["model"] == name
    result = R.benchmark("flow-matching", "smoke", progress=False)
    assert result["images"] == sum(np.prod(B.size(g.name, "smoke")) for g in B.GROUPS) and "frechet" in result
    monkeypatch.setattr(R, "pipeline", lambda *a, **k: pytest.fail("the cached benchmark rebuilt its model"))
    assert R.benchmark("flow-matching", "smoke", progress=False) == json.loads(json.dumps(result))
    assert B.benchmark_named("flow-matching", "smoke", progress=False) == json.loads(json.dumps(result))


def test_sweeps_and_diversity_are_cached_per_setting(trained, project):
    folder = recipes.checkpoint_folder("ddpm", "smoke")
    before = set(folder.glob("benchmark-*.json"))
    steps = R.steps_sweep("ddpm", "ddpm", (1, 2), "smoke")
    assert [n for n, _ in steps] == [1, 2] and all(set(r["categories"]) for _, r in steps)
    assert all(r["images_per_second"] > 0 and r["groups"] == sorted(B.CATEGORY_GROUPS) for _, r in steps)
    assert all(r["images"] == sum(B.size(g, "smoke")[0] for g in B.CATEGORY_GROUPS) for _, r in steps)  # one each
    guided = R.guidance_sweep("flow-matching", (0.0, 2.0), "smoke")
    assert [s for s, _ in guided] == [0.0, 2.0]
    assert len(set(folder.glob("benchmark-*.json")) - before) == 2  # one cached part per setting
    for name in ("gan", "ddpm"):
        found = R.diversity(name, "smoke", prompts=3, samples=3)
        assert found["relative"] >= 0 and found["lo"] <= found["relative"] <= found["hi"]
        assert found["collapsed"]["n"] == 3
    steps_, levels, images = R.trajectory("ddpm", "a red circle", P.Sampling(sampler="ddpm", steps=4), "smoke",
                                          shown=3)
    assert steps_ == [0, 2, 4] and len(images) == 3 and images[0].shape == (32, 32, 3) and levels[-1] == 0


def test_the_throughput_command_compares_the_recipe_with_a_bare_loop(trained, project, monkeypatch):
    for name in ("gan", "ddpm"):
        measured = R.throughput(name, "smoke", steps=2, warmup=1)
        assert measured["recipe_seconds"] > 0 and measured["bare_seconds"] > 0
        assert measured["ratio"] == pytest.approx(measured["recipe_seconds"] / measured["bare_seconds"])
    # the two loops take turns: a load that comes and goes weighs on both
    order, bare = [], R._bare_steps
    monkeypatch.setattr(R.Trainer, "fit", lambda self, *a, fit=R.Trainer.fit, **k: (order.append("recipe"),
                                                                                  fit(self, *a, **k))[1])
    monkeypatch.setattr(R, "_bare_steps", lambda *a: (order.append("bare"), bare(*a))[1])
    R.throughput("ddpm", "smoke", steps=2, warmup=1, rounds=3)
    assert order == ["recipe", "bare"] * 3


def test_shipped_checkpoints_reproduce_their_manifest(monkeypatch):
    """Every shipped checkpoint of the chapter (none until they are trained) loads, stays under 10 MB, and
    gives back its validation measure: the denoisers' val_loss, the GANs' share of correct validation images."""
    monkeypatch.setenv("TEXT2IMAGE_ROOT", str(Path(__file__).resolve().parents[1]))
    for name in R.NAMES:
        folder = checkpoints.checkpoint_dir(name)
        if not (folder / checkpoints.MANIFEST).is_file():
            continue
        model, manifest = recipes.load_or_train(name, "cpu", progress=False)
        assert sum(f.stat().st_size for f in folder.glob("*.safetensors")) < 10e6
        metrics = manifest["metrics"]
        if name in R.DIFFUSION:
            measured = R.val_loss(model, R.DIFFUSION[name], profiles.pick(R.VAL_LOSS_IMAGES, "cpu"))
            assert measured == pytest.approx(metrics["val_loss"], rel=0.02)
        else:
            measured = R.val_scores(GanPipeline(model), "cpu")["val_correct"]
            assert measured == pytest.approx(metrics["val_correct"], abs=0.05)


def test_the_one_step_estimate_inverts_each_forward_process_and_scales_errors_as_the_chapter_says():
    # the true noise (DDPM) or velocity (flow matching) gives back the image; an error d on the prediction
    # moves the estimate by sqrt((1 - abar) / abar) d for DDPM (1 / sqrt(SNR)) and by s d for flow matching
    x0 = torch.rand(3, 3, 8, 8) - 0.5
    noise = torch.randn(3, 3, 8, 8)
    index = torch.tensor([10, 500, 990])
    d = 1e-3 * torch.randn(3, 3, 8, 8)
    for objective in ("epsilon", "velocity"):
        scheduler = D.training_scheduler(objective)
        x_t, timestep, target = D.noised(objective, scheduler, x0, noise, index)

        def predicting(value):
            class Fixed(torch.nn.Module):
                def forward(self, x, t, ids, mask):
                    return value
            return Fixed()

        exact = R.image_estimate(predicting(target), objective, scheduler, x_t, index, timestep, None, None)
        assert torch.allclose(exact, x0, atol=1e-4), objective
        off = R.image_estimate(predicting(target + d), objective, scheduler, x_t, index, timestep, None, None)
        if objective == "epsilon":
            a = scheduler.alphas_cumprod[index]
            gain, snr = ((1 - a) / a).sqrt(), a / (1 - a)
        else:
            gain = scheduler.sigmas[index]
            snr = ((1 - gain) / gain) ** 2
        assert torch.allclose(off - x0, -gain.view(-1, 1, 1, 1) * d, atol=1e-4), objective
        assert int(gain.argmax()) == int(snr.argmin())  # the noisier, the larger the gain


def test_snr_levels_map_to_the_closest_index_of_each_schedule():
    ddpm, flow = D.training_scheduler("epsilon"), D.training_scheduler("velocity")
    assert R._index_at_snr("epsilon", ddpm, 0.0) == int(torch.argmin((D.snr_ddpm(ddpm) - 1).abs()))
    k = R._index_at_snr("velocity", flow, 0.0)
    assert abs(float(flow.sigmas[k]) - 0.5) < 2e-3  # SNR 1 is halfway along the straight line
    assert R._index_at_snr("epsilon", ddpm, -4.0) > R._index_at_snr("epsilon", ddpm, 2.0)  # noisier: later t
