"""The real DALL·E mini (and mega), through ``min-dalle``, the PyTorch port of dalle-mini's weights.

The book's pipeline maps one to one onto the published model; only the sizes change:

=================  ==========================================  ===================================
step               the book (``pipelines.dalle``)              dalle-mini (``min-dalle``)
=================  ==========================================  ===================================
caption tokens     world word tokenizer, 32 tokens             BART BPE, 64 tokens, 50,264 words
encoder-decoder    BART 2+2 layers, d_model 192                BART 12+12 layers, d_model 1024
                                                               (GLU feed-forward 2,730, 16 heads)
image tokens       8 x 8 = 64 codes of 256 (VQ-VAE, 32 px)     16 x 16 = 256 codes of 16,384
                                                               (VQGAN f16, 256 px)
sampling           temperature, top-k, top-p, guidance         temperature, top-k (256), guidance
                                                               ("super-conditioning", 16)
reranking          the CLIP of the CLIP chapter                CLIP ViT-B/32 (``pretrained.load_clip``)
=================  ==========================================  ===================================

min-dalle writes its own sampling loop (:meth:`RealDalleMini.codes` follows
it); its guidance is the same mix, ``uncond (1 - s) + cond s`` on logits, the
unconditional branch reading the caption ``[BOS] [EOS]``.

Conventions of :mod:`text2image.pretrained`: nothing downloads unless the
reader passes ``allow_download=True``, and weights are read from safetensors
only. min-dalle's files are PyTorch pickles (``encoder_mini.pt``, ...):
:func:`convert` turns them into safetensors once, reading them with
``torch.load(weights_only=True)`` (tensors only, no code runs), and
:func:`load` refuses a folder that holds only pickles.

min-dalle's own ``MinDalle`` class is not used: it sends a request to the hub
each time it is built, loads pickles, and importing the package switches off
autograd and sets torch's thread count for the whole process; :func:`load`
imports its network modules only, and puts both settings back.

Folder layout (``folder``)::

    dalle_bart_mini/vocab.json, merges.txt, encoder.safetensors, decoder.safetensors
    vqgan/detoker.safetensors
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from text2image.pipelines.dalle import Sampling
from text2image.pipelines.prompts import SamplingError

REPO = "kuprel/min-dalle"  # where min-dalle's own downloader fetches its files
TEXT_TOKENS = 64
IMAGE_TOKENS = 256   # 16 x 16
IMAGE_SIZE = 256
VQGAN_CODES = 2 ** 14
START = 2 ** 14 - 1  # the token min-dalle's decoder starts from (as its generate_raw_image_stream does)
# The published sizes, as min-dalle builds them (min_dalle.MinDalle.__init__).
PUBLISHED = {
    "mini": dict(layers=12, heads=16, d_model=1024, glu=2730, text_vocab=50264, image_vocab=16384),
    "mega": dict(layers=24, heads=32, d_model=2048, glu=4096, text_vocab=50272, image_vocab=16415),
}
DEFAULT_SAMPLING = Sampling(temperature=1.0, top_k=256, guidance=16.0)  # min-dalle's defaults


class WeightsUnavailable(RuntimeError):
    """min-dalle's weights are not in the folder and downloading was not allowed."""


def files(folder: str | Path, kind: str = "mini") -> dict[str, Path]:
    """Where each file of ``kind`` lives in ``folder`` (the layout of the module's docstring)."""
    _check_kind(kind)
    bart = Path(folder) / f"dalle_bart_{kind}"
    return {"vocab": bart / "vocab.json", "merges": bart / "merges.txt", "encoder": bart / "encoder.safetensors",
            "decoder": bart / "decoder.safetensors", "detoker": Path(folder) / "vqgan" / "detoker.safetensors"}


def _check_kind(kind: str) -> None:
    if kind not in PUBLISHED:
        raise ValueError(f"no published DALL·E {kind!r}; choose one of: {', '.join(PUBLISHED)}")


def available(folder: str | Path, kind: str = "mini") -> bool:
    """Are the tokenizer files and the safetensors weights of ``kind`` in ``folder``? Never downloads."""
    return all(path.is_file() for path in files(folder, kind).values())


@contextlib.contextmanager
def _torch_settings_kept():
    """Importing ``min_dalle`` calls ``torch.set_grad_enabled(False)`` and ``torch.set_num_threads``:
    undo both, so that nothing else in the process changes."""
    grad, threads = torch.is_grad_enabled(), torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_grad_enabled(grad)
        torch.set_num_threads(threads)


def _modules():
    with _torch_settings_kept():
        from min_dalle.models import DalleBartDecoder, DalleBartEncoder, VQGanDetokenizer
        from min_dalle.text_tokenizer import TextTokenizer
    return DalleBartEncoder, DalleBartDecoder, VQGanDetokenizer, TextTokenizer


def build(sizes: dict, device: str = "cpu") -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """min-dalle's encoder, decoder and VQGAN detokenizer at ``sizes`` (one of :data:`PUBLISHED`, or smaller)."""
    Encoder, Decoder, Detokenizer, _ = _modules()
    encoder = Encoder(layer_count=sizes["layers"], embed_count=sizes["d_model"], attention_head_count=sizes["heads"],
                      text_vocab_count=sizes["text_vocab"], text_token_count=TEXT_TOKENS,
                      glu_embed_count=sizes["glu"], device=device)
    decoder = Decoder(image_vocab_count=sizes["image_vocab"], embed_count=sizes["d_model"],
                      attention_head_count=sizes["heads"], glu_embed_count=sizes["glu"],
                      layer_count=sizes["layers"], device=device)
    return encoder, decoder, Detokenizer()


def published_parameters(kind: str = "mini") -> dict[str, int]:
    """Parameters of the published model, counted on networks built without memory (the meta device)."""
    _check_kind(kind)
    with torch.device("meta"):
        encoder, decoder, detokenizer = build(PUBLISHED[kind], device="meta")
    out = {name: sum(p.numel() for p in m.parameters())
           for name, m in (("encoder", encoder), ("decoder", decoder), ("vqgan", detokenizer))}
    return {**out, "total": sum(out.values())}


def convert(folder: str | Path, kind: str = "mini") -> list[Path]:
    """min-dalle's ``.pt`` files in ``folder`` (its own names or the layout's) -> safetensors; returns what it wrote.

    The pickles are read with ``torch.load(weights_only=True)``: only tensors
    are built, no code in the file runs.
    """
    from safetensors.torch import save_file

    targets = files(folder, kind)
    written = []
    for name in ("encoder", "decoder", "detoker"):
        target = targets[name]
        suffix = "" if name == "detoker" or kind == "mega" else "_mini"
        for source in (target.with_suffix(".pt"), Path(folder) / f"{name}{suffix}.pt"):
            if source.is_file() and not target.is_file():
                state = torch.load(source, map_location="cpu", weights_only=True)
                target.parent.mkdir(parents=True, exist_ok=True)
                save_file({k: v.contiguous() for k, v in state.items()}, str(target))
                written.append(target)
                break
    for name, own in (("vocab", "vocab{}.json"), ("merges", "merges{}.txt")):
        source = Path(folder) / own.format("" if kind == "mega" else "_mini")
        if source.is_file() and not targets[name].is_file():
            targets[name].parent.mkdir(parents=True, exist_ok=True)
            targets[name].write_bytes(source.read_bytes())
            written.append(targets[name])
    return written


def download(folder: str | Path, kind: str = "mini") -> None:
    """Fetch min-dalle's files of ``kind`` from the hub into ``folder`` and convert them (network needed)."""
    from huggingface_hub import hf_hub_download

    suffix = "" if kind == "mega" else "_mini"
    for filename in (f"vocab{suffix}.json", f"merges{suffix}.txt", f"encoder{suffix}.pt", f"decoder{suffix}.pt",
                     "detoker.pt"):
        hf_hub_download(REPO, filename, local_dir=str(folder))
    convert(folder, kind)


@dataclass
class RealDalleMini:
    """dalle-mini's networks and tokenizer, ready to draw: ``model(prompt, seed, sampling) -> uint8 images``."""

    encoder: torch.nn.Module
    decoder: torch.nn.Module
    detokenizer: torch.nn.Module
    tokenizer: object
    sizes: dict
    device: str = "cpu"

    def tokens(self, prompt: str) -> list[int]:
        if not isinstance(prompt, str) or not prompt.strip():
            raise SamplingError("the prompt is empty: say what to draw")
        return self.tokenizer.tokenize(prompt)[:TEXT_TOKENS]

    @torch.no_grad()
    def codes(self, prompt: str, seed: int, sampling: Sampling = DEFAULT_SAMPLING) -> torch.Tensor:
        """``sampling.candidates`` draws of 256 codes (N, 256), as min-dalle's loop draws them."""
        tokens = self.tokens(prompt)
        n = sampling.candidates
        text = torch.ones((2, TEXT_TOKENS), dtype=torch.long)  # 1 is BART's pad
        text[0, :2] = torch.tensor([tokens[0], tokens[-1]])       # the unconditional caption [BOS] [EOS]
        text[1, :len(tokens)] = torch.tensor(tokens)
        text = text.to(self.device)
        encoder_state = self.encoder(text)
        rows = [0] * n + [1] * n
        text, encoder_state = text[rows], encoder_state[rows]
        attention_mask = text.not_equal(1)[:, None, None, :]
        state = torch.zeros((self.sizes["layers"], n * 4, IMAGE_TOKENS, self.sizes["d_model"]), device=self.device)
        codes = torch.full((n, IMAGE_TOKENS + 1), START, dtype=torch.long, device=self.device)
        top_k = sampling.top_k or self.sizes["image_vocab"]
        settings = torch.tensor([sampling.temperature, top_k, sampling.guidance], dtype=torch.float32,
                                device=self.device)
        index = torch.arange(IMAGE_TOKENS, device=self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for i in range(IMAGE_TOKENS):
                codes[:, i + 1], state = self.decoder.sample_tokens(
                    settings=settings, attention_mask=attention_mask, encoder_state=encoder_state,
                    attention_state=state, prev_tokens=codes[:, [i]], token_index=index[[i]])
        return codes[:, 1:].cpu()

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> np.ndarray:
        """Images (N, 256, 256, 3) uint8 from codes (N, 256), one VQGAN decode each."""
        images = [self.detokenizer(False, row[None].to(self.device)) for row in torch.as_tensor(codes).long()]
        return np.stack([image.round().byte().cpu().numpy() for image in images])

    def __call__(self, prompt: str, seed: int, sampling: Sampling = DEFAULT_SAMPLING) -> np.ndarray:
        return self.decode(self.codes(prompt, seed, sampling))


def load(folder: str | Path, kind: str = "mini", device: str | None = None, sizes: dict | None = None,
         allow_download: bool = False) -> RealDalleMini:
    """dalle-mini from ``folder`` (safetensors only); the hub is used only with ``allow_download=True``.

    ``sizes``: the networks' sizes, the published ones of ``kind`` by default (a
    test passes tiny ones with random weights it saved itself).
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    if not available(folder, kind):
        pickles = sorted(p.name for p in folder.rglob("*.pt")) if folder.is_dir() else []
        if pickles and not allow_download:
            raise WeightsUnavailable(
                f"{folder}: min-dalle's pickles ({', '.join(pickles)}) are never loaded as they are; "
                f"convert them to safetensors once with real_dalle_mini.convert({str(folder)!r})")
        if not allow_download:
            missing = [str(p) for p in files(folder, kind).values() if not p.is_file()]
            raise WeightsUnavailable(
                f"{folder}: no dalle-mini weights ({', '.join(missing)} missing) and downloading was not allowed; "
                f"call real_dalle_mini.load({str(folder)!r}, allow_download=True) on a machine with a network")
        download(folder, kind)
    paths = files(folder, kind)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    sizes = sizes or PUBLISHED[kind]
    # min-dalle keeps its position indices as plain tensors of the device it is built for
    encoder, decoder, detokenizer = build(sizes, device=device)
    for module, name in ((encoder, "encoder"), (decoder, "decoder"), (detokenizer, "detoker")):
        result = module.load_state_dict(load_file(str(paths[name])), strict=False)  # extra keys, as min-dalle
        if result.missing_keys:
            raise WeightsUnavailable(f"{paths[name]}: does not fit min-dalle's {name} at these sizes "
                                     f"(missing {', '.join(result.missing_keys[:3])}, ...)")
    _, _, _, TextTokenizer = _modules()
    vocab = json.loads(paths["vocab"].read_text(encoding="utf8"))
    merges = paths["merges"].read_text(encoding="utf8").split("\n")[1:-1]  # min-dalle's reading of merges.txt
    return RealDalleMini(encoder.to(device).eval(), decoder.to(device).eval(), detokenizer.to(device).eval(),
                         TextTokenizer(vocab, merges), dict(sizes), device)


def rerank_with(scores: Callable[[np.ndarray, Sequence[str]], np.ndarray], prompt: str,
                images: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The candidate a judge scores highest: ``scores(images, [prompt]) -> (N, 1)``, e.g. the real CLIP's
    ``lambda im, t: pretrained.clip_scores(model, processor, im, t)``. Returns ``(best, scores (N,), pick)``."""
    values = np.asarray(scores(images, [prompt])).reshape(len(images))
    pick = int(values.argmax())
    return images[pick], values, pick
