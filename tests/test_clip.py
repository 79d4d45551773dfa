"""The small CLIP: loss and temperature, training moves, hard negatives, scoring helpers, shipped checkpoints."""

import collections
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from text2image import checkpoints, recipes
from text2image.charts import clip as charts
from text2image.evaluate import clip as clip_eval
from text2image.models import clip as M
from text2image.recipes import clip as R
from text2image.world import parse_caption, splits


@pytest.fixture(scope="module")
def tiny():
    return M.build(M.SIZES["smoke"])


def relation_examples(n=5):
    return [e for e in splits.examples("train", 0, 80) if e.prompt.kind == "relation"][:n]


# ----------------------------------------------------------------------------- model and loss

def test_config_follows_the_world_tokenizer(tiny):
    from text2image import text
    tc = tiny.config.text_config
    assert tc.vocab_size == len(text.tokenizer()) and tc.max_position_embeddings == text.MAX_LENGTH
    assert (tc.pad_token_id, tc.bos_token_id, tc.eos_token_id) == (0, 1, 2)
    assert tiny.config.vision_config.image_size == 32


def test_logit_scale_starts_at_one_over_007_and_is_clamped_at_100(tiny):
    model = M.build(M.SIZES["smoke"])
    assert math.isclose(float(model.logit_scale.detach()), math.log(1 / 0.07), rel_tol=1e-6)
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    value = M.clamp_logit_scale(model)
    assert math.isclose(float(model.logit_scale.detach()), math.log(100), rel_tol=1e-6)
    assert math.isclose(float(value.detach().exp()), 100.0, rel_tol=1e-5)
    z = F.normalize(torch.randn(4, 8), dim=-1)
    _, metrics = M.contrastive_loss(z, z, torch.tensor(10.0))
    assert math.isclose(float(metrics["scale"]), 100.0, rel_tol=1e-5)


def test_loss_is_symmetric_infonce_and_negatives_only_count_as_negatives():
    torch.manual_seed(0)
    img, txt = F.normalize(torch.randn(6, 8), dim=-1), F.normalize(torch.randn(6, 8), dim=-1)
    scale = torch.tensor(math.log(1 / 0.07))
    loss, m = M.contrastive_loss(img, txt, scale)
    logits = scale.exp() * img @ txt.T
    target = torch.arange(6)
    expected = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    assert torch.allclose(loss, expected)
    extra = F.normalize(torch.randn(3, 8), dim=-1)
    _, m2 = M.contrastive_loss(img, torch.cat([txt, extra]), scale, n_pairs=6)
    assert torch.allclose(m2["t2i"], m["t2i"])  # negatives never act as queries
    assert m2["i2t"] > m["i2t"]  # but every image must beat them too
    aligned, _ = M.contrastive_loss(img, img, scale)
    assert aligned < loss


def test_pooling_is_at_the_first_eos(tiny):
    enc = M.tokens(["a red circle", "there are two blue squares"])
    hidden, pooled = M.text_states(tiny, enc["input_ids"], enc["attention_mask"])
    for row in range(2):
        eos = int((enc["input_ids"][row] == 2).nonzero()[0])
        assert torch.allclose(pooled[row], hidden[row, eos])
    trimmed = M.tokens(["a red circle"])
    padded = M.tokens(["a red circle"], trim=False)
    assert trimmed["input_ids"].shape[1] == 5 and padded["input_ids"].shape[1] == 32
    a = M.text_features(tiny, **trimmed)
    b = M.text_features(tiny, **padded)
    assert torch.allclose(a, b, atol=1e-5)


def test_a_few_steps_lower_the_loss():
    model = M.build(M.SIZES["smoke"])
    batch = R.batch(0, 16, negatives=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss, _ = M.loss_fn(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.2


# ----------------------------------------------------------------------------- hard negatives

def test_relation_negative_reverses_the_relation_only():
    for e in relation_examples():
        neg = M.reverse_relation(e.caption)
        assert neg != e.caption.text
        i, rel, j = e.prompt.relation
        read = parse_caption(neg).prompt
        assert read.specs == e.prompt.specs
        assert read.relation[1] != rel and {read.relation[1], rel} in ({"left", "right"}, {"above", "below"})
        changed = [a for a, b in zip(e.caption.words, neg.replace(",", " ,").split()) if a != b]
        assert len(changed) == 1


def test_attribute_swap_keeps_the_words_and_is_false_of_the_scene():
    found = 0
    for e in splits.examples("train", 0, 120):
        neg = M.swap_attributes(e.caption, e.scene)
        if neg is None:
            continue
        found += 1
        assert neg != e.caption.text
        assert collections.Counter(neg.split()) == collections.Counter(e.caption.text.split())
        specs = parse_caption(neg).prompt.specs
        assert not all(any(s.matches(o) for o in e.scene.objects) for s in specs)
    assert found > 20


def test_exchanged_objects_are_the_same_bag_of_words():
    for e in relation_examples():
        neg = M.exchange_objects(e.caption)
        assert neg != e.caption.text
        assert sorted(neg.split()) == sorted(e.caption.text.split())
        read = parse_caption(neg).prompt
        assert read.specs == e.prompt.specs[::-1]


def test_batches_put_the_hard_negatives_after_the_captions():
    plain, hard = R.batch(3, 8, negatives=False), R.batch(3, 8, negatives=True)
    assert torch.equal(plain["pixel_values"], hard["pixel_values"])
    assert plain["n_negatives"] == 0 and hard["n_negatives"] > 0
    assert hard["input_ids"].shape[0] == 8 + hard["n_negatives"]
    examples = splits.examples("train", 24, 32)
    expected = [t for e in examples for t in M.hard_negatives(e.caption, e.scene).values()]
    assert M.tokens(expected)["input_ids"].tolist() == hard["input_ids"][8:, :M.tokens(expected)["input_ids"].shape[1]].tolist()
    assert torch.equal(R.batch(3, 8, negatives=True)["input_ids"], hard["input_ids"])  # pure in the step


def test_twin_batches_pair_each_first_example_with_its_shape_twin():
    b = R.batch(3, 8, negatives=False, twins=0.5)
    assert b["pixel_values"].shape[0] == 8 and b["n_negatives"] == 0
    base = splits.examples("train", 12, 16)  # 4 new examples per step, then their 4 twins
    texts = [e.caption.text for e in base]
    texts += [splits.shape_twin(e, np.random.default_rng([R.TWIN_SEED, 3, k])).caption.text for k, e in enumerate(base)]
    expected = M.tokens(texts)["input_ids"]
    assert torch.equal(b["input_ids"], expected)
    assert torch.equal(R.batch(3, 8, negatives=False, twins=0.5)["pixel_values"], b["pixel_values"])


def test_relation_twin_batches_reverse_every_relation_they_can():
    examples = R.batch_examples(7, 64, twins=0.5, relation_twins=True)
    base, twins = examples[:32], examples[32:]
    assert len(twins) == 32
    for k, (e, twin) in enumerate(zip(base, twins)):
        expected = splits.relation_twin(e, np.random.default_rng([R.TWIN_SEED, 7, k]))
        if expected is None:
            expected = splits.shape_twin(e, np.random.default_rng([R.TWIN_SEED, 7, k]))
        assert twin == expected
    reversed_ = sum(t.prompt.relation != e.prompt.relation for e, t in zip(base, twins))
    assert reversed_ >= 5
    assert R.relation_twins_per_batch(64, 0.5, steps=8) == pytest.approx(
        np.mean([sum(t.prompt.relation != e.prompt.relation for e, t in zip(b[:32], b[32:]))
                 for b in (R.batch_examples(s, 64, twins=0.5, relation_twins=True) for s in range(8))]))
    assert R.batch_examples(7, 64, twins=0.5) != examples  # shape twins only, as the baseline saw them
    heavy = R.relation_twins_per_batch(64, 0.5, mix=R.FINE_TUNE_MIX, steps=8)
    assert heavy > 1.5 * R.relation_twins_per_batch(64, 0.5, steps=8)  # the fine-tuning mix: more relations


def test_twins_leave_no_caption_that_colours_counts_and_sizes_single_out():
    assert R.told_apart_without_shapes(64, twins=0.5, steps=3) == 0.0
    assert R.told_apart_without_shapes(64, twins=0.0, steps=3) > 0.3


def test_negclip_goes_on_from_the_baseline_on_examples_it_never_saw(tmp_path, monkeypatch):
    (tmp_path / "_quarto.yml").write_text("project:\n  type: book\n")
    monkeypatch.setenv("TEXT2IMAGE_ROOT", str(tmp_path))
    baseline, _ = recipes.load_or_train("clip", "smoke", progress=False)
    start = recipes.get("clip-negatives").build("smoke")
    for a, b in zip(baseline.state_dict().values(), start.state_dict().values()):
        torch.testing.assert_close(a, b)
    for name in ("clip-continued", "clip-negatives", "clip-relation-twins"):
        config = recipes.get(name).config("smoke")
        assert config.extra["first_step"] == recipes.get("clip").config("smoke").steps
    assert recipes.get("clip-relation-twins").config("cpu").extra["relation_twins"]


def test_the_control_sees_negclips_examples_without_its_negatives():
    model = M.build(M.SIZES["smoke"])
    control = recipes.get("clip-continued").task(model, "smoke")[1](0)
    negclip = recipes.get("clip-negatives").task(model, "smoke")[1](0)
    torch.testing.assert_close(control["pixel_values"], negclip["pixel_values"])
    assert control["n_negatives"] == 0 < negclip["n_negatives"]


# ----------------------------------------------------------------------------- scoring on hand-built matrices

def test_recall_at_k_on_a_hand_built_matrix():
    sim = np.array([[0.9, 0.1, 0.0], [0.8, 0.7, 0.1], [0.1, 0.2, 0.3]])
    assert clip_eval.recall_at_k(sim, 1) == pytest.approx(2 / 3)
    assert clip_eval.recall_at_k(sim, 2) == 1.0
    # rows 0 and 1 share a caption text: row 1 retrieving column 0 is right
    assert clip_eval.recall_at_k(sim, 1, groups=[0, 0, 1]) == 1.0


def test_probe_and_ranking_scores():
    assert clip_eval.probe_accuracy(np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.9, 0.2]])) == pytest.approx(
        (1 + 0 + 0.5 + 1) / 4)
    r = clip_eval.ranking_scores(np.array([[3, 2, 1], [3, 1, 2], [1, 2, 3], [2, 1, 0]]))
    assert r["order"] == 0.5 and r["match_over_partial"] == 0.75 and r["match_over_unrelated"] == 0.75


def test_ranking_triples_have_the_right_kinds_of_caption():
    p = clip_eval.pool("test", 60)
    keep, triples = clip_eval.ranking_triples(p)
    assert len(keep) > 30
    unrelated_free = 0
    for i, (match, partial, unrelated) in zip(keep, triples):
        e = p.examples[i]
        assert match == e.caption.text and partial != match
        assert sum(a != b for a, b in zip(match.split(), partial.split())) == 1
        specs = parse_caption(unrelated).prompt.specs
        shared = {s.shape for s in specs} & {o.shape for o in e.scene.objects}
        shared |= {s.colour for s in specs} & {o.colour for o in e.scene.objects}
        unrelated_free += not shared
    assert unrelated_free > 0.9 * len(keep)  # almost always nothing in common


def test_confusion_and_modality_gap():
    c = clip_eval.confusion(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), 3)
    assert c.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    assert clip_eval.modality_gap(a, b) == pytest.approx(math.sqrt(2))
    assert clip_eval.modality_gap(a, a) == 0


def test_slerp_stays_on_the_sphere_at_constant_speed():
    torch.manual_seed(1)
    a, b = torch.randn(16), torch.randn(16)
    ua, ub = F.normalize(a, dim=0), F.normalize(b, dim=0)
    assert torch.allclose(M.slerp(a, b, 0.0), ua, atol=1e-6)
    assert torch.allclose(M.slerp(a, b, 1.0), ub, atol=1e-6)
    omega = torch.arccos(ua @ ub)
    for t in (0.1, 0.3, 0.5, 0.8):
        z = M.slerp(a, b, t)
        assert float(z.norm()) == pytest.approx(1.0, abs=1e-5)
        assert float(torch.arccos((z @ ua).clamp(-1, 1))) == pytest.approx(t * float(omega), abs=1e-4)
    assert float(M.lerp(a, b, 0.5).norm()) < 1.0


def test_zero_shot_templates_and_ensembles(tiny):
    for attribute in clip_eval.ATTRIBUTES:
        families = clip_eval.templates(attribute)
        assert {"{}", "ensemble"} <= set(families)
        for family in families.values():
            M.tokens([t.text("two" if attribute == "count" else "small" if attribute == "size" else "red"
                             if attribute == "colour" else "circle") for t in family])  # every word is known
    p = clip_eval.pool("test", 60)
    report = clip_eval.zero_shot_report(tiny, p, ("colour",))
    assert report["colour"]["confusion"].sum() == report["colour"]["n"] > 0


# ----------------------------------------------------------------------------- shipped checkpoints

@pytest.mark.parametrize("name", ["clip", "clip-continued", "clip-negatives", "clip-relation-twins"])
def test_shipped_checkpoint_reproduces_its_manifest(name):
    folder = checkpoints.checkpoint_dir(name)
    if not (folder / checkpoints.MANIFEST).is_file():
        pytest.skip(f"no shipped checkpoint for {name}")
    manifest = checkpoints.read_manifest(folder)
    model = checkpoints.load(M.CLIPModel, folder)
    assert sum(p.numel() for p in model.parameters()) == manifest["parameters"]
    size = sum(f.stat().st_size for f in folder.iterdir())
    assert size < 10 * 2**20
    # the manifest's metrics were measured on the fp32 weights over the small validation pool of
    # the recipe; the shipped fp16 weights must give them back
    measured = clip_eval.training_metrics(model, R.eval_pool(manifest["profile"]))
    for key in ("zero_shot_shape", "zero_shot_colour", "probe_relation", "probe_attribute", "gap"):
        assert measured[key] == pytest.approx(manifest["metrics"][key], abs=0.02), key


def test_steps_to_reach_and_the_plateau_before_it():
    evals = [{"step": 3250, "p": 0.5}, {"step": 3500, "p": 0.62}, {"step": 3750, "p": 0.95}]
    assert charts.steps_to_reach(evals, "p", 0.9, first_step=3000) == 750
    assert charts.steps_to_reach(evals, "p", 0.99, first_step=3000) is None
    flat = charts.plateau(evals, "p", 0.7, first_step=3000)
    assert flat == {"n": 2, "low": 0.5, "high": 0.62, "last_step": 3500, "steps": 500}
    assert charts.plateau(evals, "p", 0.4)["n"] == 0


def test_claims_are_checked_outside_the_smoke_profile(monkeypatch):
    monkeypatch.setenv("TEXT2IMAGE_PROFILE", "cpu")
    charts.claim(True, "it holds")
    with pytest.raises(AssertionError, match="the wording changes the count"):
        charts.claim(False, "the wording changes the count")
    monkeypatch.setenv("TEXT2IMAGE_PROFILE", "smoke")
    charts.claim(False, "untrained models say nothing")
    assert charts.steps(None) == "—" and charts.steps(1250) in ("1,250", "1\u202f250")


def test_threads_are_read_from_the_manifest():
    assert charts.threads({"hardware": "x86_64 CPU, 1 threads"}) == 1
    assert charts.threads({"hardware": "x86_64 CPU, 16 threads"}) == 16


def test_worst_confusion_and_first_step_above():
    report = {"shape": {"labels": ["circle", "square", "cross"],
                        "confusion": [[8, 2, 0], [1, 9, 0], [0, 6, 4]]}}
    truth, predicted, share = charts.worst_confusion(report, "shape")
    assert (truth, predicted) == (charts.label_name("shape", "cross"), charts.label_name("shape", "square"))
    assert share == pytest.approx(0.6)
    evals = [{"step": 250, "x": 0.2}, {"step": 500, "x": 0.3}, {"step": 750, "x": 0.6}]
    assert charts.first_step_above(evals, "x", 0.4) == 750 and charts.first_step_above(evals, "x", 0.9) is None


# ----------------------------------------------------------------------------- intervals and held-out splits

def test_share_of_reads_k_of_n_with_a_wilson_interval():
    from text2image.evaluate import intervals
    result = {"zero_shot": {"shape": {"accuracy": 0.75, "n": 8, "by_template": {"{}": 0.5, "ensemble": 0.75}}},
              "probe": {"relation": 0.45, "relation_n": 10, "relation_ties": 1},
              "ranking": {"order": 0.9, "n": 20}, "retrieval": {"t2i_r1": 0.25, "n": 4}}
    s = clip_eval.share_of(result, "zero_shot", "shape")
    assert (s.k, s.n, s.p) == (6, 8, 0.75) and (s.lo, s.hi) == pytest.approx(intervals.wilson(6, 8))
    assert clip_eval.share_of(result, "zero_shot", "shape", "{}").k == 4
    probe = clip_eval.share_of(result, "probe", "relation")  # 4 wins and a tie: 4.5 of 10
    assert probe.p == 0.45 and probe.lo < 0.45 < probe.hi
    assert (probe.lo, probe.hi) == pytest.approx(intervals.wilson(4.5, 10))
    assert clip_eval.share_of(result, "ranking", "order").k == 18
    assert clip_eval.share_of(result, "retrieval", "t2i_r1").n == 4


def test_class_share_reads_the_rows_of_the_confusion_matrix():
    report = {"shape": {"labels": ["circle", "square", "cross"], "confusion": [[8, 2, 0], [1, 9, 0], [0, 6, 4]]}}
    s = clip_eval.class_share(report, "shape", ["square", "cross"])
    assert (s.k, s.n) == (13, 20)
    assert clip_eval.heldout_labels("shape") == sorted({s for _, s in splits.HELDOUT_PAIRS})
    assert clip_eval.heldout_labels("colour") == sorted({c for c, _ in splits.HELDOUT_PAIRS})


def test_the_protocols_run_on_the_heldout_splits(tiny):
    pairs = clip_eval.pool("heldout_pairs", 40)
    relations = clip_eval.pool("heldout_relations", 30)
    assert all(splits.is_heldout(e.prompt) for e in pairs.examples + relations.examples)
    r = clip_eval.analyse(tiny, relations)
    assert r["zero_shot"] == {}  # relation scenes only: nothing to classify
    assert set(clip_eval.PROBES) <= set(r["probe"]) and r["probe"]["relation_n"] == 30
    assert r["ranking"]["n"] > 0 and r["retrieval"]["n"] == 30
    assert r["geometry"]["gap_lo"] <= r["geometry"]["gap"] <= r["geometry"]["gap_hi"]
    r = clip_eval.analyse(tiny, pairs)
    single = clip_eval.zero_shot_pool(pairs, "shape")
    assert r["zero_shot"]["shape"]["n"] == len(single) > 0
    truth = {getattr(e.scene.objects[0], "shape") for e in single.examples}
    assert truth <= set(clip_eval.heldout_labels("shape"))


def test_some_hard_negatives_state_a_heldout_composition():
    examples = splits.examples("train", 0, 400)
    counts = clip_eval.heldout_in_negatives(examples)
    expected = sum(len(M.hard_negatives(e.caption, e.scene)) for e in examples)
    assert counts["negatives"] == expected
    assert 0 < counts["heldout"] <= counts["pairs"] + counts["relations"]
    assert not any(splits.is_heldout(e.prompt) for e in examples)  # the true captions never are


def test_bootstrap_interval_of_the_gap_brackets_it():
    torch.manual_seed(0)
    zi, zt = F.normalize(torch.randn(200, 8) + 1, dim=-1), F.normalize(torch.randn(200, 8), dim=-1)
    lo, hi = clip_eval.bootstrap_gap(zi, zt, draws=300)
    assert lo < clip_eval.modality_gap(zi, zt) < hi
    assert clip_eval.bootstrap_gap(zi, zt, draws=300) == (lo, hi)  # seeded


def test_path_switches_count_every_change_of_the_retrieved_object():
    p = clip_eval.pool("test", 80)
    single = [i for i, e in enumerate(p.examples) if len(e.scene.objects) == 1]
    a = next(i for i in single)
    b = next(i for i in single if p.examples[i].scene.objects[0].shape != p.examples[a].scene.objects[0].shape)
    path = [{"t": t, "image": i} for t, i in ((0.0, a), (0.5, a), (1.0, b))]
    switches = clip_eval.path_switches(path, p, ("shape",))
    assert switches == {"shape": [1.0]}
    several = next(i for i, e in enumerate(p.examples) if len(e.scene.objects) > 1)
    path = [{"t": t, "image": i} for t, i in ((0.0, a), (0.5, several), (1.0, a))]
    assert clip_eval.path_switches(path, p, ("shape",)) == {"shape": [0.5, 1.0]}


# ----------------------------------------------------------------------------- the chapter itself

def _chapter(lang):
    from pathlib import Path
    return (Path(__file__).resolve().parents[1] / "book" / lang / "clip.qmd").read_text()


def test_chapter_code_lines_fit_the_code_box():
    import re
    for lang in ("fr", "en"):
        for cell in re.findall(r"```\{python\}\n(.*?)```", _chapter(lang), flags=re.S):
            for line in cell.splitlines():
                if not line.startswith("#|"):
                    assert len(line) <= 88, f"{lang}: {line}"


def test_chapter_editions_quote_the_same_inline_values_in_the_same_order():
    import re
    inline = [re.findall(r"`\{python\} ([^`]*)`", _chapter(lang)) for lang in ("fr", "en")]
    assert inline[0] == inline[1]
    for word in ("ticket", "lang.status", "objectif", "target", "reach_sentence", "rise_clause"):
        assert word not in _chapter("fr") + _chapter("en"), word
