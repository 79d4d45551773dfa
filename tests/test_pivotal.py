"""The pivotal-tuning recipes at smoke (issues: textual inversion, LoRA): ``<star>`` learned on the smoke ``ldm-unet``,
then a LoRA tuned around it, each cached next to its weights under a key of their digest and the settings, loaded back
bit for bit, made again for other settings, and never cached next to a base that is not saved."""

import json
import shutil

import numpy as np
import pytest
import torch

from text2image import checkpoints, profiles, recipes
from text2image.methods import lora as LO
from text2image.methods import textual_inversion as TI
from text2image.recipes import latent as R
from text2image.recipes import pivotal as PV

PROFILE = "smoke"


def test_the_word_is_learned_once_cached_next_to_the_base_and_loaded_back():
    pipe, first = PV.textual_inversion(profile=PROFILE)
    config = PV.settings(PROFILE)
    folder = PV.inversion_folder(PV.BASE, PROFILE, config)
    base = recipes.checkpoint_folder(PV.BASE, PROFILE)
    assert folder.parent.parent == base and (folder / TI.WEIGHTS_NAME).is_file()
    assert TI.read(folder)[1][TI.BASE_KEY] == first.base == TI.base_digest(R.model(PV.BASE, PROFILE)[0].tokenizer,
                                                                           R.model(PV.BASE, PROFILE)[0].text_encoder)
    assert checkpoints.weights_digest(base) != "none"  # the inversion is no weight of the base's
    history = json.loads((folder / "history.json").read_text())
    assert history == first.history and [h["step"] for h in history] == list(range(0, config["steps"] + 1, 2))
    images = TI.sample(pipe, ["a small red <star>"], seed=1, sampling=R.default_sampling(PROFILE))

    again_pipe, again = PV.textual_inversion(profile=PROFILE)  # from the cache: nothing learned
    assert torch.equal(again.embedding, first.embedding) and torch.equal(again.initial, first.initial)
    assert again.history == first.history and again.settings == first.settings
    assert np.array_equal(TI.sample(again_pipe, ["a small red <star>"], seed=1,
                                    sampling=R.default_sampling(PROFILE)), images)

    other = PV.inversion_folder(PV.BASE, PROFILE, PV.settings(PROFILE, lr=1e-2))
    assert other != folder and not other.exists()  # another learning rate, another folder


def test_a_base_with_no_saved_weights_is_never_cached_next_to():
    recipes.load_or_train(PV.BASE, PROFILE, progress=False)  # a saved base is there, its folder a key
    folder = PV.inversion_folder(PV.BASE, PROFILE, PV.settings(PROFILE, steps=2))
    shutil.rmtree(folder, ignore_errors=True)
    with recipes.untrained():
        pipe, inversion = PV.textual_inversion(profile=PROFILE, steps=2)
    assert inversion.history[-1]["step"] == 2 and "<star>" in pipe.tokenizer.get_vocab()
    assert not folder.exists()  # the saved base's key, never written for a built base
    with pytest.raises(profiles.ProfileError):
        PV.settings("nowhere")


# ----------------------------------------------------------------------------- the LoRA around the pivot

def test_the_lora_is_tuned_once_cached_next_to_the_base_and_loaded_back():
    pipe, inversion, first = PV.lora(profile=PROFILE)
    config = PV.lora_settings(PROFILE)
    pivot = PV.inversion_folder(PV.BASE, PROFILE, PV.settings(PROFILE))
    folder = PV.lora_folder(PV.BASE, PROFILE, pivot, config)
    base = recipes.checkpoint_folder(PV.BASE, PROFILE)
    assert folder.parent.parent == base and (folder / LO.WEIGHTS_NAME).is_file()
    assert LO.read(folder)[1][LO.BASE_KEY] == first.base == LO.base_digest(R.model(PV.BASE, PROFILE)[0].unet)
    assert first.token == inversion.token == "<star>" and first.rank == LO.RANK
    history = json.loads((folder / "history.json").read_text())
    assert history == first.history and [h["step"] for h in history] == list(range(0, config["steps"] + 1, 2))
    prompts, sampling = ["a small red <star>"], R.default_sampling(PROFILE)
    images = TI.sample(pipe, prompts, seed=1, sampling=sampling)

    again_pipe, _, again = PV.lora(profile=PROFILE)  # from the cache: nothing tuned
    assert set(again.weights) == set(first.weights)
    assert all(torch.equal(again.weights[k], v) for k, v in first.weights.items())
    assert again.history == first.history and again.settings == first.settings
    assert np.array_equal(TI.sample(again_pipe, prompts, seed=1, sampling=sampling), images)
    again_pipe.unload_lora_weights()  # the word alone again: the inversion's images
    assert np.array_equal(TI.sample(again_pipe, prompts, seed=1, sampling=sampling),
                          TI.sample(PV.textual_inversion(profile=PROFILE)[0], prompts, seed=1, sampling=sampling))

    other = PV.lora_folder(PV.BASE, PROFILE, pivot, PV.lora_settings(PROFILE, rank=2))
    assert other != folder and not other.exists()  # another rank, another folder
    relearnt = PV.inversion_folder(PV.BASE, PROFILE, PV.settings(PROFILE, lr=1e-2))
    assert PV.lora_folder(PV.BASE, PROFILE, relearnt, config) != folder  # another word, another folder


def test_a_lora_on_a_base_with_no_saved_weights_is_never_cached():
    recipes.load_or_train(PV.BASE, PROFILE, progress=False)  # a saved base is there, its folder a key
    pivot = PV.inversion_folder(PV.BASE, PROFILE, PV.settings(PROFILE))
    folder = PV.lora_folder(PV.BASE, PROFILE, pivot, PV.lora_settings(PROFILE, steps=2))
    shutil.rmtree(folder, ignore_errors=True)
    with recipes.untrained():
        pipe, _, adapter = PV.lora(profile=PROFILE, steps=2)
    assert adapter.history[-1]["step"] == 2 and pipe.unet.active_adapters() == [LO.ADAPTER]
    assert not folder.exists()  # the saved base's key, never written for a built base
    assert PV.lora_folder(PV.BASE, PROFILE, None, PV.lora_settings(PROFILE, steps=2)) is None


# ----------------------------------------------------------------------------- the measures of the chapter

def test_the_measures_of_a_point_are_cached_next_to_the_base_and_computed_once(monkeypatch):
    first = PV.inversion_measures(4, profile=PROFILE)
    assert first["step"] == 4 and first["distance"] > 0 and set(first) >= {"reconstruction", "editability"}
    assert first["reconstruction"]["star"]["n"] == PV.MEASURE_PROMPTS[PROFILE]
    base = recipes.checkpoint_folder(PV.BASE, PROFILE)
    assert list(base.glob("pivot-*.json"))

    def no_sampling(*args, **kwargs):
        raise AssertionError("a cached point was measured again")
    monkeypatch.setattr(PV, "_measures", no_sampling)
    assert json.dumps(PV.inversion_measures(4, profile=PROFILE)) == json.dumps(first)  # NaN: no star to size
    monkeypatch.undo()
    start = PV.inversion_measures(0, profile=PROFILE)  # another point of the same path is another measure
    assert start["distance"] == 0.0
    with pytest.raises(TI.InversionError, match="logged steps"):
        PV.inversion_measures(3, profile=PROFILE)


def test_the_ceiling_is_the_world_through_the_vae_and_the_base_its_own_shapes():
    ceiling = PV.ceiling_measures(profile=PROFILE)
    assert set(ceiling["reconstruction"]) >= {"star", "star_small", "star_large"}
    assert ceiling["editability"]["second"]["n"] == PV.MEASURE_PROMPTS[PROFILE]
    base = PV.base_measures(profile=PROFILE)
    assert base["editability"]["position"]["n"] == PV.MEASURE_PROMPTS[PROFILE]
    assert json.dumps(PV.base_measures(profile=PROFILE)) == json.dumps(base)


def test_the_sweeps_draw_and_remove_what_the_chapter_shows():
    inversions = PV.inversion_sweep(profile=PROFILE)
    assert list(inversions) == list(PV.INVERSION_SWEEP[PROFILE]["rates"])
    assert [p["step"] for p in inversions[PV.INVERSION_SWEEP[PROFILE]["rates"][0]]] == \
        list(PV.INVERSION_SWEEP[PROFILE]["steps"])
    loras = PV.lora_sweep(profile=PROFILE)
    assert {lr: [p["steps"] for p in points] for lr, points in loras.items()} == \
        {lr: list(steps) for lr, steps in PV.LORA_SWEEP[PROFILE].items()}
    setting = {"lr": 1e-2, "steps": 8}
    prompts = ["a small red <star>", "a large blue <star> to the left of a green circle"]
    drawn = PV.draw(prompts, seed=1, profile=PROFILE, lora=setting)
    assert drawn.shape == (2, 32, 32, 3) and not np.array_equal(drawn, PV.draw(prompts, seed=1, profile=PROFILE))
    assert np.array_equal(PV.draw(prompts, seed=1, profile=PROFILE, step=0),
                          PV.draw([p.replace("<star>", "diamond") for p in prompts], seed=1, profile=PROFILE, step=0))
    assert PV.removable(prompts, setting, seed=1, profile=PROFILE) == {"changed": True, "restored": True}


def test_the_locality_runs_are_the_sweeps_budgets_with_the_term_on_captions_or_in_context():
    local = {kind: PV.locality_sweep(kind, profile=PROFILE) for kind in PV.LOCALITY_KINDS}
    assert all(list(runs) == list(PV.LOCALITY_RUNS[PROFILE]) for runs in local.values())
    assert len({json.dumps(list(runs.values()), sort_keys=True) for runs in local.values()}) == 3  # three adapters
    _, _, held = PV.lora(profile=PROFILE, lr=1e-2, steps=8, locality=PV.LOCALITY, contexts=PV.CONTEXTS[PROFILE])
    assert len(held.settings["contexts"]) == PV.CONTEXTS[PROFILE] and held.settings["locality"] == PV.LOCALITY
    assert all("<star>" in text for text in held.settings["contexts"])
    measured = {p["reconstruction"]["star"]["n"] for p in PV.lora_sweep(profile=PROFILE)[1e-2]}
    assert measured == {PV.MEASURE_PROMPTS[PROFILE]}
    adapters = PV.all_adapters(profile=PROFILE)
    assert len(adapters) == sum(map(len, PV.LORA_SWEEP[PROFILE].values())) + 2 * len(PV.LOCALITY_RUNS[PROFILE])
    assert all(size > 0 for _, size in adapters)
    with pytest.raises(ValueError, match="unknown kind"):
        PV.locality_sweep("everywhere", profile=PROFILE)
    assert PV.sweep_seconds(profile=PROFILE) > PV.run_seconds(profile=PROFILE) > 0
