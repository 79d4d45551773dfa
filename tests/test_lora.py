"""The LoRA step of pivotal tuning on a tiny built pipeline (smoke sizes, untrained) after a short inversion: only the
adapter's weights change, the loss on fixed draws goes down, the recorded update is ``(alpha / r) B A``, the file is
diffusers' and ``load_lora_weights`` reads it back to the same weights and images bit for bit, disabling, deleting or
unloading it gives the base model's images bit for bit, the file is small at the cpu sizes, the bad inputs are
refused, and a seed repeats the run."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from text2image.methods import lora as LO
from text2image.methods import textual_inversion as TI
from text2image.models import clip as C
from text2image.models import latent as L
from text2image.models import seeded
from text2image.models import autoencoders as A
from text2image.pipelines import latent as P
from text2image.world import concept

from test_textual_inversion import snapshot, timeless, tiny_pipe

STEPS, LR, LOG_EVERY, RANK, ALPHA = 30, 1e-2, 10, 4, 8.0  # alpha != rank: the file must say it, shapes cannot
PROMPTS = ["a small red <star>", "a large blue <star> to the left of a green circle"]
SAMPLING = P.Sampling(steps=2)


def images(pipe) -> np.ndarray:
    return TI.sample(pipe, PROMPTS, seed=3, sampling=SAMPLING)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    pipe = tiny_pipe()
    inversion = TI.invert(pipe, steps=6, lr=2e-2, log_every=3, seed=0)  # the pivot
    before = {"unet": snapshot(pipe.unet), "vae": snapshot(pipe.vae), "text": snapshot(pipe.text_encoder)}
    flags = {n: p.requires_grad for n, p in pipe.unet.named_parameters()}
    base_images, digest = images(pipe), LO.base_digest(pipe.unet)
    adapter = LO.tune(pipe, steps=STEPS, lr=LR, rank=RANK, alpha=ALPHA, log_every=LOG_EVERY, seed=0)
    embeds = inversion.save(tmp_path_factory.mktemp("star"))
    return dict(pipe=pipe, inversion=inversion, embeds=embeds, before=before, flags=flags, base_images=base_images,
                digest=digest, adapter=adapter, images=images(pipe))


def pivot_pipe(tuned, seed: int = 0) -> P.LatentDiffusionPipeline:
    """A fresh tiny pipeline holding the learnt word (the inversion's file), no adapter."""
    pipe = tiny_pipe(seed)
    TI.load(pipe, tuned["embeds"], check_base=seed == 0)
    return pipe


# ----------------------------------------------------------------------------- what learns

def test_only_the_lora_weights_change(tuned):
    pipe, before, adapter = tuned["pipe"], tuned["before"], tuned["adapter"]
    for name, module in (("vae", pipe.vae), ("text", pipe.text_encoder)):
        after = module.state_dict()
        assert all(torch.equal(after[k], v) for k, v in before[name].items()), name
    state = pipe.unet.state_dict()
    base = {k.replace(".base_layer.", "."): v for k, v in state.items() if ".lora_" not in k}
    assert set(base) == set(before["unet"])
    assert all(torch.equal(base[k], v) for k, v in before["unet"].items())  # every base weight, bit for bit
    assert LO.base_digest(pipe.unet) == tuned["digest"]  # the digest ignores the adapter
    # the adapted layers are the attention projections, all of them, and nothing else
    adapted = LO.layers(pipe.unet)
    projections = [n for n, _ in tiny_pipe().unet.named_modules() if n.endswith(LO.TARGETS)]
    assert sorted(adapted) == sorted(projections) and len(adapted) == 80
    lora = {k: v for k, v in state.items() if ".lora_" in k}
    assert len(lora) == 2 * len(adapted) == len(adapter.weights)
    assert adapter.size == sum(v.numel() for v in lora.values()) == sum(
        RANK * (m.in_features + m.out_features) for m in adapted.values())
    # no gradient left, the base's flags as they were, the adapter frozen for sampling
    for name, p in pipe.unet.named_parameters():
        assert p.grad is None
        assert p.requires_grad == (".lora_" not in name and tuned["flags"][name.replace(".base_layer.", ".")])
    assert pipe.unet.active_adapters() == [LO.ADAPTER]
    assert not np.array_equal(tuned["images"], tuned["base_images"])  # and it changed what is drawn


def test_the_loss_on_fixed_draws_goes_down(tuned):
    history = tuned["adapter"].history
    assert [h["step"] for h in history] == list(range(0, STEPS + 1, LOG_EVERY))
    eval_losses = [h["eval_loss"] for h in history]
    assert eval_losses[-1] < eval_losses[0] * 0.97
    assert all(b < a for a, b in zip(eval_losses, eval_losses[1:]))
    assert history[0]["loss"] is None and all(h["loss"] > 0 for h in history[1:])


def test_the_update_is_the_scaled_product_of_b_and_a(tuned):
    adapter = tuned["adapter"]
    history = adapter.history
    assert history[0]["update_norm"] == 0 == history[0]["relative"]  # B starts at zero: the base model itself
    norms = [h["update_norm"] for h in history]
    assert all(b > a for a, b in zip(norms, norms[1:]))
    w = adapter.weights
    layers = sorted({k.rsplit(".lora_", 1)[0] for k in w})
    by_hand = [float(torch.linalg.matrix_norm(ALPHA / RANK * w[f"{n}.lora_B.weight"] @ w[f"{n}.lora_A.weight"]))
               for n in layers]
    assert history[-1]["update_norm"] == pytest.approx(sum(by_hand), rel=1e-5)
    assert history[-1]["update_max"] == pytest.approx(max(by_hand), rel=1e-5)
    base = sum(float(torch.linalg.matrix_norm(tuned["before"]["unet"][f"{n}.weight"])) for n in layers)
    assert history[-1]["relative"] == pytest.approx(sum(by_hand) / base, rel=1e-5)
    assert adapter.rank == RANK and adapter.alpha == ALPHA and sorted(adapter.targets) == sorted(LO.TARGETS)


# ----------------------------------------------------------------------------- the file, diffusers' loader

def test_save_then_load_gives_the_same_weights_and_the_same_images(tuned, tmp_path):
    adapter = tuned["adapter"]
    path = adapter.save(tmp_path / "lora")
    assert path.name == "pytorch_lora_weights.safetensors"
    stored = load_file(str(path))
    assert all(k.startswith("unet.") and ".lora." in k for k in stored)  # diffusers' keys (lora.down / lora.up)
    tensors, metadata = LO.read(path)
    assert metadata[LO.BASE_KEY] == tuned["digest"] and metadata["token"] == "<star>"
    assert "lora_adapter_metadata" in metadata  # the LoraConfig, diffusers' field

    fresh = pivot_pipe(tuned)
    assert LO.load(fresh, path) == LO.ADAPTER
    again = LO.Adapter.from_unet(fresh.unet)
    assert set(again.weights) == set(adapter.weights)
    assert all(torch.equal(again.weights[k], v) for k, v in adapter.weights.items())
    assert fresh.unet.peft_config[LO.ADAPTER].lora_alpha == ALPHA  # read from the file, not guessed (it would be 4)
    assert np.array_equal(images(fresh), tuned["images"])

    bare = pivot_pipe(tuned)  # diffusers' own loader, from the folder, as any SD LoRA
    bare.load_lora_weights(str(path.parent), adapter_name="star")
    assert np.array_equal(images(bare), tuned["images"])


def test_disabling_deleting_or_unloading_gives_the_base_images_bit_for_bit(tuned, tmp_path):
    pipe = pivot_pipe(tuned)
    base_state = snapshot(pipe.unet)
    base_images = images(pipe)
    assert np.array_equal(base_images, tuned["base_images"])  # the fresh pipeline is the tuned one's base
    path = tuned["adapter"].save(tmp_path)
    LO.load(pipe, path)
    assert np.array_equal(images(pipe), tuned["images"])
    pipe.disable_lora()
    assert np.array_equal(images(pipe), base_images)
    pipe.enable_lora()
    assert np.array_equal(images(pipe), tuned["images"])
    pipe.delete_adapters(LO.ADAPTER)
    assert np.array_equal(images(pipe), base_images)
    LO.load(pipe, path)
    pipe.unload_lora_weights()
    assert np.array_equal(images(pipe), base_images)
    after = pipe.unet.state_dict()  # the UNet's own modules back in place, its weights untouched
    assert set(after) == set(base_state) and all(torch.equal(after[k], v) for k, v in base_state.items())


def test_the_adapter_file_is_small_at_the_cpu_sizes(tmp_path):
    unet = L.build_unet(L.UNET_SIZES["cpu"], C.SIZES["cpu"]["width"])  # built, never trained
    unet.add_adapter(LO.config(), adapter_name=LO.ADAPTER)
    path = LO.Adapter.from_unet(unet).save(tmp_path)
    size = path.stat().st_size
    adapted = LO.layers(unet)
    numbers = sum(LO.RANK * (m.in_features + m.out_features) for m in adapted.values())
    assert sum(t.numel() for t in load_file(str(path)).values()) == numbers
    assert 4 * numbers < size < 1_000_000  # float32 numbers and a header, under 1 MB
    assert numbers < 0.05 * L.parameters(L.build_unet(L.UNET_SIZES["cpu"], C.SIZES["cpu"]["width"]))


def test_an_adapter_for_another_base_model_is_refused(tuned, tmp_path):
    path = tuned["adapter"].save(tmp_path)
    other = pivot_pipe(tuned, seed=1)
    assert LO.base_digest(other.unet) != tuned["digest"]
    with pytest.raises(LO.LoRAError, match="trained on another base model"):
        LO.load(other, path)
    assert not getattr(other.unet, "peft_config", None)  # refused before anything changed
    # a file that records no base (as diffusers' scripts write it) is loaded only when asked to
    tensors, metadata = LO.read(path)
    bare = tmp_path / "bare" / LO.WEIGHTS_NAME
    bare.parent.mkdir()
    save_file(tensors, str(bare), metadata={"format": "pt", "lora_adapter_metadata": metadata["lora_adapter_metadata"]})
    with pytest.raises(LO.LoRAError, match="records no base model"):
        LO.load(pivot_pipe(tuned), bare)
    again = pivot_pipe(tuned)
    assert LO.load(again, bare, check_base=False) == LO.ADAPTER
    assert np.array_equal(images(again), tuned["images"])
    with pytest.raises(LO.LoRAError, match="already holds an adapter"):
        LO.load(again, bare, check_base=False)


# ----------------------------------------------------------------------------- bad input

def test_bad_input_is_refused_before_anything_changes():
    pipe = tiny_pipe()
    TI.add_token(pipe)  # a pivot (the initial word's row) is enough to be refused
    for rank in (0, -1, 1.5, True):
        with pytest.raises(LO.LoRAError, match="rank of a LoRA update"):
            LO.tune(pipe, rank=rank, steps=1)
    with pytest.raises(LO.LoRAError, match="alpha"):
        LO.tune(pipe, alpha=0, steps=1)
    for target, missing in (("to_x", "to_x"), ("attn3.to_q", "attn3.to_q"), (["to_q", "to_qq"], "to_qq")):
        with pytest.raises(LO.LoRAError, match=f"the UNet has no module '{missing}' to adapt"):
            LO.tune(pipe, targets=target, steps=1)
    none = concept.ConceptImages((), np.zeros((0, 32, 32, 3), np.uint8), np.zeros((0, 32, 32), bool))
    with pytest.raises(LO.LoRAError, match="no example image"):
        LO.tune(pipe, none, steps=1)
    with pytest.raises(LO.LoRAError, match="'<moon>' is not a word of this pipeline"):
        LO.tune(pipe, token="<moon>", steps=1)
    assert not getattr(pipe.unet, "peft_config", None)  # nothing was added
    LO.add(pipe)
    with pytest.raises(LO.LoRAError, match="already holds an adapter named 'pivot'"):
        LO.tune(pipe, steps=1)
    encoder = pipe.text_encoder
    dit = P.assemble(L.build_dit(L.DIT_SIZES["smoke"], L.text_width(encoder)),
                     seeded(lambda: A.build_vae((8, 16, 16), groups=4), 0), encoder, "velocity")
    with pytest.raises(LO.LoRAError, match="not a UNet"):
        LO.tune(dit, steps=1)
    with pytest.raises(ValueError, match="nothing to load into"):
        dit.load_lora_weights("anywhere")


# ----------------------------------------------------------------------------- a seed repeats the run

def test_a_seed_repeats_the_run_and_another_seed_does_not():
    runs = []
    for i, seed in enumerate((5, 5, 6)):
        pipe = tiny_pipe()
        TI.add_token(pipe)
        torch.manual_seed(100 + i)  # whatever ran before: the global generator's state does not matter
        runs.append(LO.tune(pipe, steps=3, lr=LR, rank=2, batch_size=3, log_every=3, seed=seed))
    assert timeless(runs[0].history) == timeless(runs[1].history)  # the wall time is the only difference
    assert all(torch.equal(runs[0].weights[k], v) for k, v in runs[1].weights.items())
    assert not all(torch.equal(runs[0].weights[k], v) for k, v in runs[2].weights.items())
    assert runs[0].settings["batch_size"] == 3 and runs[0].rank == 2 and runs[0].alpha == 2.0  # alpha = rank


# ----------------------------------------------------------------------------- PTI's locality term

def test_slerp_states_keeps_the_ends_and_moves_the_norm_linearly():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 5, 8, generator=g), 3 * torch.randn(3, 5, 8, generator=g)
    assert torch.allclose(LO.slerp_states(a, b, 1e-9), a, atol=1e-6)
    assert torch.allclose(LO.slerp_states(a, b, 1 - 1e-9), b, atol=1e-5)
    half = LO.slerp_states(a, b, 0.5)
    assert torch.allclose(half.norm(dim=-1), (a.norm(dim=-1) + b.norm(dim=-1)) / 2, atol=1e-5)
    cos = torch.nn.functional.cosine_similarity  # half-way in angle between the two directions
    assert torch.allclose(cos(half, a, dim=-1), cos(half, b, dim=-1), atol=1e-5)
    assert torch.equal(LO.slerp_states(a, a.clone(), 0.3), a)  # equal vectors (the tokens before the word) stay


def test_the_locality_term_holds_the_class_to_the_base_and_is_recorded():
    free = tiny_pipe()
    TI.invert(free, steps=4, lr=2e-2, log_every=2, seed=0)
    held = tiny_pipe()
    TI.invert(held, steps=4, lr=2e-2, log_every=2, seed=0)
    plain = LO.tune(free, steps=12, lr=5e-2, log_every=6, seed=0)
    local = LO.tune(held, steps=12, lr=5e-2, log_every=6, seed=0, locality=10.0)
    assert plain.history[0]["locality"] is None and all(h["locality"] is None for h in plain.history)
    assert all(h["locality"] >= 0 for h in local.history[1:]) and local.settings["anchor"] == TI.INITIALIZER
    assert "locality" not in plain.settings and local.settings["locality"] == 10.0
    # the class word's images (the anchor itself) move less from the base's with the term than without
    prompts, base = ["a small red diamond", "a large blue diamond"], tiny_pipe()
    TI.invert(base, steps=4, lr=2e-2, log_every=2, seed=0)
    drawn = {k: P.Generator(p, SAMPLING)(prompts, 3).astype(float) for k, p in (("free", free), ("held", held))}
    start = P.Generator(base, SAMPLING)(prompts, 3).astype(float)
    assert np.abs(drawn["held"] - start).mean() < np.abs(drawn["free"] - start).mean()


def test_bad_locality_settings_are_refused_before_anything_changes():
    pipe = tiny_pipe()
    TI.invert(pipe, steps=2, lr=2e-2, log_every=1, seed=0)
    for kwargs in ({"locality": -1.0}, {"locality": 1.0, "between": 0.0}, {"locality": 1.0, "between": 1.0}):
        with pytest.raises(LO.LoRAError):
            LO.tune(pipe, steps=2, **kwargs)
    with pytest.raises(TI.InversionError, match="not a word"):
        LO.tune(pipe, steps=2, locality=1.0, anchor="hexagon")
    assert not getattr(pipe.unet, "peft_config", {})  # nothing added by a refused call


def test_the_locality_term_in_context_reads_its_prompts_and_refuses_one_without_the_word():
    pipe = tiny_pipe()
    TI.invert(pipe, steps=2, lr=2e-2, log_every=1, seed=0)
    contexts = ["a small red <star> above a blue circle", "a large green <star> to the left of a red square"]
    with pytest.raises(LO.LoRAError, match="must hold the word"):
        LO.tune(pipe, steps=2, locality=1.0, contexts=[contexts[0], "a small red circle"])
    assert not getattr(pipe.unet, "peft_config", {})
    held = LO.tune(pipe, steps=4, lr=5e-2, log_every=2, seed=0, locality=1.0, contexts=contexts)
    assert held.settings["contexts"] == contexts and all(h["locality"] >= 0 for h in held.history[1:])
    pipe.delete_adapters(LO.ADAPTER)
    plain = LO.tune(pipe, steps=4, lr=5e-2, log_every=2, seed=0, locality=1.0)
    assert any(not torch.equal(plain.weights[k], v) for k, v in held.weights.items())  # the contexts count
