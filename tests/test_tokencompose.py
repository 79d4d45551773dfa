"""TokenCompose's recipes (issue 19): fine-tunes of the shipped ``ldm-unet`` with the grounding losses, their data
(latents and word masks on the latent grid, batches a pure function of the step), the loss (the latent recipe's to
the bit when both weights are 0; grounding terms on the graph otherwise; none for a dropped caption), a smoke
fine-tune end to end (base digest recorded, pipeline folder shipped, store off at sampling time, exact resume), the
attention-mask IoU on hand-made maps, and the benchmark registration and ablation rows."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from scipy import stats

from text2image import checkpoints, recipes
from text2image import text as T
from text2image.evaluate import benchmark as B
from text2image.evaluate import grounding as G
from text2image.methods import attention as A
from text2image.methods import tokencompose as TC
from text2image.models import clip as C
from text2image.models import diffusion as D
from text2image.models import latent as L
from text2image.pipelines import latent as P
from text2image.recipes import latent as R
from text2image.recipes import tokencompose as TCR
from text2image.train import Trainer
from text2image.world import captions as WC
from text2image.world.render import render

PROFILE = "smoke"
FINE_TUNE = "tc-both"


@pytest.fixture(scope="module")
def tiny():
    """A smoke-size UNet and text encoder, built (not trained), and a small grounded data set of real examples."""
    encoder = L.text_encoder(C.build(C.SIZES[PROFILE], seed=0))
    unet = L.build_unet(L.UNET_SIZES[PROFILE], L.text_width(encoder)).train()
    examples = TCR.multi_object_examples("train", 0, 16)
    _, masks = render([e.scene for e in examples], 32)
    tokens, grid = TCR.word_tensors([e.caption for e in examples], masks)
    data = {"latents": torch.randn((16, 4, 8, 8), generator=torch.Generator().manual_seed(0)).half(),
            "text": T.encode([e.caption.text for e in examples])["input_ids"].to(torch.uint8),
            "tokens": tokens, "masks": grid}
    return unet, encoder, data, examples, masks


@pytest.fixture(scope="module")
def trained():
    """The smoke fine-tune (and, first, its smoke base and the base's VAE and CLIP), trained once into build/smoke."""
    return recipes.load_or_train(FINE_TUNE, PROFILE, progress=False)


def processor_types(unet) -> set:
    return {type(p) for p in unet.attn_processors.values()}


# ----------------------------------------------------------------------------- the recipes

def test_the_recipes_go_on_from_ldm_unet_with_their_weights_and_seeds():
    assert {"tc-base-continued", "tc-token", "tc-pixel", "tc-both", "tc-base-continued-s2", "tc-both-s2",
            "tc-both-token-1e-2", "tc-both-token-1e-1"} <= set(TCR.names())
    for name in TCR.RECIPES:
        recipe = recipes.get(name)
        assert recipe.base == "ldm-unet" and recipe.model_class is P.LatentDiffusionPipeline
        extra = recipe.config("cpu").extra
        assert extra["objective"] == R.OBJECTIVE and extra["drop_caption"] == R.DROP_CAPTION
        assert extra["first_example"] == R.EXAMPLES["cpu"]  # examples the base never saw
    assert TCR.weights("tc-base-continued") == (0.0, 0.0) and TCR.weights("tc-token") == (1e-3, 0.0)
    assert TCR.weights("tc-pixel") == (0.0, 5e-5) and TCR.weights("tc-both") == (1e-3, 5e-5)
    assert [TCR.method_of(n) for n in TCR.ABLATION] == ["base", "control", "control", "token", "pixel", "both", "both"]
    # same steps, batch and seed for every method of one replica; the replicas differ by their seed only
    cpu = {n: recipes.get(n).config("cpu") for n in TCR.RECIPES}
    assert len({(c.steps, c.batch_size, c.lr) for c in cpu.values()}) == 1
    assert cpu["tc-base-continued"].seed == cpu["tc-both"].seed
    assert cpu["tc-both-s2"].seed == cpu["tc-base-continued-s2"].seed != cpu["tc-both"].seed
    # within the cpu budget: 25 minutes at the measured step time, evaluations aside
    assert cpu["tc-both"].steps * TCR.STEP_SECONDS["grounded"] <= 25 * 60
    # the sweep's hook: another lambda_token is a config, and a registered recipe and generator
    config = TCR.sweep_config(0.3, "cpu")
    assert config.extra["lambda_token"] == 0.3 and config.extra["lambda_pixel"] == TCR.LAMBDA_PIXEL
    assert replace(config, extra={}) == replace(cpu["tc-both"], extra={})
    name = TCR.register_sweep(0.3)
    try:
        assert name == "tc-both-token-3e-1" and recipes.get(name).config("smoke").extra["lambda_token"] == 0.3
        assert name in B.GENERATORS and TCR.register_sweep(0.3) == name  # twice: once
    finally:
        TCR.CONFIGS.pop(name, None), recipes.REGISTRY.pop(name, None), B.GENERATORS.pop(name, None)


def test_batches_are_the_latent_recipes_with_words_and_a_pure_function_of_the_step(tiny):
    _, _, data, _, _ = tiny
    for step in (0, 1, 5):
        ours = TCR.make_batch(data, step, 8, 0.9, 0.5, 1901)
        theirs = R.make_batch(data, step, 8, 0.9, 0.5, 1901)
        for a, b in zip(ours[:3], theirs):
            assert torch.equal(a, b)
        again = TCR.make_batch(data, step, 8, 0.9, 0.5, 1901)
        assert all(torch.equal(a, b) for a, b in zip(ours, again))
        x, ids, mask, tokens, masks = ours
        dropped = mask.sum(dim=1) == 2  # [BOS] [EOS]: the empty caption
        assert (tokens[dropped] == -1).all()  # a dropped caption has no word
        kept = ~dropped
        assert (tokens[kept, 0] > 0).all()  # every other caption has at least one noun
        for b in torch.nonzero(kept).flatten():
            for k in torch.nonzero(tokens[b] >= 0).flatten():
                assert masks[b, k].any()
    drops = [bool((TCR.make_batch(data, s, 8, 1.0, 0.5, 1901)[2].sum(1) == 2).any()) for s in range(4)]
    assert any(drops)


def test_multi_object_examples_and_their_masks_on_the_latent_grid(tiny):
    _, _, data, examples, masks = tiny
    assert all(2 <= e.prompt.n_objects <= 5 for e in examples)
    tokens, grid = data["tokens"], data["masks"]
    for n, e in enumerate(examples):
        words = TC.word_masks(e.caption, masks[n])
        assert [int(t) for t in tokens[n] if t >= 0] == [w.token for w in words]
        for k, w in enumerate(words):
            for side in (8, 4, 2):  # the cached 8 x 8 mask gives every supervised grid's target exactly
                assert torch.equal(TC.resize_mask(grid[n, k], (side, side)), TC.resize_mask(w.mask, (side, side)))


def test_a_caption_with_no_mask_link_raises_the_methods_error():
    caption = WC.parse("a red circle to the left of a blue square")
    one = np.zeros((1, 1, 32, 32), dtype=bool)
    one[0, 0, :4, :4] = True
    with pytest.raises(TC.GroundingError, match=r"'square'.*masks for 1 object"):
        TCR.word_tensors([caption], one)
    empty = np.zeros((1, 2, 32, 32), dtype=bool)
    empty[0, 0, :4, :4] = True
    with pytest.raises(TC.GroundingError, match="'square'.*mask is empty"):
        TCR.word_tensors([caption], empty)


# ----------------------------------------------------------------------------- the loss

def test_with_both_weights_zero_the_loss_is_the_plain_denoising_loss(tiny):
    unet, encoder, data, _, _ = tiny
    scheduler = D.training_scheduler(R.OBJECTIVE)
    batch = TCR.make_batch(data, 0, 8, 0.9, 0.1, 1901)
    torch.manual_seed(3)
    ours, parts = TCR.grounded_loss(unet, encoder, R.OBJECTIVE, scheduler, batch, 0.0, 0.0)
    torch.manual_seed(3)
    x, ids, mask = batch[:3]
    plain = L.latent_loss(unet, R.OBJECTIVE, scheduler, x, L.encode_text(encoder, ids, mask), mask)
    assert torch.equal(ours, plain) and set(parts) == {"mse"}
    assert processor_types(unet) == {AttnProcessor2_0}  # the control never installs the store
    # with weights, the same MSE (the store's arithmetic is the plain processor's) plus the weighted terms
    torch.manual_seed(3)
    total, parts = TCR.grounded_loss(unet, encoder, R.OBJECTIVE, scheduler, batch, 1e-3, 5e-5)
    torch.testing.assert_close(parts["mse"], plain.detach(), atol=1e-5, rtol=1e-5)
    assert total.item() == pytest.approx((parts["mse"] + 1e-3 * parts["token"] + 5e-5 * parts["pixel"]).item(),
                                         rel=1e-6)


def test_grounding_terms_are_positive_and_train_the_unet(tiny):
    unet, encoder, data, _, _ = tiny
    scheduler = D.training_scheduler(R.OBJECTIVE)
    batch = TCR.make_batch(data, 1, 8, 0.9, 0.0, 1901)
    probe = unet.up_blocks[-1].attentions[0].transformer_blocks[0].attn2.to_k.weight  # a supervised layer's key

    def gradient(lt, lp):
        unet.zero_grad(set_to_none=True)
        torch.manual_seed(5)
        loss, parts = TCR.grounded_loss(unet, encoder, R.OBJECTIVE, scheduler, batch, lt, lp)
        loss.backward()
        return probe.grad.clone(), parts

    plain, _ = gradient(0.0, 0.0)
    token, parts = gradient(1.0, 0.0)
    pixel, _ = gradient(0.0, 1.0)
    assert parts["token"] > 0 and parts["pixel"] > 0 and parts["grounded"] == 8
    assert torch.isfinite(token).all() and (token - plain).abs().max() > 1e-6  # the maps are on the graph
    assert (pixel - plain).abs().max() > 1e-6
    assert processor_types(unet) == {AttnProcessor2_0}  # the store is gone after the step
    unet.zero_grad(set_to_none=True)


def test_dropped_captions_get_no_grounding_loss(tiny):
    unet, encoder, data, _, _ = tiny
    scheduler = D.training_scheduler(R.OBJECTIVE)
    batch = TCR.make_batch(data, 0, 8, 0.9, 1.0, 1901)  # every caption dropped
    assert (batch[3] == -1).all()
    with torch.no_grad():
        _, parts = TCR.grounded_loss(unet, encoder, R.OBJECTIVE, scheduler, batch, 1e-3, 5e-5)
    assert parts["token"] == 0 and parts["pixel"] == 0 and parts["grounded"] == 0


# ----------------------------------------------------------------------------- the attention-mask IoU

def column_map(columns, block="up", layer="up_blocks.0", token=1, tokens=3, side=2, images=1):
    """A map whose token ``token`` gets, per head, the attention ``columns[h]`` (H x W values) in each image."""
    columns = torch.tensor(columns, dtype=torch.float32)
    heads = columns.shape[0]
    probs = torch.zeros(images * heads, side * side, tokens)
    probs[:, :, token] = columns.repeat(images, 1)
    probs[:, :, 0] = 1 - probs[:, :, token]
    return A.AttentionMap(layer, block, side, side, heads, probs)


TOP = torch.zeros(4, 4, dtype=torch.bool)
TOP[:2] = True  # the top half: the top row of the 2 x 2 grid, cells 0 and 1


def test_iou_on_hand_made_maps_equals_the_hand_computed_value():
    word = [[TC.WordMask(1, TOP)]]
    # one group of two layers of two heads: averaged, [0.4, 0.4, 0.15, 0.05], above its mean 0.25 at cells 0, 1
    up = [column_map([[0.6, 0.2, 0.15, 0.05], [0.2, 0.6, 0.15, 0.05]]),
          column_map([[0.6, 0.2, 0.15, 0.05], [0.2, 0.6, 0.15, 0.05]], layer="up_blocks.0.b")]
    mid = column_map([[0.5, 0.1, 0.3, 0.1]], block="mid", layer="mid_block")  # above 0.25: cells 0, 2 -> 1/3
    found = G.word_ious([*up, mid], word)
    assert found["up 2x2"] == [pytest.approx(1.0)] and found["mid 2x2"] == [pytest.approx(1 / 3)]
    assert found[G.ALL] == [pytest.approx(2 / 3)]
    # the two thresholds: above the mean (cell 0 alone: 1/2) or the mask's area of top cells (0 and 1: 1)
    peaked = [column_map([[0.6, 0.2, 0.15, 0.05]])]
    assert G.word_ious(peaked, word)["up 2x2"] == [pytest.approx(0.5)]
    assert G.word_ious(peaked, word, threshold="area")["up 2x2"] == [pytest.approx(1.0)]
    # an image without a word is NaN, left out of the mean; two words of an image are averaged
    two = column_map([[0.6, 0.2, 0.15, 0.05]], images=2)
    bottom = torch.flip(TOP, dims=[0])
    found = G.word_ious([two], [[TC.WordMask(1, TOP), TC.WordMask(0, bottom)], []])
    # token 0 holds 1 - column: [0.4, 0.8, 0.85, 0.95], above its mean 0.75 at cells 1, 2, 3; bottom = 2, 3 -> 2/3
    assert found["up 2x2"][0] == pytest.approx((0.5 + 2 / 3) / 2) and math.isnan(found["up 2x2"][1])
    assert G.iou(torch.tensor([1, 1, 0, 0]), torch.tensor([0, 1, 1, 0])) == pytest.approx(1 / 3)
    with pytest.raises(G.GroundingEvalError, match="unknown threshold 'median'"):
        G.word_ious(peaked, word, threshold="median")


def test_the_t_interval_and_the_paired_difference():
    found = G.t_interval([0.2, 0.4, 0.6, float("nan")])
    half = stats.t.ppf(0.975, 2) * 0.2 / math.sqrt(3)  # 4.3027 x sd 0.2 / sqrt(3)
    assert found["n"] == 3 and found["mean"] == pytest.approx(0.4)
    assert (found["lo"], found["hi"]) == pytest.approx((0.4 - half, 0.4 + half))
    before = {"per_prompt": {"all": [0.1, 0.2, 0.3]}, "settings": {"x": 1}}
    after = {"per_prompt": {"all": [0.3, 0.3, 0.6]}, "settings": {"x": 1}}
    diff = G.paired_difference(after, before)
    assert diff["mean"] == pytest.approx(0.2) and diff["lo"] < 0.2 < diff["hi"]
    with pytest.raises(G.GroundingEvalError, match="same prompts and settings"):
        G.paired_difference(after, {"per_prompt": {"all": [0.1]}, "settings": {"x": 1}})


def test_measure_runs_one_pass_per_prompt_and_is_repeatable(tiny):
    unet, encoder, _, _, _ = tiny
    from text2image.models import autoencoders as AE

    vae = AE.build_vae(channels=(8, 16, 16), latent_channels=4, groups=4).eval()
    examples = G.multi_object_examples("val", 4)
    unet.eval()
    first = G.measure(unet, vae, encoder, R.OBJECTIVE, examples, chunk=3)
    second = G.measure(unet, vae, encoder, R.OBJECTIVE, examples)
    unet.train()
    assert set(first["groups"]) == {"mid 2x2", "up 2x2", "up 4x4", "up 8x8", G.ALL}
    assert first["per_prompt"] == second["per_prompt"]  # fixed noise: chunking changes nothing
    assert all(0 <= v <= 1 for values in first["per_prompt"].values() for v in values)
    assert first["groups"][G.ALL]["n"] == 4 and first["settings"]["sigma"] == pytest.approx(0.5)
    assert processor_types(unet) == {AttnProcessor2_0}


# ----------------------------------------------------------------------------- a smoke fine-tune end to end

def test_a_smoke_fine_tune_ships_a_pipeline_that_samples_with_the_store_off(trained):
    pipe, manifest = trained
    base_folder = recipes.checkpoint_folder("ldm-unet", PROFILE)
    assert manifest["base"] == {"name": "ldm-unet", "weights": checkpoints.weights_digest(base_folder)}
    assert manifest["steps"] == TCR.CONFIGS[FINE_TUNE][PROFILE].steps
    metrics = manifest["metrics"]
    for key in ("val_loss", "val_token", "val_pixel", "val_iou_all", "val_correct"):
        assert math.isfinite(metrics[key]), key
    assert metrics["val_token"] > 0 and metrics["val_pixel"] > 0 and 0 <= metrics["val_iou_all"] <= 1
    assert not any("test" in key for key in metrics)
    log, _ = R.history(FINE_TUNE, PROFILE)
    assert len(log) == manifest["steps"]
    assert all(math.isfinite(r["loss"]) and r["token"] > 0 and r["pixel"] > 0 for r in log)
    folder = recipes.checkpoint_folder(FINE_TUNE, PROFILE)
    assert checkpoints.is_pipeline_folder(folder)
    assert sum(p.stat().st_size for p in folder.rglob("*.safetensors")) < 10e6
    # the UNet moved; the VAE and the text encoder are the base's, frozen
    base, _ = recipes.load_or_train("ldm-unet", PROFILE, progress=False)
    moved = [not torch.equal(a, b) for a, b in zip(pipe.unet.state_dict().values(), base.unet.state_dict().values())]
    assert any(moved)
    for part in ("vae", "text_encoder"):
        a, b = getattr(pipe, part).state_dict(), getattr(base, part).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), part
    # the store is off at sampling time: the default processors, as in a freshly built UNet
    fresh = L.build_unet(L.UNET_SIZES[PROFILE], C.SIZES[PROFILE]["width"])
    generate = TCR.pipeline(FINE_TUNE, PROFILE)
    assert processor_types(generate.pipe.unet) == processor_types(fresh) == {AttnProcessor2_0}
    images = generate(["a red circle and a blue square", "three green crosses"], 0)
    assert images.dtype == np.uint8 and images.shape == (2, 32, 32, 3)
    assert np.array_equal(images, generate(["a red circle and a blue square", "three green crosses"], 0))


def test_an_interrupted_fine_tune_resumes_exactly(trained, tmp_path):
    recipe = recipes.get(FINE_TUNE)
    config = replace(recipe.config(PROFILE), steps=5, checkpoint_every=2, eval_every=0)

    def run(folder, stop_at=None):
        model = recipe.build(PROFILE)
        loss_fn, batch_fn, _ = recipe.task(model, PROFILE)

        def batches(step):
            if step == stop_at:
                raise KeyboardInterrupt
            return batch_fn(step)
        trainer = Trainer(model, loss_fn, batches, config, folder)
        trainer.fit(progress=False)
        return trainer

    straight = run(tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "resumed", stop_at=3)
    resumed = run(tmp_path / "resumed")
    assert resumed.step == straight.step == 5
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- the benchmark and the table

def test_the_generators_are_registered_and_the_ablation_rows_hold_numbers(trained, capsys):
    gen = B.generator(FINE_TUNE, PROFILE)
    assert gen.cache_folder == recipes.checkpoint_folder(FINE_TUNE, PROFILE)
    assert gen.settings == TCR.settings(FINE_TUNE, profile=PROFILE)
    rows = TCR.ablation_rows(("ldm-unet", FINE_TUNE), PROFILE, split="val")
    assert [r["model"] for r in rows] == ["ldm-unet", FINE_TUNE]
    for row in rows:
        for key in ("mg2", "mg3", "mg4", "mg5", "object_accuracy", "colour_attribution"):
            assert 0 <= row[key]["p"] <= 1 and row[key]["lo"] <= row[key]["p"] <= row[key]["hi"], key
        assert row["frechet"] >= 0 and row["latency_ms"] > 0
        assert {"mid 2x2", "up 2x2", "up 4x4", "up 8x8", G.ALL} == set(row["iou"])
        assert all(0 <= g["mean"] <= 1 for g in row["iou"].values())
    assert all(g["mean"] == 0 for g in rows[0]["iou_change"].values())  # the base against itself
    json.dumps(rows)  # numbers only
    assert set(TCR.over_seeds(rows)) == {"base", "both"}
    # the command reads the same cached result
    from text2image.bench import run

    assert run(["generate", FINE_TUNE], PROFILE) == 0
    assert capsys.readouterr().out.startswith(f"{FINE_TUNE} (profile smoke")


def test_the_maps_of_a_sampling_run_follow_each_step_and_leave_the_image_unchanged(trained):
    pipe, _ = trained
    prompt, before = "a red circle to the left of a blue square", processor_types(pipe.unet)
    seen = A.sampling_maps(pipe, prompt, steps=3, guidance=3.0, seed=5)
    plain = pipe(prompt, num_inference_steps=3, guidance_scale=3.0, generator=torch.Generator().manual_seed(5),
                 output_type="uint8").images[0]
    assert np.abs(seen.image.astype(int) - plain.astype(int)).max() <= 1  # float tolerance, then uint8
    assert len(seen.maps) == len(seen.timesteps) == 3 and processor_types(pipe.unet) == before
    groups = {(s.block, s.grid) for s in A.layer_shapes(pipe.unet, T.MAX_LENGTH)}
    for step in seen.maps:
        assert set(step) == groups
        for (_, (h, w)), m in step.items():
            assert m.shape == (h, w, T.MAX_LENGTH)
            np.testing.assert_allclose(m.sum(axis=-1), 1.0, rtol=1e-4)  # a distribution over the tokens
    words = T.encode([prompt])["attention_mask"][0]
    assert all(np.all(m[..., words.numpy() == 0] < 1e-6) for step in seen.maps for m in step.values())  # pads


def test_the_chapter_names_each_model_and_weight_as_its_tables_print_them(monkeypatch):
    from text2image.charts import tokencompose as charts

    assert (charts.weight_text(1e-3), charts.weight_text(5e-5), charts.weight_text(0.0)) == ("10⁻³", "5 × 10⁻⁵", "0")
    monkeypatch.setenv("TEXT2IMAGE_LANG", "en")
    assert charts.model_name("tc-both-s2") == "+ both (seed 2)"
    assert charts.model_name(TCR.sweep_name(1e-2)) == "+ both, λ_token = 10⁻²"
    assert charts.model_name(TCR.BASE) == "base"
    monkeypatch.setenv("TEXT2IMAGE_LANG", "fr")
    assert charts.model_name("tc-base-continued-s2") == "MSE seule (graine 2)"
