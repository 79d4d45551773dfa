"""Block diagrams of the book's architectures, with every shape read from the model it draws.

Nothing here types a shape: :func:`read_shapes` hooks the submodules of a real
network, runs it once on a real input, and records what goes in and comes out
of each (the batch dimension dropped). The generative chapter's shape table
(:func:`text2image.charts.generative.shapes_table`) reads its shapes with the
same helper.

The drawings are boxes (modules) and arrows (data) on one canvas measured in
inches (:func:`canvas`), ``CANVAS`` wide (the saved figure, padded, is
``WIDTH``), so that a box of 1 inch is 1 inch in the column; every text is at
least ``MIN_TEXT_PT`` there. Words go through
``lang.tr``.

* :func:`autoencoder_diagram`: the encoder, the bottleneck of each model
  (what the encoder hands it, what the decoder gets), the decoder;
* :func:`vq_lookup`: the VQ-VAE's nearest-code lookup at one position of one
  real image, and the straight-through path of the gradient;
* :func:`clip_diagram`: CLIP's two towers and the B x B similarities of a
  training batch, positives on the diagonal.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from matplotlib.patches import FancyBboxPatch, Rectangle

from text2image import lang
from text2image.models import autoencoders as ae
from text2image.plots import BOOK_DPI, MIN_TEXT_PT, WIDTH, plt
from text2image.world.tensors import to_uint8

SMALL = MIN_TEXT_PT  # lines inside boxes, labels on arrows
TITLE = 10           # the first line of a box
PAD = 0.1            # inches the saved figure's tight box adds around the canvas, on each side
CANVAS = WIDTH - 2 * PAD  # the canvas's width: with its pad, the saved figure is WIDTH wide
MARGIN = 0.03        # inches kept free inside the canvas (lines on its edge are not cut)

ENCODER = ("#e3eef9", "#1f77b4")   # face, edge
DECODER = ("#e5f4e3", "#2ca02c")
BOTTLENECK = ("#fdebd7", "#d9730d")
NEUTRAL = ("#f2f2f2", "#555555")
GRADIENT = "#d62728"


# ----------------------------------------------------------------------------- shapes

def _tensor(value):
    """The tensor a module hands on: the first of a tuple, a transformers output's ``last_hidden_state``."""
    value = value[0] if isinstance(value, (tuple, list)) else value
    return getattr(value, "last_hidden_state", value)


def read_shapes(stages: Sequence[tuple[object, torch.nn.Module]], run: Callable[[], object]) -> dict[str, dict]:
    """What goes into and comes out of each ``(name, module)`` of ``stages`` the first time ``run()`` calls it.

    One forward hook per stage, removed afterwards; gradients off. Each name
    (unique: two stages of one name would share one record) maps to ``{"in": shape, "out": shape}`` without the batch dimension
    (``"in"`` is ``None`` when the module got its input as a keyword). A stage
    that ``run()`` never reaches is an error, not a silent gap in a figure.
    """
    names = [name for name, _ in stages]
    if len(set(names)) < len(names):
        raise ValueError(f"two stages share a name: {names}")
    found, hooks = {}, []
    for name, module in stages:
        def hook(_, inputs, output, name=name):
            if name in found:
                return
            first = _tensor(inputs) if inputs else None
            found[name] = {"in": tuple(first.shape[1:]) if torch.is_tensor(first) else None,
                           "out": tuple(_tensor(output).shape[1:])}
        hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in hooks:
            h.remove()
    missing = [name for name, _ in stages if name not in found]
    if missing:
        raise ValueError(f"these stages never ran: {', '.join(missing)}")
    return found


def traced(stages: Sequence[tuple[str, torch.nn.Module]], run: Callable[[], object]) -> list[tuple[str, tuple]]:
    """The output shape of each ``(name, module)`` of ``stages`` during ``run()`` (batch dimension dropped)."""
    found = read_shapes(stages, run)
    return [(name, found[name]["out"]) for name, _ in stages]


def dims(shape: Sequence[int]) -> str:
    """``(16, 8, 8)`` as ``16 × 8 × 8``."""
    return " × ".join(str(d) for d in shape)


# ----------------------------------------------------------------------------- drawing

def canvas(width: float, height: float):
    """A figure ``width`` x ``height`` inches with one frameless axes whose data units are inches."""
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


def box(ax, x: float, y: float, w: float, h: float, lines: Sequence[str], colours=NEUTRAL, title: bool = True,
        size: float = SMALL):
    """A rounded box with its lines centred, the first one bold (its name) when ``title``."""
    face, edge = colours
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.06", facecolor=face,
                                edgecolor=edge, linewidth=1.2))
    step = h / (len(lines) + 1)
    for k, line in enumerate(lines):
        bold = title and k == 0
        ax.text(x + w / 2, y + h - step * (k + 1), line, ha="center", va="center",
                fontsize=TITLE if bold else size, fontweight="bold" if bold else "normal")


def arrow(ax, start, end, text: str | None = None, colour: str = "#333333", dashed: bool = False,
          side: str = "above", curve: float = 0.0):
    """An arrow from ``start`` to ``end`` (inches), ``text`` beside its middle."""
    ax.annotate("", xy=end, xytext=start,
                arrowprops=dict(arrowstyle="-|>", color=colour, linewidth=1.3, shrinkA=0, shrinkB=0,
                                linestyle=(0, (4, 2)) if dashed else "-", connectionstyle=f"arc3,rad={curve}",
                                mutation_scale=11))
    if text:
        mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        offset = {"above": (0, 0.07, "center", "bottom"), "below": (0, -0.07, "center", "top"),
                  "left": (-0.06, 0, "right", "center"), "right": (0.06, 0, "left", "center")}[side]
        ax.text(mx + offset[0], my + offset[1], text, ha=offset[2], va=offset[3], fontsize=SMALL, color=colour)


def elbow(ax, points, text: str | None = None, **kwargs):
    """A path through ``points`` (inches), with the arrowhead on its last leg only."""
    xs, ys = zip(*points[:-1])
    ax.plot(xs, ys, color=kwargs.get("colour", "#333333"), linewidth=1.3,
            linestyle=(0, (4, 2)) if kwargs.get("dashed") else "-", solid_capstyle="butt")
    arrow(ax, points[-2], points[-1], text, **kwargs)


def picture(ax, image: np.ndarray, x: float, y: float, side: float, **kwargs):
    """An image (H x W x 3 uint8, or a 2-D map) drawn pixel by pixel in the square at ``(x, y)``, ``side`` wide."""
    ax.imshow(image, extent=(x, x + side, y, y + side), interpolation="nearest", aspect="auto", zorder=2, **kwargs)
    ax.add_patch(Rectangle((x, y), side, side, fill=False, edgecolor="#555555", linewidth=0.8, zorder=3))


def _vertical(values: np.ndarray, x: float, y: float, w: float, h: float, ax, cmap="coolwarm", limit=None):
    """A vector as a column of coloured cells (its first entry on top)."""
    limit = limit or float(np.abs(values).max()) or 1.0
    ax.imshow(values.reshape(-1, 1), extent=(x, x + w, y, y + h), cmap=cmap, vmin=-limit, vmax=limit,
              interpolation="nearest", aspect="auto", zorder=2)
    ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor="#555555", linewidth=0.8, zorder=3))


# ----------------------------------------------------------------------------- autoencoders

def _body_stages(net) -> tuple[list, list]:
    """The encoder's and the decoder's stages, shared by the five models: ``(label, module)`` pairs."""
    enc, dec = net.encoder, net.decoder
    encoder = [(lang.tr("conv. d'entrée", "input conv."), enc.conv_in)]
    encoder += [(lang.tr(f"bloc {k}", f"block {k}"), b) for k, b in enumerate(enc.down_blocks, 1)]
    encoder.append((lang.tr("milieu", "middle"), enc.mid_block))
    decoder = [(lang.tr("milieu", "middle"), dec.mid_block)]
    decoder += [(lang.tr(f"bloc {k}", f"block {k}"), b) for k, b in enumerate(dec.up_blocks, 1)]
    decoder.append((lang.tr("conv. de sortie", "output conv."), dec.conv_out))
    return encoder, decoder


def bottleneck(name: str, model: torch.nn.Module, images: torch.Tensor) -> dict:
    """What one model's bottleneck receives and hands on, read from one reconstruction of ``images``.

    ``grid``: what the encoder side produces (AE code, VAE mean and log-variance,
    VQ vectors before the lookup, dVAE logits); ``decoded``: what the decoder
    receives; ``codebook``: K for the discrete models; ``tokens``: their grid of
    code ids; ``body``: the shared encoder and decoder stages with their output shapes.
    """
    net = ae.unwrap(model)
    encoder, decoder = _body_stages(net)
    if hasattr(net, "quant_conv") and net.quant_conv is not None:  # AutoencoderKL, VQModel: a 1x1 conv after
        grid = net.quant_conv
    else:
        grid = net.encoder.conv_out
    stages = [*((("encoder", k), m) for k, (_, m) in enumerate(encoder)),
              *((("decoder", k), m) for k, (_, m) in enumerate(decoder)),
              ("grid", grid), ("decoded", net.decoder.conv_in)]
    found = read_shapes(stages, lambda: ae.reconstruct(net, images[:1]))
    codes = ae.codes(net, images[:1])
    return {"name": name, "kind": type(net).__name__, "grid": found["grid"]["out"],
            "decoded": found["decoded"]["in"], "codebook": ae.codebook_size(net),
            "tokens": None if codes is None else tuple(codes.shape[1:]),
            "image": found[("encoder", 0)]["in"],
            "encoder": [(label, found[("encoder", k)]["out"]) for k, (label, _) in enumerate(encoder)],
            "decoder": [(label, found[("decoder", k)]["out"]) for k, (label, _) in enumerate(decoder)]}


def _operation(b: dict) -> list[str]:
    """What the bottleneck does, in a line or two, with K and the token grid read from the model."""
    k = b["codebook"]
    if b["kind"] == "AutoencoderKL":
        return [lang.tr("moyenne μ et log-variance log σ²", "mean μ and log-variance log σ²"),
                lang.tr("tirage z = μ + σ ε (évaluation\u00a0: μ)", "sample z = μ + σ ε (evaluation: μ)")]
    if b["kind"] == "VQModel":
        return [lang.tr(f"le plus proche des K = {k} codes", f"nearest of K = {k} codes"),
                lang.tr(f"{dims(b['tokens'])} jetons", f"{dims(b['tokens'])} tokens")]
    if b["kind"] == "DiscreteVAE":
        return [lang.tr(f"logits sur K = {k} codes, Gumbel-softmax", f"logits over K = {k} codes, Gumbel-softmax"),
                lang.tr(f"{dims(b['tokens'])} jetons (évaluation\u00a0: argmax)",
                        f"{dims(b['tokens'])} tokens (evaluation: argmax)")]
    return [lang.tr("rien\u00a0: le code tel quel", "nothing: the code as it is")]


def _chain(ax, x0: float, x1: float, y: float, h: float, stages, colours, title: str, gap: float = 0.2,
           below: bool = False):
    """Stages as boxes (name, output shape) joined by arrows, from ``x0`` to ``x1``, titled above (or below)."""
    k = len(stages)
    w = (x1 - x0 - gap * (k - 1)) / k
    for i, (label, shape) in enumerate(stages):
        x = x0 + i * (w + gap)
        box(ax, x, y, w, h, [label, dims(shape)], colours, title=False)
        if i:
            arrow(ax, (x - gap, y + h / 2), (x, y + h / 2))
    ax.text(x0, y - 0.04 if below else y + h + 0.04, title, ha="left", va="top" if below else "bottom",
            fontsize=TITLE, fontweight="bold", color=colours[1])
    return w


def autoencoder_diagram(models: Mapping[str, torch.nn.Module], images: torch.Tensor,
                        name: Callable[[str], str] = str):
    """The encoder, one row per model's bottleneck, the decoder; every shape read from a reconstruction.

    ``name`` says how the figure names each model (from its key in ``models``). The encoder and decoder
    rows are those of the first model (the five share them); each row of the
    middle says, for one model, the grid its encoder side produces, what its
    bottleneck does, and what its decoder receives.
    """
    rows = [bottleneck(name, model, images) for name, model in models.items()]
    first, n = rows[0], len(rows)
    chain_h, row_h, row_gap, band = 0.5, 0.44, 0.07, 0.42  # band: the room between the chains and the rows
    side = chain_h  # the pictures
    head = 0.3      # the titles over the chains, the column heads
    height = 2 * MARGIN + 2 * (chain_h + head) + 2 * band + n * row_h + (n - 1) * row_gap + 0.18
    fig, ax = canvas(CANVAS, height)
    left, right = MARGIN, CANVAS - MARGIN

    # the encoder: the image, then its stages
    top = height - MARGIN - head - chain_h
    label_w = 0.8  # the shape under a picture is wider than the picture
    picture(ax, to_uint8(images[:1])[0], left + (label_w - side) / 2, top, side)
    ax.text(left + label_w / 2, top - 0.04, dims(first["image"]), ha="center", va="top", fontsize=SMALL)
    x0 = left + (label_w + side) / 2 + 0.3
    w = _chain(ax, x0, right, top, chain_h, first["encoder"], ENCODER,
               lang.tr("encodeur (Encoder de diffusers)", "encoder (diffusers' Encoder)"))
    arrow(ax, (left + (label_w + side) / 2 + 0.03, top + chain_h / 2), (x0, top + chain_h / 2))

    # the bottlenecks: one row per model
    name_w, grid_w, op_w, dec_w, link = 0.75, 1.0, 3.0, 1.0, 0.25
    grid_x = left + name_w + 0.12
    op_x = grid_x + grid_w + link
    dec_x = op_x + op_w + link
    y = top - band - head - row_h
    for x, wide, text in ((grid_x, grid_w, lang.tr("grille latente", "latent grid")),
                          (op_x, op_w, lang.tr("goulot", "bottleneck")),
                          (dec_x, dec_w, lang.tr("entrée du décodeur", "decoder input"))):
        ax.text(x + wide / 2, y + row_h + 0.05, text, ha="center", va="bottom", fontsize=SMALL,
                fontweight="bold", color=BOTTLENECK[1])
    last_stage = x0 + (len(first["encoder"]) - 1) * (w + 0.2) + w / 2
    turn = y + row_h + head
    elbow(ax, [(last_stage, top), (last_stage, turn), (grid_x + grid_w / 2, turn),
               (grid_x + grid_w / 2, y + row_h + 0.2)])
    ax.text(last_stage - 0.06, (top + turn) / 2, lang.tr("conv. de sortie", "output conv."), ha="right",
            va="center", fontsize=SMALL)
    for r in rows:
        ax.text(left + name_w, y + row_h / 2, name(r["name"]), ha="right", va="center",
                fontsize=TITLE, fontweight="bold")
        box(ax, grid_x, y, grid_w, row_h, [dims(r["grid"])], BOTTLENECK, title=False)
        box(ax, op_x, y, op_w, row_h, _operation(r), BOTTLENECK, title=False)
        box(ax, dec_x, y, dec_w, row_h, [dims(r["decoded"])], BOTTLENECK, title=False)
        arrow(ax, (grid_x + grid_w, y + row_h / 2), (op_x, y + row_h / 2))
        arrow(ax, (op_x + op_w, y + row_h / 2), (dec_x, y + row_h / 2))
        last_row = y
        y -= row_h + row_gap

    # the decoder: its stages (titled below them), then the reconstruction
    bottom = MARGIN + head
    x1 = right - label_w - 0.3
    w = _chain(ax, left, x1, bottom, chain_h, first["decoder"], DECODER,
               lang.tr("décodeur (Decoder de diffusers)", "decoder (diffusers' Decoder)"), below=True)
    turn = bottom + chain_h + band / 2
    elbow(ax, [(dec_x + dec_w / 2, last_row), (dec_x + dec_w / 2, turn), (left + w / 2, turn),
               (left + w / 2, bottom + chain_h)])
    ax.text(left + w / 2 + 0.06, turn - 0.03, lang.tr("conv. d'entrée", "input conv."),
            ha="left", va="top", fontsize=SMALL)
    rec = ae.reconstruct(ae.unwrap(models[first["name"]]), images[:1])
    picture(ax, to_uint8(rec)[0], right - (label_w + side) / 2, bottom, side)
    ax.text(right - label_w / 2, bottom - 0.04, dims(first["decoder"][-1][1]), ha="center", va="top",
            fontsize=SMALL)
    arrow(ax, (x1, bottom + chain_h / 2), (right - (label_w + side) / 2 - 0.03, bottom + chain_h / 2))
    return fig


# ----------------------------------------------------------------------------- the VQ lookup

def object_cell(image: torch.Tensor, grid: int) -> tuple[int, int]:
    """The cell of a ``grid`` x ``grid`` latent whose pixels are brightest: one that an object covers."""
    side = image.shape[-1] // grid
    brightness = image.mean(dim=0).reshape(grid, side, grid, side).mean(dim=(1, 3))
    row, col = divmod(int(brightness.argmax()), grid)
    return row, col


@torch.no_grad()
def lookup(model: torch.nn.Module, image: torch.Tensor, cell: tuple[int, int] | None = None) -> dict:
    """The VQ-VAE's lookup at one cell of one image, read from the model.

    ``z_e`` (D x H x W) is what the encoder side hands the quantiser, ``codebook``
    its K x D entries; at ``cell`` (an object's, by default), ``distances`` to
    every entry, the nearest one ``k`` and its vector; ``codes`` is the grid of
    ids the model itself picks (``models.autoencoders.codes``) and ``shapes``
    what goes in and out of the quantiser and into the decoder during a reconstruction.
    """
    net = ae.unwrap(model)
    x = image[None] if image.dim() == 3 else image[:1]
    stages = [("quantize", net.quantize), ("decoder", net.decoder)]
    shapes = read_shapes(stages, lambda: ae.reconstruct(net, x))
    z_e = ae.encode(net, x)[0]
    codebook = net.quantize.embedding.weight.detach()
    codes = ae.codes(net, x)[0]
    row, col = cell or object_cell(x[0], z_e.shape[-1])
    vector = z_e[:, row, col]
    distances = torch.cdist(vector[None], codebook)[0]
    k = int(distances.argmin())
    return {"z_e": z_e, "codebook": codebook, "cell": (row, col), "vector": vector, "distances": distances,
            "k": k, "entry": codebook[k], "codes": codes, "picked": int(codes[row, col]),
            "grid_in": shapes["quantize"]["in"], "grid_out": shapes["quantize"]["out"],
            "decoded": shapes["decoder"]["in"], "image": tuple(x.shape[1:]),
            "reconstruction": ae.reconstruct(net, x)[0]}


def _outline(ax, x, y, w, h, colour=GRADIENT, width=1.6):
    ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=colour, linewidth=width, zorder=4))


def vq_lookup(model: torch.nn.Module, image: torch.Tensor, cell: tuple[int, int] | None = None):
    """The nearest-code lookup of a VQ-VAE at one cell of a real image, and the straight-through gradient.

    Left to right: the image, the grid ``z_e`` the encoder produces (its
    vectors' lengths, the cell outlined), the vector at that cell, the K
    entries of the codebook with their distance to it (the nearest outlined),
    that entry, the grid ``z_q`` of picked codes, the reconstruction. Under it,
    dashed, the gradient's path: the decoder's gradient on ``z_q`` is copied onto
    ``z_e``, around the lookup, which has none. Every size comes from the model.
    """
    found = lookup(model, image, cell)
    d, h, w = found["grid_in"]
    k_total = found["codebook"].shape[0]
    row, col = found["cell"]
    limit = float(torch.quantile(found["codebook"].abs().flatten(), 0.98))  # one colour scale for all vectors

    height = 3.35
    fig, ax = canvas(CANVAS, height)
    mid = 1.95            # the height of the row's centre line
    pic, grid_side, strip = 0.62, 0.74, 0.17
    book_w, book_h, dist_w = 0.62, 2.2, 0.5
    room = 0.12  # the captions over the pictures at both ends are wider than the pictures
    gap = (CANVAS - 2 * MARGIN - 2 * room - 2 * pic - 2 * grid_side - 2 * strip - book_w - dist_w) / 7
    x = MARGIN + room

    def caption_over(cx, top, lines):
        ax.text(cx, top + 0.05, "\n".join(lines), ha="center", va="bottom", fontsize=SMALL, linespacing=1.15)

    # the image, with the cell's pixels outlined
    pixels = to_uint8(image[None] if image.dim() == 3 else image[:1])[0]
    y0 = mid - pic / 2
    picture(ax, pixels, x, y0, pic)
    px = pic / pixels.shape[1]
    side = pixels.shape[1] // w
    _outline(ax, x + col * side * px, y0 + pic - (row + 1) * side * px, side * px, side * px)
    caption_over(x + pic / 2, y0 + pic, [lang.tr("image", "image"), dims(found["image"])])
    image_right = x + pic
    x += pic + gap

    # z_e: the encoder's grid, shown by the length of each vector
    norms = found["z_e"].norm(dim=0).numpy()
    y0 = mid - grid_side / 2
    picture(ax, norms, x, y0, grid_side, cmap="Greys")
    cell_side = grid_side / w
    _outline(ax, x + col * cell_side, y0 + grid_side - (row + 1) * cell_side, cell_side, cell_side)
    caption_over(x + grid_side / 2, y0 + grid_side, ["$z_e$", dims(found["grid_in"])])
    arrow(ax, (image_right + 0.02, mid), (x - 0.02, mid))
    ax.text((image_right + x) / 2, mid - 0.07, lang.tr("encodeur", "encoder"), ha="center", va="top",
            fontsize=SMALL, rotation=90)
    ze_x, ze_bottom = x, y0
    x += grid_side + gap

    # the vector at the cell
    y0 = mid - book_h * 0.35
    _vertical(found["vector"].numpy(), x, y0, strip, book_h * 0.7, ax, limit=limit)
    caption_over(x + strip / 2, y0 + book_h * 0.7, ["$z_e(x)_i$", str(d)])
    arrow(ax, (ze_x + grid_side + 0.02, mid), (x - 0.02, mid))
    vec_right = x + strip
    x += strip + gap

    # the codebook, and each entry's distance to the vector
    y0 = mid - book_h / 2
    ax.imshow(found["codebook"].numpy(), extent=(x, x + book_w, y0, y0 + book_h), cmap="coolwarm", vmin=-limit,
              vmax=limit, interpolation="nearest", aspect="auto", zorder=2)
    ax.add_patch(Rectangle((x, y0), book_w, book_h, fill=False, edgecolor="#555555", linewidth=0.8, zorder=3))
    row_h = book_h / k_total
    k = found["k"]
    k_y = y0 + book_h - (k + 0.5) * row_h
    _outline(ax, x - 0.02, k_y - 0.03, book_w + 0.04 + dist_w, 0.06)
    caption_over(x + (book_w + dist_w) / 2, y0 + book_h,
                 [lang.tr("dictionnaire", "codebook"), f"K × D = {k_total} × {d}"])
    distances = found["distances"].numpy()
    ys = y0 + book_h - (np.arange(k_total) + 0.5) * row_h
    spread = (distances - distances.min()) / max(float(distances.max() - distances.min()), 1e-12)
    xs = x + book_w + 0.04 + spread * (dist_w - 0.06)  # the nearest on the left edge, the farthest on the right
    ax.plot(xs, ys, color="#555555", linewidth=0.6, zorder=3)
    ax.plot([xs[k]], [ys[k]], "o", color=GRADIENT, markersize=4, zorder=5)
    ax.text(x + (book_w + dist_w) / 2, y0 - 0.05,
            "$k = \\mathrm{argmin}_j\\, \\Vert z_e(x)_i - e_j \\Vert$\n" + lang.tr("(pas de gradient)", "(no gradient)"),
            ha="center", va="top", fontsize=SMALL, linespacing=1.3)
    arrow(ax, (vec_right + 0.02, mid), (x - 0.03, k_y))
    book_x = x
    x += book_w + dist_w + gap

    # the entry picked, then z_q
    y0 = mid - book_h * 0.35
    _vertical(found["entry"].numpy(), x, y0, strip, book_h * 0.7, ax, limit=limit)
    caption_over(x + strip / 2, y0 + book_h * 0.7, ["$e_k$", f"k = {k}"])
    arrow(ax, (book_x + book_w + dist_w + 0.03, k_y), (x - 0.02, mid))
    entry_right = x + strip
    x += strip + gap

    codes = found["codes"].numpy()
    y0 = mid - grid_side / 2
    picture(ax, codes % 20, x, y0, grid_side, cmap="tab20", vmin=0, vmax=19)
    _outline(ax, x + col * cell_side, y0 + grid_side - (row + 1) * cell_side, cell_side, cell_side)
    caption_over(x + grid_side / 2, y0 + grid_side, ["$z_q$", dims(found["grid_out"])])
    arrow(ax, (entry_right + 0.02, mid), (x - 0.02, mid))
    zq_x, zq_bottom = x, y0
    x += grid_side + gap

    # the reconstruction
    y0 = mid - pic / 2
    picture(ax, to_uint8(found["reconstruction"][None])[0], x, y0, pic)
    caption_over(x + pic / 2, y0 + pic, [lang.tr("reconstruction", "reconstruction"),
                                         dims(tuple(found["reconstruction"].shape))])
    arrow(ax, (zq_x + grid_side + 0.02, mid), (x - 0.02, mid))
    ax.text((zq_x + grid_side + x) / 2, mid - 0.07, lang.tr("décodeur", "decoder"), ha="center", va="top",
            fontsize=SMALL, rotation=90)

    # the gradient: from z_q back onto z_e, around the lookup
    low = MARGIN + 0.2
    elbow(ax, [(zq_x + grid_side / 2, zq_bottom - 0.03), (zq_x + grid_side / 2, low), (ze_x + grid_side / 2, low),
               (ze_x + grid_side / 2, ze_bottom - 0.03)], colour=GRADIENT, dashed=True)
    ax.text((ze_x + zq_x + grid_side) / 2, low - 0.05,
            lang.tr("gradient du décodeur sur $z_q$, recopié tel quel sur $z_e$ (straight-through)",
                    "the decoder's gradient on $z_q$, copied as it is onto $z_e$ (straight-through)"),
            ha="center", va="top", fontsize=SMALL, color=GRADIENT)
    return fig


# ----------------------------------------------------------------------------- CLIP

@torch.no_grad()
def clip_shapes(model, batch: Mapping[str, torch.Tensor]) -> dict:
    """What CLIP's two towers make of one batch, read by running them on it.

    ``vision`` and ``text``: ``(stage, shape)`` pairs from the input to the
    projection; ``similarity``: the B x B cosines between the batch's images
    and its captions (``models.clip.image_features`` and ``text_features``,
    unit vectors); ``layers``: each tower's depth, from the model's config.
    """
    from text2image.models import clip as M

    vm, tm = model.vision_model, model.text_model
    vision = [("patches", vm.embeddings.patch_embedding), ("tokens", vm.embeddings), ("encoder", vm.encoder),
              ("pooled", vm.post_layernorm), ("projection", model.visual_projection)]
    text = [("tokens", tm.embeddings), ("encoder", tm.encoder), ("projection", model.text_projection)]
    pixels, ids, mask = batch["pixel_values"], batch["input_ids"], batch["attention_mask"]
    out = {}

    def run():
        out["u"] = M.image_features(model, pixels)
        out["v"] = M.text_features(model, ids, mask)
        out["pooled"] = M.text_states(model, ids, mask)[1]  # the state at the first [EOS]

    found = read_shapes([(f"image {n}", m) for n, m in vision] + [(f"text {n}", m) for n, m in text], run)
    return {"image": found["image patches"]["in"], "ids": tuple(ids.shape[1:]),
            "vision": {n: found[f"image {n}"]["out"] for n, _ in vision},
            "text": {**{n: found[f"text {n}"]["out"] for n, _ in text}, "pooled": tuple(out["pooled"].shape[1:])},
            "u": tuple(out["u"].shape), "v": tuple(out["v"].shape),
            "similarity": (out["u"] @ out["v"].T).cpu(),
            "layers": (model.config.vision_config.num_hidden_layers, model.config.text_config.num_hidden_layers),
            "patch": model.config.vision_config.patch_size,
            "first_image": pixels[0]}


def clip_diagram(model, recipe: Mapping, step: int = 0):
    """CLIP's two towers, side by side, and the B x B similarities of a training batch, positives on the diagonal.

    ``recipe`` is the model's recipe as its manifest records it: the batch is
    that of training step ``step`` (``recipes.clip.batch``, with the recipe's
    batch size and share of twins, without hard negatives), its first image and
    caption are shown at the top of the towers. Every shape, the depth of each
    tower and B come from running the model on that batch.
    """
    from text2image.recipes import clip as R

    size, twins = recipe["batch_size"], recipe.get("extra", {}).get("twins", 0.0)
    caption = R.batch_examples(step, size, twins)[0].caption.text
    found = clip_shapes(model, R.batch(step, size, negatives=False, twins=twins))
    vis, txt = found["vision"], found["text"]
    b = found["similarity"].shape[0]
    layers_v, layers_t = found["layers"]
    colon = lang.colon()
    image_stages = [
        [lang.tr(f"carreaux de {found['patch']} px", f"{found['patch']} px patches"), dims(vis["patches"])],
        [lang.tr("+ jeton de classe", "+ class token"), dims(vis["tokens"])],
        [f"ViT, {_layers(layers_v)}", dims(vis["encoder"])],
        [lang.tr("jeton de classe", "class token"), dims(vis["pooled"])],
        [lang.tr("projection, norme 1", "projection, norm 1"), f"$u_i${colon} {dims(vis['projection'])}"],
    ]
    text_stages = [
        [lang.tr("plongements", "embeddings"), dims(txt["tokens"])],
        [lang.tr(f"transformeur, {_layers(layers_t)}", f"transformer, {_layers(layers_t)}"), dims(txt["encoder"])],
        [lang.tr("état au premier [EOS]", "state at the first [EOS]"), dims(txt["pooled"])],
        [lang.tr("projection, norme 1", "projection, norm 1"), f"$v_j${colon} {dims(txt['projection'])}"],
    ]
    box_h, link = 0.4, 0.16
    col_w, col_gap = 1.65, 0.16
    title_h, side, label_h = 0.26, 0.55, 0.22
    stack = len(image_stages) * box_h + (len(image_stages) - 1) * link
    route = 0.28  # under the towers: the image tower's way to the matrix
    height = MARGIN + title_h + side + label_h + link + stack + route + MARGIN
    fig, ax = canvas(CANVAS, height)
    xi, xt = MARGIN, MARGIN + col_w + col_gap
    top = height - MARGIN

    def column(x, y, stages, colours):
        """Boxes from ``y`` (the first one's top) downwards, joined by arrows; returns each box's bottom."""
        bottoms = []
        for k, lines in enumerate(stages):
            if k:
                arrow(ax, (x + col_w / 2, y), (x + col_w / 2, y - link))
                y -= link
            box(ax, x, y - box_h, col_w, box_h, lines, colours, title=False)
            y -= box_h
            bottoms.append(y)
        return bottoms

    # the towers' names, their inputs: the batch's first image and its caption
    for x, name, colour in ((xi, lang.tr("tour d'images", "image tower"), ENCODER[1]),
                            (xt, lang.tr("tour de texte", "text tower"), DECODER[1])):
        ax.text(x + col_w / 2, top, name, ha="center", va="top", fontsize=TITLE, fontweight="bold", color=colour)
    y_in = top - title_h
    pixels = ((found["first_image"].permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1)
    picture(ax, pixels, xi + (col_w - side) / 2, y_in - side, side)
    quoted = f"«\u00a0{caption}\u00a0»" if lang.current() == "fr" else f"“{caption}”"
    ax.text(xt + col_w / 2, y_in - side / 2, "\n".join(_wrap(quoted, 24)), ha="center", va="center",
            fontsize=SMALL, style="italic", linespacing=1.2)
    y_label = y_in - side - 0.03
    ax.text(xi + col_w / 2, y_label, dims(found["image"]), ha="center", va="top", fontsize=SMALL)
    ax.text(xt + col_w / 2, y_label, lang.tr(f"{dims(found['ids'])} jetons", f"{dims(found['ids'])} tokens"),
            ha="center", va="top", fontsize=SMALL)
    first = y_in - side - label_h - link  # the first box's top
    arrow(ax, (xi + col_w / 2, first + link), (xi + col_w / 2, first))
    bottoms_i = column(xi, first, image_stages, ENCODER)
    second = first - box_h - link  # the text tower starts one box lower: both projections end level
    arrow(ax, (xt + col_w / 2, first + link), (xt + col_w / 2, second))
    bottoms_t = column(xt, second, text_stages, DECODER)

    # the matrix: its rows are the images, its columns the captions
    cells = max(1, round(2.3 * BOOK_DPI / b))  # whole pixels per cell
    m_side = b * cells / BOOK_DPI
    mx = CANVAS - MARGIN - 0.22 - m_side  # the rows' label on its right
    my = MARGIN
    ax.imshow(found["similarity"].numpy(), extent=(mx, mx + m_side, my, my + m_side), cmap="viridis",
              interpolation="nearest", aspect="auto", zorder=2)
    ax.add_patch(Rectangle((mx, my), m_side, m_side, fill=False, edgecolor="#555555", linewidth=0.8, zorder=3))
    ax.text(mx + m_side / 2, my + m_side + 0.05, lang.tr(f"colonnes{colon} les B = {b} légendes",
                                                       f"columns: the B = {b} captions"),
            ha="center", va="bottom", fontsize=SMALL)
    ax.text(mx + m_side / 2, my + m_side + 0.27, lang.tr("cosinus $u_i \\cdot v_j$", "cosines $u_i \\cdot v_j$"),
            ha="center", va="bottom", fontsize=TITLE, fontweight="bold")
    ax.text(mx + m_side + 0.05, my + m_side / 2, lang.tr(f"lignes{colon} les B = {b} images",
                                                          f"rows: the B = {b} images"),
            ha="left", va="center", fontsize=SMALL, rotation=270)
    ax.text(mx + m_side / 2, my + m_side + 0.62,
            lang.tr(f"diagonale{colon} les {b} paires vraies (positifs)\nailleurs{colon} {lang.integer(b * (b - 1))} négatifs",
                    f"diagonal: the {b} true pairs (positives)\nelsewhere: {lang.integer(b * (b - 1))} negatives"),
            ha="center", va="bottom", fontsize=SMALL, linespacing=1.3)
    # into the matrix from its left: the captions' embeddings from the text tower, the images' from under both
    y_t = bottoms_t[-1] + box_h / 2
    arrow(ax, (xt + col_w, y_t), (mx - 0.02, y_t))
    ax.text((xt + col_w + mx) / 2, y_t + 0.04, "$v_j$", ha="center", va="bottom", fontsize=SMALL)
    y_low = (bottoms_i[-1] + my) / 2
    elbow(ax, [(xi + col_w / 2, bottoms_i[-1]), (xi + col_w / 2, y_low), (mx - 0.02, y_low)])
    ax.text((xt + col_w + mx) / 2, y_low + 0.04, "$u_i$", ha="center", va="bottom", fontsize=SMALL)
    return fig


def _layers(n: int) -> str:
    """``3 couches`` / ``3 layers``, ``1 couche`` / ``1 layer``."""
    return lang.tr(f"{n} couche" + "s" * (n > 1), f"{n} layer" + "s" * (n != 1))


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)
