"""Parts of a model with their own optimiser settings (a GAN's discriminator), and the VQ-VAE variants."""

import pytest
import torch

from text2image import recipes, train
from text2image.models import autoencoders as ae
from text2image.recipes import autoencoders as R
from text2image.world import tensors


class TwoParts(torch.nn.Module):
    """A generator and a critic, the critic asking for a tenth of the learning rate and its own clipping."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.generator, self.critic = torch.nn.Linear(4, 4), torch.nn.Linear(4, 1)

    def optimizer_groups(self):
        return [{"params": list(self.generator.parameters())},
                {"params": list(self.critic.parameters()), "lr_scale": 0.1, "betas": (0.5, 0.9),
                 "clip_alone": "critic"}]


def test_parts_get_their_learning_rate_betas_and_clipping(tmp_path):
    model = TwoParts()

    def loss_fn(m, batch):  # the generator's gradient is huge, the critic's small
        return 1e4 * m.generator(batch).pow(2).mean() + m.critic(batch).mean()

    config = train.TrainConfig(steps=1, batch_size=8, lr=1e-2, grad_clip=1.0, checkpoint_every=10)
    trainer = train.Trainer(model, loss_fn, lambda step: torch.ones(8, 4), config, tmp_path)
    critic_groups = [g for g in trainer.optimizer.param_groups if g.get("clip_alone")]
    assert {g["betas"] for g in critic_groups} == {(0.5, 0.9)}
    trainer._one_step(trainer.batch_fn(0))
    lrs = {g.get("clip_alone"): g["lr"] for g in trainer.optimizer.param_groups}
    assert lrs["critic"] == pytest.approx(0.1 * lrs[None])
    # clipped on its own, the critic's gradient keeps its norm (below 1); clipped with the generator's, it
    # would have been scaled down by the same factor as the generator's
    critic_norm = torch.cat([p.grad.flatten() for p in model.critic.parameters()]).norm()
    generator_norm = torch.cat([p.grad.flatten() for p in model.generator.parameters()]).norm()
    assert generator_norm == pytest.approx(1.0, rel=1e-4)
    assert 0.5 < critic_norm < 1.0


def test_a_model_without_parts_keeps_one_clipping_and_one_rate(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    config = train.TrainConfig(steps=1, batch_size=8, lr=1e-2, grad_clip=1.0, checkpoint_every=10)
    trainer = train.Trainer(model, lambda m, b: 1e4 * m(b).pow(2).mean(), lambda s: torch.ones(8, 4), config, tmp_path)
    trainer._one_step(trainer.batch_fn(0))
    assert {g["lr"] for g in trainer.optimizer.param_groups} == {trainer.learning_rate(0)}
    assert torch.cat([p.grad.flatten() for p in model.parameters()]).norm() == pytest.approx(1.0, rel=1e-4)


def test_the_vqgan_discriminator_has_its_own_part_and_the_ablation_has_none():
    gan = R._build_vq("vqgan", "smoke")
    groups = gan.optimizer_groups()
    assert len(groups) == 2 and groups[1]["lr_scale"] == 0.1 and groups[1]["betas"] == (0.5, 0.9)
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in gan.discriminator.parameters()}
    plain = R._build_vq("vqgan-nodisc", "smoke")
    assert plain.discriminator is None and plain.percept is not None


def test_the_paper_weighting_swaps_the_two_terms_of_the_vq_loss():
    legacy, paper = R._build_vq("vqvae", "smoke").vq, R._build_vq("vqvae-paper", "smoke").vq
    assert legacy.quantize.legacy and not paper.quantize.legacy
    paper.load_state_dict(legacy.state_dict())
    z = torch.randn(2, paper.config.vq_embed_dim, 8, 8, requires_grad=True)
    # legacy: ||sg(q) - z||^2 + 0.25 ||q - sg(z)||^2 pushes z with weight 1; the paper's with weight 0.25
    grads = []
    for model in (legacy, paper):
        _, loss, _ = model.quantize(z)
        grads.append(torch.autograd.grad(loss, z)[0])
    assert torch.allclose(grads[1], 0.25 * grads[0], atol=1e-6)


def test_validation_and_test_scenes_are_fixed_and_disjoint():
    val_scenes, val_images, _ = tensors.val_set(16)
    test_scenes, test_images, _ = tensors.test_set(16)
    assert val_scenes == tensors.val_set(16)[0]
    assert not torch.equal(val_images, test_images) and set(map(str, val_scenes)).isdisjoint(map(str, test_scenes))
    with pytest.raises(ValueError, match="fixed sets are: test, val"):
        tensors.fixed_set("train", 4)
