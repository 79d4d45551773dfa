"""TokenCompose's attention store and losses: the store leaves the UNet's prediction unchanged (the project's UNet
and a tiny random SD-1.4-shaped one), maps of shape [batch x heads, H x W, tokens] that sum to one, filed by block
and grid as SD lays them out, kept on the graph (the token loss trains the UNet), the original processors back on
exit (also after an error); the losses on hand-made maps with known values, the world's words linked to their
masks, and one clear error for each bad input."""

import math
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0

from text2image import pretrained
from text2image.methods import attention as A
from text2image.methods import tokencompose as TC
from text2image.models import latent as L
from text2image.models import seeded
from text2image.world import captions as C
from text2image.world import splits
from text2image.world.datasets import ShapesDataset
from text2image.world.render import render

TEXT_WIDTH, TOKENS = 12, 7
SD_HEADS = 2


def tiny_sd() -> UNet2DConditionModel:
    """SD 1.4's UNet layout (three cross-attention down blocks and a plain one, the cross-attention mid block, a
    plain up block and three cross-attention ones, two ResNets per down block) at toy widths."""
    return seeded(lambda: UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(8, 16, 16, 16),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, mid_block_type="UNetMidBlock2DCrossAttn",
        layers_per_block=2, cross_attention_dim=TEXT_WIDTH, norm_num_groups=4, attention_head_dim=SD_HEADS))


@pytest.fixture(scope="module")
def sd():
    return tiny_sd().eval()


@pytest.fixture(scope="module")
def project():
    return L.build_unet(L.UNET_SIZES["smoke"], TEXT_WIDTH).eval()


def inputs(batch=2, side=(16, 16), tokens=TOKENS, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch, 4, *side), generator=g), torch.randn((batch, tokens, TEXT_WIDTH), generator=g)


def layout(store):
    return {key: len(maps) for key, maps in store.groups().items()}


# ----------------------------------------------------------------------------- the store

@pytest.mark.parametrize("model", ["project", "sd"])
def test_store_leaves_the_prediction_unchanged(model, request):
    unet = request.getfixturevalue(model)
    side = (8, 8) if model == "project" else (16, 16)
    x, states = inputs(side=side)
    mask = torch.ones(2, TOKENS, dtype=torch.long)
    mask[1, 4:] = 0  # pads of the second caption left out, through the mask the UNet turns into a bias
    with torch.no_grad():
        plain = unet(x, 10, encoder_hidden_states=states, encoder_attention_mask=mask).sample
        with A.AttentionStore(unet) as store:
            recorded = unet(x, 10, encoder_hidden_states=states, encoder_attention_mask=mask).sample
            maps = store.maps()
    assert len(maps) == len(A.cross_attention_layers(unet)) > 0
    torch.testing.assert_close(recorded, plain, atol=1e-5, rtol=1e-4)
    pads = maps[0].per_head()[1, :, :, 4:]
    assert pads.max() < 1e-3  # the masked tokens get (almost) no attention


def test_only_the_cross_attention_layers_record(sd):
    names = list(sd.attn_processors)
    cross = [n for n in names if n.endswith("attn2.processor")]
    assert sorted(A.cross_attention_layers(sd)) == sorted(cross) and len(cross) == 16
    before = sd.attn_processors
    with A.AttentionStore(sd):
        inside = sd.attn_processors
        assert all(isinstance(inside[n], A.Recorder) for n in cross)
        assert all(inside[n] is before[n] for n in names if n not in cross)  # self-attention untouched


def test_maps_follow_sd_layout(sd):
    """SD 1.4 at 64 x 64 latents: down 64²x2, 32²x2, 16²x2, mid 8², up 16²x3, 32²x3, 64²x3; here at 16 x 16:
    16², 8², 4², then 2²."""
    x, states = inputs(batch=3)
    with torch.no_grad(), A.AttentionStore(sd) as store:
        sd(x, 10, encoder_hidden_states=states)
        assert layout(store) == {("down", (16, 16)): 2, ("down", (8, 8)): 2, ("down", (4, 4)): 2,
                                 ("mid", (2, 2)): 1, ("up", (4, 4)): 3, ("up", (8, 8)): 3, ("up", (16, 16)): 3}
        first = store.maps()[0]
        assert first.layer.startswith("down_blocks.0.") and first.heads == SD_HEADS
        assert first.probs.shape == (3 * SD_HEADS, 16 * 16, TOKENS)  # SD: [16, 4096, 77] at batch 2
        assert [m.block for m in store.maps()] == ["down"] * 6 + ["mid"] + ["up"] * 9  # forward order
        for m in store.maps():
            assert m.probs.shape == (3 * SD_HEADS, m.height * m.width, TOKENS)
            torch.testing.assert_close(m.probs.sum(-1), torch.ones(m.probs.shape[:2]))
        assert len(store.maps(block="up", resolution=8)) == 3
        assert len(store.maps(block=("mid", "up"), resolution=(4, 4))) == 3


def test_project_unet_layout(project):
    x, states = inputs(batch=1, side=(8, 8))
    with torch.no_grad(), A.AttentionStore(project) as store:
        project(x, 10, encoder_hidden_states=states)
        assert layout(store) == {("down", (8, 8)): 1, ("down", (4, 4)): 1, ("down", (2, 2)): 1, ("mid", (2, 2)): 1,
                                 ("up", (2, 2)): 2, ("up", (4, 4)): 2, ("up", (8, 8)): 2}


def test_grids_of_non_square_and_odd_latents(sd):
    x, states = inputs(batch=1, side=(12, 6))
    with torch.no_grad(), A.AttentionStore(sd) as store:
        sd(x, 10, encoder_hidden_states=states)
        grids = {m.resolution for m in store.maps(block="down")}
        assert grids == {(12, 6), (6, 3), (3, 2)}  # each level halves the side, rounding up
        assert store.maps(block="mid")[0].resolution == (2, 1)


def test_each_forward_records_afresh_and_clear_drops(sd):
    with torch.no_grad(), A.AttentionStore(sd) as store:
        for batch in (2, 1):
            x, states = inputs(batch=batch)
            sd(x, 10, encoder_hidden_states=states)
        maps = store.maps()
        assert len(maps) == 16 and maps[0].probs.shape[0] == 1 * SD_HEADS  # the last pass only
        store.clear()
        with pytest.raises(A.StoreError, match="no forward pass"):
            store.maps()


def test_original_processors_come_back_also_after_an_error(sd):
    before = sd.attn_processors
    hooks = len(sd._forward_pre_hooks), len(sd._forward_hooks)
    with A.AttentionStore(sd):
        pass
    assert all(sd.attn_processors[n] is p for n, p in before.items())
    with pytest.raises(RuntimeError, match="inside the body"):
        with A.AttentionStore(sd):
            assert any(isinstance(p, A.Recorder) for p in sd.attn_processors.values())
            raise RuntimeError("inside the body")
    assert all(sd.attn_processors[n] is p for n, p in before.items())
    assert (len(sd._forward_pre_hooks), len(sd._forward_hooks)) == hooks


def test_a_store_of_some_blocks_leaves_the_others_alone(sd):
    x, states = inputs(batch=1)
    with torch.no_grad(), A.AttentionStore(sd, blocks=TC.SUPERVISED) as store:
        processors = sd.attn_processors
        assert all(isinstance(processors[n], AttnProcessor2_0) for n in A.cross_attention_layers(sd)
                   if n.startswith("down_blocks"))
        sd(x, 10, encoder_hidden_states=states)
        assert {m.block for m in store.maps()} == {"mid", "up"} and len(store.maps()) == 10
        with pytest.raises(A.StoreError, match="not recorded"):
            store.maps(block="down")


def test_token_loss_trains_the_unet(project):
    unet = L.build_unet(L.UNET_SIZES["smoke"], TEXT_WIDTH).train()
    x, states = inputs(batch=2, side=(8, 8))
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[:16, :16] = True
    targets = [[TC.WordMask(2, mask)], [TC.WordMask(3, ~mask)]]
    with A.AttentionStore(unet) as store:
        unet(x, 10, encoder_hidden_states=states)
        maps = store.maps(block=TC.SUPERVISED)
        assert all(m.probs.requires_grad for m in maps)
        loss = TC.token_loss(maps, targets)
    loss.backward()
    assert loss.item() > 0
    up = unet.up_blocks[0].attentions[0].transformer_blocks[0].attn2
    assert up.to_q.weight.grad.abs().sum() > 0 and up.to_k.weight.grad.abs().sum() > 0
    assert unet.conv_in.weight.grad.abs().sum() > 0  # back through the skip connections to the first layer


# ----------------------------------------------------------------------------- the losses on hand-made maps

def hand_map(columns, token=1, tokens=3, block="up", side=2, layer="up_blocks.0"):
    """A map whose token ``token`` gets, per head, the attention ``columns[h]`` (H x W values in [0, 1]); the rest
    of each row goes to token 0, so rows sum to one."""
    columns = torch.tensor(columns, dtype=torch.float32)
    heads = columns.shape[0]
    probs = torch.zeros(heads, side * side, tokens)
    probs[:, :, token] = columns
    probs[:, :, 0] = 1 - columns
    return A.AttentionMap(layer, block, side, side, heads, probs)


TOP = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)  # 4 px: top half


def test_token_loss_on_known_maps():
    word = [[TC.WordMask(1, TOP)]]  # on the 2 x 2 grid: the top row
    inside = hand_map([[0.5, 0.5, 0.0, 0.0]])
    half = hand_map([[0.25, 0.25, 0.25, 0.25]])
    assert TC.token_loss([inside], word).item() == pytest.approx(0.0, abs=1e-7)
    assert TC.token_loss([half], word).item() == pytest.approx(0.25)
    two_heads = hand_map([[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    assert TC.token_loss([two_heads], word).item() == pytest.approx(0.125)  # per head, then averaged (not 0.0625)
    # summed over the layers of a group and over groups
    assert TC.token_loss([half, half], word).item() == pytest.approx(0.5)
    mid = hand_map([[0.25, 0.25, 0.25, 0.25]], block="mid", layer="mid_block")
    assert TC.token_loss([half, mid], word).item() == pytest.approx(0.5)


def test_pixel_loss_against_hand_computed_bce():
    word = [[TC.WordMask(1, TOP)]]
    a = [0.8, 0.4, 0.2, 0.1]
    expected = -(math.log(0.8) + math.log(0.4) + math.log(0.8) + math.log(0.9)) / 4
    assert TC.pixel_loss([hand_map([a])], word).item() == pytest.approx(expected, rel=1e-5)
    # the default takes the map averaged over heads and layers; per_head averages each head's BCE
    b = [0.4, 0.8, 0.0, 0.3]
    mean = [(u + v) / 2 for u, v in zip(a, b)]
    bce = lambda p: -(math.log(p[0]) + math.log(p[1]) + math.log(1 - p[2]) + math.log(1 - p[3])) / 4
    assert TC.pixel_loss([hand_map([a, b])], word).item() == pytest.approx(bce(mean), rel=1e-5)
    assert TC.pixel_loss([hand_map([a]), hand_map([b])], word).item() == pytest.approx(bce(mean), rel=1e-5)
    assert TC.pixel_loss([hand_map([a, b])], word, per_head=True).item() == pytest.approx((bce(a) + bce(b)) / 2,
                                                                                          rel=1e-5)


def test_hand_written_bce_is_torchs_also_on_bf16_maps():
    g = torch.Generator().manual_seed(1)
    probs = torch.rand((2, 16, 3), generator=g)
    probs[0, 0, 0], probs[0, 1, 0] = 0.0, 1.0  # the logs floored at -100, as BCELoss does
    target = (torch.rand((16, 3), generator=g) > 0.5).float()
    torch.testing.assert_close(TC.bce(probs, target), F.binary_cross_entropy(probs, target.expand_as(probs)))
    word = [[TC.WordMask(1, TOP)]]
    m = hand_map([[0.8, 0.4, 0.2, 0.1]])
    low = A.AttentionMap(m.layer, m.block, 2, 2, 1, m.probs.bfloat16())
    for loss in (TC.token_loss, TC.pixel_loss):
        assert loss([low], word).dtype == torch.float32
        assert loss([low], word).item() == pytest.approx(loss([m], word).item(), rel=1e-2)


def test_masks_are_resized_by_area_then_any_pixel():
    small = torch.zeros(32, 32, dtype=torch.bool)
    small[1:3, 1:3] = True  # 4 pixels: nearest sampling onto 2 x 2 would miss it
    assert TC.resize_mask(small, (2, 2)).tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert TC.resize_mask(small, (16, 16)).sum().item() == 4  # (1..2, 1..2) meets cells 0 and 1 on each side


def test_images_without_words_are_left_out_of_the_mean():
    half = hand_map([[0.25, 0.25, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25]])
    half = A.AttentionMap(half.layer, half.block, 2, 2, 1, half.probs)  # two images of one head
    assert TC.token_loss([half], [[TC.WordMask(1, TOP)], []]).item() == pytest.approx(0.25)


def loop_losses(maps, targets, per_head=False):
    """The losses as the paper states them, one image and one word at a time: the reference the batched
    tensor code must equal."""
    token = pixel = 0.0
    for m in maps:
        a = m.per_head().float()
        rows = []
        for b, words in enumerate(targets):
            terms = [(1 - (a[b, h, :, w.token] * TC.resize_mask(w.mask, m.resolution).flatten()).sum()
                      / a[b, h, :, w.token].sum()) ** 2 for w in words for h in range(a.shape[1])]
            if terms:
                rows.append(torch.stack(terms).mean())
        token = token + torch.stack(rows).mean()
    for (_, resolution), group in TC._grouped(maps).items():
        a = torch.stack([m.per_head() for m in group], dim=1).float()
        a = a if per_head else a.mean(dim=(1, 2), keepdim=True)
        rows = [torch.stack([TC.bce(a[b][..., w.token], TC.resize_mask(w.mask, resolution).flatten())
                             for w in words]).mean() for b, words in enumerate(targets) if words]
        pixel = pixel + torch.stack(rows).mean()
    return token, pixel


@pytest.mark.parametrize("per_head", [False, True])
def test_batched_losses_equal_the_loop_over_images_and_words(per_head):
    g = torch.Generator().manual_seed(3)
    batch, heads, tokens = 4, 2, 6

    def random_map(side, layer, block):
        probs = torch.softmax(torch.randn((batch * heads, side * side, tokens), generator=g), dim=-1)
        return A.AttentionMap(layer, block, side, side, heads, probs.requires_grad_())

    maps = [random_map(2, "mid_block", "mid"), random_map(4, "up.0", "up"), random_map(4, "up.1", "up")]
    mask = lambda: torch.rand((32, 32), generator=g) > 0.7  # noqa: E731
    targets = [[TC.WordMask(2, mask()), TC.WordMask(5, mask())], [], [TC.WordMask(1, mask())],
               [TC.WordMask(3, mask()), TC.WordMask(1, mask()), TC.WordMask(4, mask())]]
    expected = loop_losses(maps, targets, per_head)
    found = (TC.token_loss(maps, targets), TC.pixel_loss(maps, targets, per_head))
    for e, f in zip(expected, found):
        torch.testing.assert_close(f, e)
    grads = torch.autograd.grad(sum(found), [m.probs for m in maps])
    reference = torch.autograd.grad(sum(expected), [m.probs for m in maps])
    for f, e in zip(grads, reference):
        torch.testing.assert_close(f, e)


def test_sd14s_layout_is_read_on_the_meta_device_without_a_weight():
    """The student's [1, 4096, 320] is the input of SD 1.4's first cross-attention layer, not a map."""
    unet = pretrained.sd14_unet()
    assert sum(p.numel() for p in unet.parameters()) == pytest.approx(pretrained.SD14["parameters"]["denoiser"],
                                                                      rel=0.01)
    shapes = A.layer_shapes(unet, pretrained.SD14["tokens"])
    assert Counter((s.block, s.grid[0]) for s in shapes) == {
        ("down", 64): 2, ("down", 32): 2, ("down", 16): 2, ("mid", 8): 1, ("up", 16): 3, ("up", 32): 3, ("up", 64): 3}
    first = shapes[0]
    assert (first.hidden, first.context, first.maps) == ((1, 4096, 320), (1, 77, 768), (8, 4096, 77))
    assert first.inner == 320  # W_K takes the 768 text dimensions to the 320 of the block's queries
    assert {s.heads for s in shapes} == {8} and shapes[6].hidden == (1, 64, 1280)


def test_layer_shapes_of_the_project_unet(project):
    shapes = A.layer_shapes(project, TOKENS)
    assert [s.maps for s in shapes] == [(s.heads, s.grid[0] * s.grid[1], TOKENS) for s in shapes]
    assert all(s.hidden[:2] == (1, s.grid[0] * s.grid[1]) and s.context == (1, TOKENS, TEXT_WIDTH) for s in shapes)
    assert not any(isinstance(p, A.Recorder) for p in project.attn_processors.values())


# ----------------------------------------------------------------------------- words and masks of the world

def first_example(kind):
    return next(e for e in (splits.example("train", i) for i in range(200)) if e.prompt.kind == kind)


def test_words_of_the_world_get_their_objects_masks():
    for kind in ("count", "relation"):
        e = first_example(kind)
        _, masks = render([e.scene], 32)
        words = TC.word_masks(e.caption, masks[0])
        assert len(words) == len(e.caption.nouns) > 0
        for w, g in zip(words, e.caption.nouns):
            assert w.token == g.token_index and e.caption.words[w.token - 1] == g.word
            assert torch.equal(w.mask, torch.from_numpy(masks[0][list(g.objects)].any(0)))
    count = first_example("count")
    _, masks = render([count.scene], 32)
    assert len(count.caption.nouns[0].objects) == count.prompt.count  # one word, the union of several masks
    adjectives = TC.word_masks(count.caption, masks[0], roles=("noun", "colour", "size"))
    assert len(adjectives) == len(count.caption.groundings)


def test_dataset_batches_give_the_same_targets():
    data = ShapesDataset("train", size=3, cache=False)
    items = [data[i] for i in range(3)]
    token_masks = torch.stack([it["token_masks"] for it in items])
    nouns = torch.stack([it["noun_tokens"] for it in items])
    examples = [data.example(i) for i in range(3)]
    masks = np.stack([it["masks"].numpy() for it in items])
    direct = TC.batch_word_masks([e.caption for e in examples], masks)
    stored = TC.from_token_masks(token_masks, nouns)
    assert [[w.token for w in ws] for ws in direct] == [[w.token for w in ws] for ws in stored]
    assert all(torch.equal(a.mask, b.mask) for ws, vs in zip(direct, stored) for a, b in zip(ws, vs))


def test_losses_on_the_supervised_blocks_of_a_world_batch(project):
    examples = [splits.example("train", i) for i in range(2)]
    _, masks = render([e.scene for e in examples], 32)
    targets = TC.batch_word_masks([e.caption for e in examples], masks)
    x, states = inputs(batch=2, side=(8, 8), tokens=32)
    with torch.no_grad(), A.AttentionStore(project) as store:
        project(x, 10, encoder_hidden_states=states)
        both = TC.losses(store, targets)
        supervised = store.maps(block=("mid", "up"))
        assert both.token.item() == pytest.approx(TC.token_loss(supervised, targets).item())
        assert both.pixel.item() == pytest.approx(TC.pixel_loss(supervised, targets).item())
        assert both.token.item() != pytest.approx(TC.token_loss(store.maps(), targets).item())  # down left out
        assert 0 < both.token.item() < 7 and both.pixel.item() > 0  # 7 supervised layers, each loss below 1


# ----------------------------------------------------------------------------- bad input

def test_bad_input_raises_one_clear_error(sd, project):
    with pytest.raises(A.StoreError, match="unknown block.*'side'"):
        A.AttentionStore(sd, blocks=("mid", "side"))
    no_cross = UNet2DConditionModel(sample_size=8, block_out_channels=(8, 8), down_block_types=("DownBlock2D",) * 2,
                                    up_block_types=("UpBlock2D",) * 2, mid_block_type=None, norm_num_groups=4,
                                    layers_per_block=1)
    with pytest.raises(A.StoreError, match="no cross-attention layer"):
        A.AttentionStore(no_cross)
    with pytest.raises(A.StoreError, match="no cross-attention layer"):
        A.AttentionStore(torch.nn.Linear(2, 2))
    store = A.AttentionStore(project)
    with pytest.raises(A.StoreError, match="outside its `with` block"):
        store.maps()
    x, states = inputs(batch=1, side=(8, 8))
    with torch.no_grad(), store:
        with pytest.raises(A.StoreError, match="no forward pass"):
            store.maps()
        with pytest.raises(A.StoreError, match="already installed"):
            store.__enter__()
        project(x, 10, encoder_hidden_states=states)
        with pytest.raises(A.StoreError, match="unknown block.*'middle'"):
            store.maps(block="middle")
        with pytest.raises(A.StoreError, match="no recorded map at 16x16.*8x8, 4x4, 2x2"):
            store.maps(resolution=16)
        maps = store.maps()
        with pytest.raises(TC.GroundingError, match="past the 7 tokens"):
            TC.token_loss(maps, [[TC.WordMask(9, TOP)]])
        with pytest.raises(TC.GroundingError, match="1 images but there are targets for 2"):
            TC.pixel_loss(maps, [[], []])
    with pytest.raises(A.StoreError, match="outside its `with` block"):
        store.maps()
    with pytest.raises(A.StoreError, match="cannot tell the block"):
        A.block_of("transformer_blocks.0.attn2.processor")


def test_a_word_without_a_mask_raises():
    caption = C.parse("a red circle to the left of a blue square")
    two = np.zeros((2, 32, 32), dtype=bool)
    two[0, :4, :4] = two[1, 8:12, 8:12] = True
    assert [w.token for w in TC.word_masks(caption, two)] == [3, 10]
    with pytest.raises(TC.GroundingError, match=r"'square'.*names object\(s\) \[1\].*masks for 1 object"):
        TC.word_masks(caption, two[:1])
    empty = two.copy()
    empty[1] = False
    with pytest.raises(TC.GroundingError, match="'square'.*mask is empty"):
        TC.word_masks(caption, empty)
    with pytest.raises(TC.GroundingError, match="2 captions but masks for 1 image"):
        TC.batch_word_masks([caption, caption], two[None])
