"""Text-guided latent diffusion (issue 18): the two denoisers at the same budget, the frozen CLIP text encoder, the
``DiffusionPipeline`` subclass (bit-for-bit round trip, scheduler swap, guidance, determinism, the same images as a
bare loop), bad input, the latents cache, smoke training of each recipe (resumed exactly), the pipeline folder as a
checkpoint (corrupted: one error naming the file), the benchmark, sweeps and throughput, and the real Stable
Diffusion path on a tiny random pipeline saved here."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

from text2image import checkpoints, pretrained, profiles, recipes
from text2image import text as T
from text2image.evaluate import benchmark as B
from text2image.models import autoencoders as A
from text2image.models import clip as C
from text2image.models import latent as L
from text2image.pipelines import diffusion as PD
from text2image.pipelines import latent as P
from text2image.recipes import latent as R
from text2image.train import Trainer
from text2image.world import splits

PROMPTS = ["a red circle", "a small blue square to the left of a green cross", "three yellow triangles"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """One throwaway book root for the module: the smoke recipes (and their VAE and CLIPs) train once."""
    root = tmp_path_factory.mktemp("book")
    (root / "_quarto.yml").write_text("project:\n  type: book\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TEXT2IMAGE_ROOT", str(root))
        patch.delenv("TEXT2IMAGE_CACHE", raising=False)
        yield root


@pytest.fixture(scope="module")
def trained(project):
    return {name: recipes.load_or_train(name, "smoke", progress=False) for name in R.NAMES}


def spread_(model, seed, spread):
    """Redraw a network's matrices so that its output moves with its inputs (an untrained one barely does)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=generator) * spread)
    return model


def tiny_pipeline(denoiser="unet", objective="epsilon", seed=0, spread=0.2) -> P.LatentDiffusionPipeline:
    """An untrained smoke-size pipeline whose denoiser reads its caption (built, not trained: no checkpoint)."""
    torch.manual_seed(seed)
    vae = A.build_vae(channels=(8, 16, 16), latent_channels=4, groups=4)
    vae.register_to_config(scaling_factor=0.9)
    encoder = L.text_encoder(C.build(C.SIZES["smoke"], seed=seed))
    size = (L.UNET_SIZES if denoiser == "unet" else L.DIT_SIZES)["smoke"]
    model = spread_(L.build(denoiser, size, L.text_width(encoder), seed=seed), seed, spread)
    return P.assemble(model, vae, encoder, objective)


def draw(pipe, prompts=PROMPTS, seed=7, **kw):
    kw = {"num_inference_steps": 3, "guidance_scale": 3.0, **kw}
    return pipe(prompts, generator=torch.Generator().manual_seed(seed), output_type="np", **kw).images


# ----------------------------------------------------------------------------- the networks

def test_the_unet_and_the_dit_have_the_same_parameters_within_10_percent_at_every_size():
    for profile in profiles.PROFILES:
        width = C.SIZES[profile]["width"]
        unet = L.parameters(L.build_unet(L.UNET_SIZES[profile], width))
        dit = L.parameters(L.build_dit(L.DIT_SIZES[profile], width))
        assert abs(dit - unet) / unet <= 0.10, (profile, unet, dit)
        assert R.denoiser_parameters("ldm-unet", profile) == unet
        assert R.denoiser_parameters("ldm-dit", profile) == dit
    # the shipped cpu pipeline in fp16: the denoiser, vae-long (648,375 parameters) and the CLIP's text tower
    cpu = max(L.parameters(L.build_unet(L.UNET_SIZES["cpu"], 64)), L.parameters(L.build_dit(L.DIT_SIZES["cpu"], 64)))
    assert 2 * (cpu + 648_375 + 400_000) < 10e6


def test_the_denoisers_work_on_the_vaes_8x8x4_latents_and_read_every_token():
    for kind in L.DENOISERS:
        pipe = tiny_pipeline(kind)
        x = torch.randn(2, 4, 8, 8)
        ids, mask = PD.encode_prompts(PROMPTS[:2])
        states = L.encode_text(pipe.text_encoder, ids, mask)
        with torch.no_grad():
            out = L.predict(pipe.denoiser, x, torch.tensor(500), states, mask)
            moved = states.clone()
            moved[:, 3] += 1.0  # one token's state changed: the cross-attention reads it
            other = L.predict(pipe.denoiser, x, torch.tensor(500), moved, mask)
            padded = states.clone()
            padded[mask == 0] = 100.0  # the pads are masked out of the cross-attention
            same = L.predict(pipe.denoiser, x, torch.tensor(500), padded, mask)
        assert out.shape == x.shape and L.kind(pipe.denoiser) == kind
        assert (out - other).abs().max() > 1e-4
        torch.testing.assert_close(out, same, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="unknown denoiser 'vit'"):
        L.build("vit", {}, 32)


def test_newcombes_interval_for_a_difference_of_shares():
    from text2image.evaluate import intervals

    found = intervals.difference(intervals.share(56, 70), intervals.share(48, 80))
    assert found["p"] == pytest.approx(0.2)
    assert (found["lo"], found["hi"]) == pytest.approx((0.0524, 0.3339), abs=1e-4)  # Newcombe (1998), method 10
    same = intervals.difference(intervals.share(0, 5), intervals.share(0, 5))
    assert same["p"] == 0 and same["lo"] < 0 < same["hi"]


def test_the_text_encoder_is_the_clips_text_tower_frozen():
    clip = C.build(C.SIZES["smoke"], seed=3)
    encoder = L.text_encoder(clip)
    ids, mask = PD.encode_prompts(PROMPTS)
    with torch.no_grad():
        expected = clip.text_model(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(L.encode_text(encoder, ids, mask), expected)
    assert not any(p.requires_grad for p in encoder.parameters())
    assert L.text_width(encoder) == C.SIZES["smoke"]["width"]


# ----------------------------------------------------------------------------- the pipeline

@pytest.mark.parametrize("denoiser", L.DENOISERS)
def test_save_pretrained_and_from_pretrained_round_trip_bit_for_bit(denoiser, tmp_path):
    pipe = tiny_pipeline(denoiser)
    pipe.save_pretrained(tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["_class_name"] == "LatentDiffusionPipeline" and index["objective"] == "epsilon"
    assert index["tokenizer"] == ["text2image.text", "ShapesTokenizer"]
    assert index["unet" if denoiser == "unet" else "transformer"][0] == "diffusers"
    assert index["transformer" if denoiser == "unet" else "unet"] == [None, None]
    back = P.LatentDiffusionPipeline.from_pretrained(tmp_path / "pipe", local_files_only=True, use_safetensors=True)
    for name in ("vae", "text_encoder", "unet", "transformer"):
        a, b = getattr(pipe, name), getattr(back, name)
        assert (a is None) == (b is None)
        if a is not None:
            sa, sb = a.state_dict(), b.state_dict()
            assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), name
    assert isinstance(back.tokenizer, T.ShapesTokenizer) and back.tokenizer.get_vocab() == T.tokenizer().get_vocab()
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert type(back.scheduler) is type(pipe.scheduler)
    assert public(back.scheduler.config) == public(pipe.scheduler.config)
    assert np.array_equal(draw(pipe), draw(back))
    # the loaded tokenizer is the world's: it refuses what the world's refuses
    with pytest.raises(T.UnknownWordError, match="'purple'"):
        back(["a purple circle"], num_inference_steps=1)


def test_schedulers_swap_ddim_euler_and_dpm_solver():
    pipe = tiny_pipeline()
    drawn = {}
    for name in ("ddim", "euler", "dpm"):
        other = pipe.with_scheduler(name)
        assert P.sampler_of(other.scheduler) == name and P.sampler_of(pipe.scheduler) == "ddim"
        drawn[name] = draw(other)
        assert np.array_equal(drawn[name], draw(other))  # deterministic with each
    assert not np.array_equal(drawn["ddim"], drawn["euler"]) and not np.array_equal(drawn["ddim"], drawn["dpm"])
    # the diffusers idiom: a scheduler of another class from the same config
    for cls in (EulerDiscreteScheduler, DPMSolverMultistepScheduler, DDIMScheduler):
        pipe.scheduler = cls.from_config(pipe.scheduler.config)
        assert draw(pipe).shape == (3, 32, 32, 3)
    # a velocity-predicting denoiser samples with Euler (flow matching) or DPM-Solver on flow sigmas, not DDIM
    flow = tiny_pipeline(objective="velocity")
    assert P.sampler_of(flow.scheduler) == "euler"
    assert not np.array_equal(draw(flow), draw(flow.with_scheduler("dpm")))
    with pytest.raises(PD.SamplingError, match="velocity samples with euler or dpm, not ddim"):
        flow.with_scheduler("ddim")
    flow.scheduler = P.scheduler_for("ddim")
    with pytest.raises(PD.SamplingError, match="cannot sample a denoiser trained to predict the velocity"):
        draw(flow)


def test_guidance_1_is_the_conditional_model_and_0_the_unconditional_one():
    pipe = tiny_pipeline()
    denoiser = pipe.denoiser
    states, mask, null_states, null_mask = pipe.encode_prompt(PROMPTS, 3.0)
    x, t = torch.randn(3, 4, 8, 8), torch.tensor(600)

    def predict(a, b, c, d):
        return L.predict(denoiser, a, b, c, d)

    with torch.no_grad():
        cond, uncond = predict(x, t, states, mask), predict(x, t, null_states, null_mask)
        assert (cond - uncond).abs().max() > 1e-3  # the caption matters, so the test can fail
        assert torch.equal(PD.guide(predict, x, t, states, mask, null_states, null_mask, 1.0), cond)
        for scale in (0.0, 4.0):
            torch.testing.assert_close(PD.guide(predict, x, t, states, mask, null_states, null_mask, scale),
                                       uncond + scale * (cond - uncond), atol=1e-5, rtol=1e-4)
    assert pipe.encode_prompt(PROMPTS, 1.0)[2] is None  # no unconditional branch at all at scale 1
    # the whole sampling at scale 1 is a loop on the conditional model alone
    images = pipe(PROMPTS, num_inference_steps=3, guidance_scale=1.0, generator=torch.Generator().manual_seed(5),
                  output_type="latent").images
    generator = torch.Generator().manual_seed(5)
    z = torch.randn((3, 4, 8, 8), generator=generator)
    scheduler = P.scheduler_for("ddim")
    scheduler.set_timesteps(3)
    with torch.no_grad():
        for step in scheduler.timesteps:
            z = scheduler.step(predict(z, step, states, mask), step, z).prev_sample
    assert torch.equal(images, z)
    assert not np.array_equal(draw(pipe, guidance_scale=1.0), draw(pipe, guidance_scale=3.0))


@pytest.mark.parametrize("denoiser,sampler", [("unet", "ddim"), ("unet", "dpm"), ("dit", "euler")])
def test_the_pipeline_draws_what_a_bare_loop_draws_bit_for_bit(denoiser, sampler):
    pipe = tiny_pipeline(denoiser)
    sampling = P.Sampling(sampler=sampler, steps=3, guidance=2.0)
    through = P.Generator(pipe, sampling)(PROMPTS, 11)
    bare = P.bare_loop(pipe.denoiser, pipe.vae, pipe.text_encoder, PROMPTS, 11, sampling, "epsilon")
    assert np.array_equal(through, P.LatentDiffusionPipeline.postprocess(bare, "uint8"))


def test_images_are_deterministic_for_a_seeded_generator_whatever_ran_before():
    pipe = tiny_pipeline("dit")
    a = draw(pipe)
    torch.manual_seed(999)
    torch.randn(10)
    assert np.array_equal(a, draw(pipe)) and not np.array_equal(a, draw(pipe, seed=8))
    assert a.dtype == np.float32 and a.shape == (3, 32, 32, 3) and 0 <= a.min() and a.max() <= 1
    # one generator per prompt: each image is drawn from its own stream, whatever the rest of the batch
    gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    batch = pipe(PROMPTS, num_inference_steps=2, generator=gens, output_type="np").images
    alone = pipe(PROMPTS[1:2], num_inference_steps=2, generator=[torch.Generator().manual_seed(2)],
                 output_type="np").images
    np.testing.assert_allclose(batch[1], alone[0], atol=1e-5)
    # the output types
    assert pipe(PROMPTS[:1], num_inference_steps=1, output_type="uint8").images.dtype == np.uint8
    assert pipe(PROMPTS[:1], num_inference_steps=1, output_type="pt").images.shape == (1, 3, 32, 32)
    assert pipe(PROMPTS[:1], num_inference_steps=1, output_type="latent").images.shape == (1, 4, 8, 8)
    assert pipe("a red circle", num_inference_steps=1, output_type="pil").images[0].size == (32, 32)
    assert pipe([], num_inference_steps=1).images.shape == (0, 32, 32, 3)


def test_bad_input_gets_one_clear_error_each_before_anything_runs(monkeypatch):
    pipe = tiny_pipeline()
    cases = [
        (dict(prompt=["a purple circle"]), T.UnknownWordError, r"unknown word\(s\) 'purple'; the vocabulary is"),
        (dict(prompt=["a red circle " + "and a blue square " * 8]), T.CaptionError,
         r"caption too long: \d+ tokens with \[BOS\] and \[EOS\], the limit is 32"),
        (dict(prompt=["  "]), PD.SamplingError, "prompt 0 is empty"),
        (dict(num_inference_steps=0), PD.SamplingError, "sampling steps must be an integer >= 1, not 0"),
        (dict(num_inference_steps=-2), PD.SamplingError, "sampling steps must be an integer >= 1"),
        (dict(guidance_scale=-1.0), PD.SamplingError, "guidance scale must be >= 0"),
        (dict(generator=[torch.Generator(), torch.Generator()]), PD.SamplingError,
         "2 generators for 3 prompts: pass one generator, or a list of one per prompt"),
        (dict(generator=7), PD.SamplingError, "generator must be a torch.Generator"),
        (dict(output_type="jpeg"), PD.SamplingError, "unknown output_type 'jpeg'"),
    ]
    monkeypatch.setattr(pipe.text_encoder, "forward", lambda *a, **k: pytest.fail("the text encoder ran"))
    monkeypatch.setattr(pipe.denoiser, "forward", lambda *a, **k: pytest.fail("the denoiser ran"))
    for changes, error, message in cases:
        kwargs = {"prompt": PROMPTS, "num_inference_steps": 2, "guidance_scale": 3.0, **changes}
        with pytest.raises(error, match=message) as caught:
            pipe(**kwargs)
        assert "\n" not in str(caught.value), str(caught.value)
    with pytest.raises(ValueError, match="one denoiser: pass a unet or a transformer, not both"):
        P.LatentDiffusionPipeline(pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.scheduler, pipe.unet, pipe.unet)
    with pytest.raises(PD.SamplingError, match="list of prompts"):
        P.Generator(tiny_pipeline())("a red circle", 0)


# ----------------------------------------------------------------------------- data

def test_twin_batches_put_each_relation_beside_its_opposite():
    plain = R.training_examples("train", 40)
    twins = R.training_examples("train", 40, twin_batches=True)
    assert [e.caption.text for e in plain] == [e.caption.text for e in splits.examples("train", 0, 40)]
    assert len(twins) == 40
    pairs = [(a, b) for a, b in zip(twins, twins[1:]) if a.prompt.relation and b.prompt.relation
             and a.prompt.specs == b.prompt.specs and a.prompt.relation != b.prompt.relation]
    assert pairs and all(b.prompt.relation[1] != a.prompt.relation[1] for a, b in pairs)
    relations = lambda examples: sum(e.prompt.relation is not None for e in examples)  # noqa: E731
    assert relations(twins) > relations(plain)


def test_latents_are_cached_once_keyed_by_the_vaes_weights(project):
    data = R.latents("train", 24, "smoke")
    assert data["latents"].shape == (24, 4, 8, 8) and data["latents"].dtype == torch.float16
    assert data["text"].shape == (24, T.MAX_LENGTH) and data["text"].dtype == torch.uint8
    folder = R.latents_folder("smoke")
    assert folder.parent == recipes.checkpoint_folder(R.VAE, "smoke") and (folder / ".gitignore").is_file()
    stored = sorted(folder.glob("train-24-*.safetensors"))
    assert len(stored) == 1
    examples = splits.examples("train", 0, 24)
    assert torch.equal(data["text"][5].long(), T.encode([examples[5].caption.text])["input_ids"][0])
    vae, _ = recipes.load_or_train(R.VAE, "smoke", progress=False)
    from text2image.world.render import render
    from text2image.world.tensors import to_tensor
    images, _ = render([examples[3].scene], 32)
    with torch.no_grad():
        expected = vae.encode(to_tensor(images)).latent_dist.mode()[0]
    torch.testing.assert_close(data["latents"][3].float(), expected, atol=2e-3, rtol=2e-3)  # fp16 storage
    before = stored[0].stat().st_mtime_ns
    R._latents.cache_clear()
    R.latents("train", 24, "smoke")
    assert stored[0].stat().st_mtime_ns == before  # read back, not encoded again
    # a batch is a pure function of the step; a share of captions is dropped
    a, b = R.make_batch(data, 2, 8, 0.9, 0.25), R.make_batch(data, 2, 8, 0.9, 0.25)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    null = T.empty_caption(1)["input_ids"][0]
    dropped = sum(int(torch.equal(row, null)) for s in range(60) for row in R.make_batch(data, s, 8, 1.0, 0.25)[1])
    assert abs(dropped / 480 - 0.25) < 0.06
    x, ids, mask = R.make_batch(data, 0, 8, 0.9)
    assert not any(torch.equal(row, null) for row in ids) and torch.equal(mask, (ids != 0).long())


def test_a_new_key_replaces_only_its_own_tags_older_files(tmp_path):
    """The plain set's tag "train-8" is a prefix of the twins set's "train-8-twins": writing one must not
    delete the other (a bare glob "train-8-*" did)."""
    store = lambda tag, key: R.stored_tensors(tmp_path, tag, key, "d", "train",  # noqa: E731
                                              lambda: {"x": torch.zeros(1)})
    store("train-8-twins", "a" * 12)
    store("train-8", "b" * 12)
    store("train-8", "c" * 12)  # a newer key of the plain set
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == [
        f"train-8-{'c' * 12}.safetensors", f"train-8-twins-{'a' * 12}.safetensors"]


# ----------------------------------------------------------------------------- recipes

def test_the_recipes_share_data_steps_batch_and_objective_and_differ_by_one_thing_each():
    for profile in profiles.PROFILES:
        configs = {name: R.CONFIGS[name][profile] for name in R.NAMES}
        base = configs["ldm-unet"]
        for name, config in configs.items():
            assert (config.steps, config.batch_size, config.lr, config.warmup) == (base.steps, base.batch_size,
                                                                                    base.lr, base.warmup)
            assert config.extra["objective"] == R.OBJECTIVE and config.extra["drop_caption"] > 0
            assert config.extra["examples"] == base.extra["examples"]
        differ = {name: {k for k in base.extra if configs[name].extra[k] != base.extra[k]} for name in R.NAMES}
        assert differ == {"ldm-unet": set(), "ldm-dit": {"denoiser", "size"}, "ldm-unet-twins-clip": {"text_encoder"},
                          "ldm-unet-twins-batches": {"text_encoder", "twin_batches"}}
    assert R.OBJECTIVE in ("epsilon", "velocity")


def test_an_interrupted_smoke_training_resumes_exactly(project):
    recipe = recipes.get("ldm-unet")
    config = replace(recipe.config("smoke"), steps=5, checkpoint_every=2, eval_every=0)

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

    straight = run(project / "straight-ldm")
    with pytest.raises(KeyboardInterrupt):
        run(project / "resumed-ldm", stop_at=3)
    resumed = run(project / "resumed-ldm")
    assert resumed.step == straight.step == 5
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_smoke_recipes_ship_pipeline_folders_that_load_and_monitor_on_val(trained):
    for name, (pipe, manifest) in trained.items():
        assert isinstance(pipe, P.LatentDiffusionPipeline), name
        assert L.kind(pipe.denoiser) == R.CONFIGS[name]["smoke"].extra["denoiser"]
        assert manifest["steps"] == R.CONFIGS[name]["smoke"].steps
        assert manifest["parameters"] == sum(P._parameters(m) for m in (pipe.vae, pipe.text_encoder, pipe.denoiser))
        folder = recipes.checkpoint_folder(name, "smoke")
        assert checkpoints.is_pipeline_folder(folder)
        assert set(manifest["files"]) == {p.relative_to(folder).as_posix() for p in checkpoints.model_files(folder)}
        assert {"model_index.json", "scheduler/scheduler_config.json", "tokenizer/tokenizer.json"} <= set(manifest["files"])
        assert sum(p.stat().st_size for p in folder.rglob("*.safetensors")) < 10e6
        metrics = manifest["metrics"]
        assert metrics["val_loss"] > 0 and 0 <= metrics["val_correct"] <= 1
        assert not any("test" in key for key in metrics)
        log, _ = R.history(name, "smoke")
        assert log
    # the text encoder shipped is the recipe's CLIP's text tower
    twins, _ = trained["ldm-unet-twins-clip"]
    clip, _ = recipes.load_or_train("clip-relation-twins", "smoke", progress=False)
    ids, mask = PD.encode_prompts(PROMPTS)
    with torch.no_grad():
        expected = clip.text_model(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(L.encode_text(twins.text_encoder, ids, mask), expected, atol=1e-2, rtol=1e-2)


def test_a_corrupted_pipeline_folder_is_one_error_naming_the_file_and_nothing_is_written(trained, tmp_path):
    import shutil

    source = recipes.checkpoint_folder("ldm-unet", "smoke")

    def snapshot(folder):
        return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
                for p in sorted(folder.rglob("*"))}

    flipped = tmp_path / "flipped"
    shutil.copytree(source, flipped)
    weights = flipped / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    before = snapshot(flipped)
    with pytest.raises(checkpoints.CheckpointError) as error:
        R.load_pipeline(flipped)
    message = str(error.value)
    assert "\n" not in message and "unet/diffusion_pytorch_model.safetensors: corrupt or changed" in message
    assert "retrain it with: python -m text2image train ldm-unet" in message
    assert snapshot(flipped) == before

    missing = tmp_path / "missing"
    shutil.copytree(source, missing)
    (missing / "tokenizer" / "tokenizer.json").unlink()
    with pytest.raises(checkpoints.CheckpointError, match=r"incomplete checkpoint, tokenizer/tokenizer.json is missing; "
                                                          r"retrain it with: python -m text2image train ldm-unet"):
        R.load_pipeline(missing)

    stranger = tmp_path / "stranger"
    shutil.copytree(source, stranger)
    (stranger / "unet" / "extra.safetensors").write_bytes(b"x")
    with pytest.raises(checkpoints.CheckpointError, match=r"unet/extra.safetensors: a model file the manifest does not"):
        R.load_pipeline(stranger)

    bare = tmp_path / "bare"
    trained["ldm-unet"][0].save_pretrained(bare)
    assert isinstance(R.load_pipeline(bare), P.LatentDiffusionPipeline)  # a plain save_pretrained folder loads
    (bare / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00" * 10)
    before = snapshot(bare)
    with pytest.raises(checkpoints.CheckpointError, match=r"not a whole pipeline folder .*; save it again"):
        R.load_pipeline(bare)
    assert snapshot(bare) == before
    with pytest.raises(checkpoints.CheckpointError, match="no such folder"):
        R.load_pipeline(tmp_path / "nowhere")


def test_a_pipeline_folders_weights_digest_covers_its_components(trained, tmp_path):
    import shutil

    source = recipes.checkpoint_folder("ldm-dit", "smoke")
    digest = checkpoints.weights_digest(source)
    assert digest != "none"
    copy = tmp_path / "copy"
    shutil.copytree(source, copy)
    assert checkpoints.weights_digest(copy) == digest
    weights = copy / "transformer" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert checkpoints.weights_digest(copy) != digest  # cached results of the old weights are not reused


# ----------------------------------------------------------------------------- benchmark, sweeps, throughput

def test_every_generator_is_registered_and_a_smoke_benchmark_is_cached(trained, monkeypatch):
    for name in R.NAMES:
        assert B.generator(name, "smoke").settings["model"] == name
    result = R.benchmark("ldm-unet", "smoke", progress=False)
    assert result["images"] == sum(np.prod(B.size(g.name, "smoke")) for g in B.GROUPS) and "frechet" in result
    monkeypatch.setattr(R, "pipeline", lambda *a, **k: pytest.fail("the cached benchmark rebuilt its pipeline"))
    assert R.benchmark("ldm-unet", "smoke", progress=False) == json.loads(json.dumps(result))
    assert B.benchmark_named("ldm-unet", "smoke", progress=False) == json.loads(json.dumps(result))


def test_sweeps_of_guidance_steps_and_scheduler_are_cached_per_setting(trained):
    folder = recipes.checkpoint_folder("ldm-unet", "smoke")
    before = set(folder.glob("benchmark-*.json"))
    guided = R.guidance_sweep("ldm-unet", (0.0, 2.0), "smoke")
    assert [s for s, _ in guided] == [0.0, 2.0] and all(set(r["categories"]) for _, r in guided)
    schedulers = R.scheduler_sweep("ldm-unet", (1, 2), "smoke")
    assert list(schedulers) == list(R.SWEEP_SCHEDULERS[R.OBJECTIVE])
    assert all([n for n, _ in points] == [1, 2] for points in schedulers.values())
    assert all(r["images"] == sum(B.size(g, "smoke")[0] for g in B.CATEGORY_GROUPS)
               for points in schedulers.values() for _, r in points)
    assert len(set(folder.glob("benchmark-*.json")) - before) == 2 + 2 * len(schedulers)
    samples = R.samples_of("ldm-unet", PROMPTS[:2], 2, "smoke")
    assert samples.shape == (2, 2, 32, 32, 3) and samples.dtype == np.uint8


def test_the_throughput_command_compares_the_pipeline_with_a_bare_loop(trained, capsys):
    measured = R.throughput("ldm-unet", "smoke", prompts=4, repeats=1)
    assert measured["pipeline_images_per_second"] > 0 and measured["bare_images_per_second"] > 0
    assert measured["ratio"] == pytest.approx(measured["pipeline_images_per_second"]
                                              / measured["bare_images_per_second"])
    from text2image import bench
    assert "latent-throughput" in bench.BENCHMARKS


# ----------------------------------------------------------------------------- the real Stable Diffusion path

@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    """A tiny random ``StableDiffusionPipeline`` with SD 1.4's components, saved with ``save_pretrained``."""
    import string

    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("tiny-sd")
    vocab = {}
    for c in string.ascii_lowercase:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                                                num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                                                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                                pad_token_id=tokenizer.pad_token_id))
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                        layers_per_block=1, sample_size=32, scaling_factor=0.18215)
    unet = UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1,
                                cross_attention_dim=16, norm_num_groups=4, attention_head_dim=2)
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                              steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def test_nothing_of_stable_diffusion_is_downloaded_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not pretrained.stable_diffusion_available("CompVis/stable-diffusion-v1-4-not-cached")
    with pytest.raises(pretrained.WeightsUnavailable, match="allow_download=True"):
        pretrained.load_stable_diffusion("CompVis/stable-diffusion-v1-4-not-cached")


def test_a_tiny_stable_diffusion_pipeline_loads_runs_and_maps_onto_the_books(tiny_sd):
    assert pretrained.stable_diffusion_available(str(tiny_sd))
    assert not list(Path(tiny_sd).rglob("*.bin"))
    pipe = pretrained.load_stable_diffusion(str(tiny_sd))
    images = pipe("a dog", num_inference_steps=2, guidance_scale=3.0, height=32, width=32, output_type="np",
                  generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (1, 32, 32, 3) and np.isfinite(images).all()
    sd = P.describe(pipe, resolution=32)
    assert sd["latent_shape"] == (16, 16, 4) and sd["tokens"] == 77 and sd["text_width"] == 16
    assert sd["scaling_factor"] == pytest.approx(0.18215) and sd["denoiser"] == "UNet2DConditionModel"
    assert sd["cross_attention_dim"] == 16 and sd["block_out_channels"] == (8, 16)
    ours = P.describe(tiny_pipeline())
    assert ours["latent_shape"] == (8, 8, 4) and ours["tokens"] == T.MAX_LENGTH and ours["resolution"] == 32
    assert ours["text_width"] == C.SIZES["smoke"]["width"] == ours["cross_attention_dim"]
    # SD 1.4's published figures, what the chapter compares with when the weights are not here
    assert pretrained.SD14["latent_shape"] == (64, 64, 4) and pretrained.SD14["tokens"] == 77
    assert pretrained.SD14["text_width"] == 768 and pretrained.SD14["resolution"] // 8 == 64


def test_shipped_pipelines_reproduce_their_manifest(monkeypatch):
    """Every shipped pipeline of the chapter (none until they are trained) loads as a pipeline folder, stays
    under 10 MB, and gives back its validation loss."""
    monkeypatch.setenv("TEXT2IMAGE_ROOT", str(Path(__file__).resolve().parents[1]))
    for name in R.NAMES:
        folder = checkpoints.checkpoint_dir(name)
        if not (folder / checkpoints.MANIFEST).is_file():
            continue
        pipe, manifest = recipes.load_or_train(name, "cpu", progress=False)
        assert checkpoints.is_pipeline_folder(folder) and isinstance(pipe, P.LatentDiffusionPipeline)
        assert sum(f.stat().st_size for f in folder.rglob("*.safetensors")) < 10e6
        measured = R.val_loss(pipe.denoiser, pipe.text_encoder, pipe.objective, "cpu", pipe.scaling_factor)
        assert measured == pytest.approx(manifest["metrics"]["val_loss"], rel=0.02)
