"""Architecture diagrams: every shape they write is the one the model's real forward pass gives, a change of the
model's size changes their labels, and they fit the column at 9 pt in both editions."""

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.text  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from text2image import lang, plots  # noqa: E402
from text2image.charts import diagrams  # noqa: E402
from text2image.models import autoencoders as ae  # noqa: E402
from text2image.models import clip as M  # noqa: E402

CHANNELS, GROUPS = (8, 16, 16), 4


def tiny_autoencoders(latent=4, codebook=32, code_dim=8):
    torch.manual_seed(0)
    return {"ae": ae.PlainAutoencoder(CHANNELS, latent_channels=latent, groups=GROUPS).eval(),
            "vae": ae.build_vae(CHANNELS, latent_channels=latent, groups=GROUPS).eval(),
            "vqvae": ae.build_vqvae(CHANNELS, codebook_size=codebook, code_dim=code_dim, groups=GROUPS).eval(),
            "dvae": ae.DiscreteVAE(CHANNELS, codebook_size=codebook, code_dim=code_dim, groups=GROUPS).eval()}


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1


def texts(fig) -> list[str]:
    fig.canvas.draw()
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]


def fits_the_column(fig) -> None:
    """The book's rule, on the PNG as the page gets it (a tight box, padded 0.1 in, at the book's dpi)."""
    fig.canvas.draw()
    sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=plots.BOOK_DPI, bbox_inches="tight", pad_inches=0.1)
    width = Image.open(out).size[0]
    assert min(sizes) >= plots.MIN_TEXT_PT and width <= plots.COLUMN_PX, (min(sizes), width)
    assert plots.text_on_page(min(sizes), plots.BOOK_DPI, width) >= plots.MIN_TEXT_PT
    plots.plt.close(fig)


# ----------------------------------------------------------------------------- the shared shape reader

def test_traced_shapes_are_the_forward_pass_and_the_hooks_go_away():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, stride=2, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(5, 7, 3, stride=2, padding=1), torch.nn.Flatten())
    x = torch.zeros(2, 3, 16, 16)
    stages = [("a", net[0]), ("b", net[2]), ("flat", net[3])]
    assert diagrams.traced(stages, lambda: net(x)) == [("a", (5, 8, 8)), ("b", (7, 4, 4)), ("flat", (112,))]
    found = diagrams.read_shapes(stages, lambda: net(x))
    assert found["b"] == {"in": (5, 8, 8), "out": (7, 4, 4)}
    assert all(not m._forward_hooks for m in net)
    with pytest.raises(ValueError, match="never ran: b"):
        diagrams.read_shapes(stages, lambda: net[0](x))
    assert all(not m._forward_hooks for m in net)
    with pytest.raises(ValueError, match="share a name"):
        diagrams.read_shapes([("a", net[0]), ("a", net[2])], lambda: net(x))


def test_dims_writes_shapes_as_the_tables_do():
    assert diagrams.dims((16, 8, 8)) == "16 × 8 × 8" and diagrams.dims((64,)) == "64"


# ----------------------------------------------------------------------------- autoencoders

@pytest.mark.parametrize("name", ["ae", "vae", "vqvae", "dvae"])
def test_each_bottleneck_reads_the_shapes_of_a_real_reconstruction(name, images):
    model = tiny_autoencoders()[name]
    found = diagrams.bottleneck(name, model, images)
    with torch.no_grad():
        if name == "vae":
            grid = model.quant_conv(model.encoder(images[:1]))  # mean and log-variance, stacked
            decoded = model.encode(images[:1]).latent_dist.mode()
        elif name == "vqvae":
            grid = model.encode(images[:1]).latents
            decoded = model.quantize(grid)[0]
        elif name == "dvae":
            grid = model.logits(images[:1])
            decoded = model.codebook(grid.argmax(1)).permute(0, 3, 1, 2)
        else:
            grid = decoded = model.encode(images[:1])
    assert found["grid"] == tuple(grid.shape[1:]) and found["decoded"] == tuple(decoded.shape[1:])
    assert found["image"] == (3, 32, 32) and found["decoder"][-1][1] == (3, 32, 32)
    assert [shape for _, shape in found["encoder"]][-1] == (CHANNELS[-1], 8, 8)
    assert found["codebook"] == ae.codebook_size(model)
    assert found["tokens"] == (None if ae.codebook_size(model) is None else (8, 8))


def test_the_autoencoder_diagram_writes_what_the_models_give_and_follows_their_size(images, monkeypatch):
    monkeypatch.setenv(lang.ENV_VAR, "en")
    small = texts(diagrams.autoencoder_diagram(tiny_autoencoders(), images))
    assert "4 × 8 × 8" in small and "nearest of K = 32 codes" in small
    # the decoder's blocks climb back up: 16 channels at 16 px, then 8 at 32 px
    assert small[small.index("decoder input"):].count("16 × 16 × 16") == 1 and "8 × 32 × 32" in small
    assert "8 × 8 × 8" in small  # the VAE's mean and log-variance: twice its 4 latent channels
    large = texts(diagrams.autoencoder_diagram(tiny_autoencoders(latent=6, codebook=64, code_dim=12), images))
    assert "6 × 8 × 8" in large and "12 × 8 × 8" in large and "nearest of K = 64 codes" in large
    assert "4 × 8 × 8" not in large and "nearest of K = 32 codes" not in large


@pytest.mark.parametrize("edition", ["fr", "en"])
def test_the_autoencoder_diagrams_fit_the_column_at_9_pt(edition, images, monkeypatch):
    monkeypatch.setenv(lang.ENV_VAR, edition)
    models = tiny_autoencoders()
    models["vqgan"] = models["vqvae"]
    fits_the_column(diagrams.autoencoder_diagram(models, images, name=str.upper))
    fits_the_column(diagrams.vq_lookup(models["vqvae"], images[0]))


def test_the_vq_lookup_is_the_models_own_nearest_code(images, monkeypatch):
    monkeypatch.setenv(lang.ENV_VAR, "en")
    model = tiny_autoencoders()["vqvae"]
    found = diagrams.lookup(model, images[0])
    row, col = found["cell"]
    assert found["k"] == found["picked"] == int(ae.codes(model, images[:1])[0, row, col])
    assert torch.allclose(found["entry"], model.quantize.embedding.weight[found["k"]])
    assert found["distances"].shape == (32,) and float(found["distances"].min()) == pytest.approx(
        float((found["vector"] - found["entry"]).norm()), rel=1e-5)
    assert found["grid_in"] == found["grid_out"] == found["decoded"] == (8, 8, 8)
    words = texts(diagrams.vq_lookup(model, images[0]))
    assert "codebook\nK × D = 32 × 8" in words and f"$e_k$\nk = {found['k']}" in words
    bigger = texts(diagrams.vq_lookup(tiny_autoencoders(codebook=64, code_dim=12)["vqvae"], images[0]))
    assert "codebook\nK × D = 64 × 12" in bigger and "$z_e$\n12 × 8 × 8" in bigger


def test_the_object_cell_is_where_the_pixels_are_brightest():
    image = -torch.ones(3, 32, 32)
    image[:, 20:24, 8:12] = 1.0
    assert diagrams.object_cell(image, 8) == (5, 2)


# ----------------------------------------------------------------------------- CLIP

RECIPE = {"batch_size": 8, "extra": {"twins": 0.5}}


def tiny_clip(width=32, projection=32):
    return M.build({**M.SIZES["smoke"], "width": width, "projection": projection}).eval()


def test_clip_shapes_are_those_of_the_two_towers():
    from text2image.recipes import clip as R

    model = tiny_clip()
    batch = R.batch(0, 8, negatives=False, twins=0.5)
    found = diagrams.clip_shapes(model, batch)
    with torch.no_grad():
        states = model.vision_model(pixel_values=batch["pixel_values"]).last_hidden_state
        hidden, pooled = M.text_states(model, batch["input_ids"], batch["attention_mask"])
        u = M.image_features(model, batch["pixel_values"])
        v = M.text_features(model, batch["input_ids"], batch["attention_mask"])
    grid = 32 // model.config.vision_config.patch_size
    assert found["vision"]["patches"] == (32, grid, grid)
    assert found["vision"]["tokens"] == found["vision"]["encoder"] == tuple(states.shape[1:]) == (grid ** 2 + 1, 32)
    assert found["text"]["encoder"] == tuple(hidden.shape[1:]) and found["text"]["pooled"] == tuple(pooled.shape[1:])
    assert found["u"] == tuple(u.shape) == (8, 32) and found["v"] == tuple(v.shape)
    assert torch.allclose(found["similarity"], u @ v.T) and found["similarity"].shape == (8, 8)


def test_the_clip_diagram_reads_b_from_the_recipe_and_widths_from_the_model(monkeypatch):
    monkeypatch.setenv(lang.ENV_VAR, "en")
    words = texts(diagrams.clip_diagram(tiny_clip(), RECIPE))
    assert "columns: the B = 8 captions" in words and "rows: the B = 8 images" in words
    assert "$u_i$: 32" in words and "elsewhere: 56 negatives" in " ".join(words)
    wider = texts(diagrams.clip_diagram(tiny_clip(width=48, projection=24), {**RECIPE, "batch_size": 12}))
    tokens = (32 // M.SIZES["smoke"]["patch"]) ** 2 + 1
    assert "$u_i$: 24" in wider and "$v_j$: 24" in wider and f"{tokens} × 48" in wider
    assert "columns: the B = 12 captions" in wider


@pytest.mark.parametrize("edition", ["fr", "en"])
def test_the_clip_diagram_fits_the_column_at_9_pt(edition, monkeypatch):
    monkeypatch.setenv(lang.ENV_VAR, edition)
    fits_the_column(diagrams.clip_diagram(tiny_clip(), RECIPE))
