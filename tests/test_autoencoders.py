"""The autoencoder family: shapes of the 8x8 bottlenecks and the hand-written pieces."""

import math

import torch

from text2image.models import autoencoders as ae


def images(n=2, seed=0):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def small():
    return dict(channels=(8, 16, 16), groups=4)


def test_every_model_maps_32px_to_an_8x8_grid_and_back():
    x = images()
    plain = ae.PlainAutoencoder(**small())
    assert plain.encode(x).shape == (2, 4, 8, 8) and plain(x).shape == x.shape
    vae = ae.build_vae(**small())
    assert vae.encode(x).latent_dist.mean.shape == (2, 4, 8, 8)
    vq = ae.build_vqvae(codebook_size=32, code_dim=8, **small())
    rec, loss, grid, vectors = ae.vq_forward(vq, x)
    assert rec.shape == x.shape and grid.shape == (2, 8, 8) and vectors.shape == (128, 8) and loss.ndim == 0
    assert torch.equal(ae.vq_codes(vq, x), grid)
    assert ae.vq_decode_codes(vq, grid).shape == x.shape
    dvae = ae.DiscreteVAE(codebook_size=32, code_dim=8, **small())
    soft, logits = dvae(x, tau=0.5)
    assert soft.shape == x.shape and logits.shape == (2, 32, 8, 8)
    hard, _ = dvae(x, hard=True)
    torch.testing.assert_close(hard, dvae.decode_codes(logits.argmax(1)))


def test_kl_to_uniform_is_zero_for_flat_logits_and_log_k_for_one_hot():
    assert ae.kl_to_uniform(torch.zeros(1, 16, 2, 2)).abs() < 1e-6
    peaked = torch.full((1, 16, 1, 1), -1e4)
    peaked[0, 3] = 0
    assert abs(ae.kl_to_uniform(peaked).item() - math.log(16)) < 1e-4


def test_temperature_anneals_from_one_to_a_sixteenth():
    assert ae.gumbel_temperature(0, 100) == 1.0
    assert abs(ae.gumbel_temperature(100, 100) - 1 / 16) < 1e-12
    assert ae.gumbel_temperature(50, 100) == 0.25


def test_dead_codes_are_moved_onto_encoder_outputs():
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(8, 2)
    restarter = ae.DeadCodeRestarter(8, every=5, threshold=0.5, decay=0.5)
    vectors = torch.randn(64, 2) + 10.0  # far from every code
    for step in range(6):
        restarted = restarter.update(embedding, torch.zeros(64, dtype=torch.long), vectors, step)
    assert restarted == 7  # every code but the used one
    moved = embedding.weight[1:]
    assert torch.cdist(moved, vectors).min(dim=1).values.max() < 1e-6


def test_codebook_stats_and_psnr():
    stats = ae.codebook_stats(torch.tensor([0, 1, 2, 3]), 8)
    assert stats["usage"] == 0.5 and abs(stats["perplexity"] - 4) < 1e-5
    x = images()
    assert torch.isinf(ae.psnr(x, x)).logical_not().all() and (ae.psnr(x, x) > 90).all()
    assert abs(ae.psnr(torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.2)).item() - 20.0) < 1e-4


def test_adaptive_weight_balances_gradients():
    layer = torch.nn.Parameter(torch.ones(3))
    rec = (layer * 2).sum()
    gan = (layer * 0.5).sum()
    assert abs(ae.adaptive_gan_weight(rec, gan, layer).item() - 4.0) < 1e-3


def test_hinge_loss_is_zero_for_a_confident_discriminator():
    assert ae.hinge_discriminator_loss(torch.full((4,), 2.0), torch.full((4,), -2.0)) == 0
    assert ae.PatchDiscriminator(8)(images()).shape == (2, 1, 8, 8)


def test_the_numbers_the_chapter_quotes_come_from_the_libraries_and_the_model():
    import inspect

    from diffusers import AutoencoderKL

    assert ae.SD_SCALING_FACTOR == AutoencoderKL().config.scaling_factor == 0.18215  # diffusers' default
    default = inspect.signature(ae.adaptive_gan_weight).parameters["max_weight"].default
    assert default == ae.TAMING_MAX_GAN_WEIGHT == 1e4
    assert ae.downsamplings(ae.PlainAutoencoder(**small())) == 2  # 32 px -> 8 x 8
    deeper = ae.build_vae(channels=(8, 8, 16, 16), groups=4)  # no block is the last width: all three halve
    assert ae.downsamplings(deeper) == 3 and deeper.encode(images()).latent_dist.mode().shape[-1] == 4
