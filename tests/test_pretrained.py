"""The real-weights path, run for real on a tiny random CLIP and a tiny COCO-style file written here."""

import json
import string

import numpy as np
import pytest
import torch
from PIL import Image

from text2image import pretrained


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder = tmp_path_factory.mktemp("tiny-clip")
    vocab = {}
    for c in string.ascii_lowercase:  # characters, and characters that end a word
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                 crop_size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=8)
    CLIPModel(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    folder = tmp_path_factory.mktemp("coco")
    rng = np.random.default_rng(0)
    captions = {1: ["a dog runs on the grass", "a brown dog on green grass"],
                2: ["a dog sleeps on a red sofa", "a sofa with a dog"],
                3: ["a plate of pasta with tomato sauce"],
                4: ["an airplane flying over the sea"]}
    images = []
    for image_id in captions:
        name = f"{image_id:012d}.png"
        Image.fromarray(rng.integers(0, 255, (24 + image_id, 30, 3), dtype=np.uint8)).save(folder / name)
        images.append({"id": image_id, "file_name": name, "height": 24 + image_id, "width": 30})
    images.append({"id": 9, "file_name": "uncaptioned.png"})
    annotations = [{"id": 100 + k, "image_id": i, "caption": c}
                   for k, (i, cs) in enumerate(captions.items()) for c in cs]
    path = folder / "captions_tiny.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


def test_nothing_is_downloaded_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not pretrained.clip_available("openai/clip-vit-base-patch32-not-cached")
    with pytest.raises(pretrained.WeightsUnavailable, match="allow_download=True"):
        pretrained.load_clip("openai/clip-vit-base-patch32-not-cached")


def test_local_tiny_clip_loads_and_scores(tiny_clip):
    assert pretrained.clip_available(str(tiny_clip))
    model, processor = pretrained.load_clip(str(tiny_clip))
    images = [np.zeros((40, 50, 3), np.uint8), np.full((32, 32, 3), 200, np.uint8)]
    scores = pretrained.clip_scores(model, processor, images, ["a dog", "a cat on grass", "sea"])
    assert scores.shape == (2, 3) and np.all(np.abs(scores) <= 1 + 1e-5)


def test_coco_loader(coco):
    records = pretrained.load_coco_captions(coco)
    assert [r.image_id for r in records] == [1, 2, 3, 4]  # the image without a caption is dropped
    assert records[0].captions == ["a dog runs on the grass", "a brown dog on green grass"]
    assert records[0].path.is_file()
    with pytest.raises(ValueError, match="images"):
        bad = coco.parent / "bad.json"
        bad.write_text("{}")
        pretrained.load_coco_captions(bad)


def test_coco_triples_pick_partial_and_unrelated_captions(coco):
    records = pretrained.load_coco_captions(coco)
    match, partial, unrelated = pretrained.coco_triples(records)[0]
    assert match == "a dog runs on the grass"
    assert "dog" in partial and "dog" not in unrelated
    assert pretrained.overlap(match, partial) > pretrained.overlap(match, unrelated)


def test_coco_caption_ranking_runs_the_real_code_path(tiny_clip, coco):
    model, processor = pretrained.load_clip(str(tiny_clip))
    result = pretrained.coco_caption_ranking(model, processor, pretrained.load_coco_captions(coco))
    assert result["n"] == 4 and result["scores"].shape == (4, 3)
    for key in ("order", "match_over_partial", "i2t_r1", "t2i_r1", "i2t_r5", "t2i_r5"):
        assert 0 <= result[key] <= 1
    assert result["i2t_r5"] == 1.0  # only four images: the top 5 holds them all


def test_the_hub_is_reached_only_by_the_real_weights_module():
    """Issue 14.11: every ``from_pretrained`` of the project's own files is local only."""
    import ast
    from pathlib import Path

    import text2image

    package = Path(text2image.__file__).parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "pretrained.py" and path.parent == package:
            continue  # the real-weights loaders: local unless the reader allows a download
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "from_pretrained":
                local = any(k.arg == "local_files_only" and getattr(k.value, "value", None) is True
                            for k in node.keywords)
                if not local:
                    offenders.append(f"{path.relative_to(package)}:{node.lineno}")
    assert not offenders, f"from_pretrained without local_files_only=True: {offenders}"
