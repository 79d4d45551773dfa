"""The word-level tokenizer of the shapes world.

Built with Hugging Face ``tokenizers`` (a ``WordLevel`` model whose vocabulary
is every word the captions can produce, a lower-casing normaliser, a
whitespace-and-punctuation pre-tokenizer, ``[BOS] ... [EOS]`` added by a
post-processor) and wrapped as a ``transformers`` fast tokenizer, so every
model of the book can take it like any tokenizer from the hub, and
``save_pretrained`` / ``from_pretrained`` round-trip it.

A word outside the vocabulary is an error that names it: a model of this world
has never seen "purple", and silently reading it as ``[UNK]`` would hide that.
So is a caption longer than the models' ``MAX_LENGTH`` tokens (it would fail
deep inside transformers) and an empty one (it would be scored as if it said
something). A word added with ``add_tokens`` (textual inversion's placeholder, ``<star>``)
is one word of the vocabulary, matched before the pre-tokenizer splits the rest, as the tokenizer itself
does. :func:`load` reads a saved tokenizer from a local folder only:
a mistyped path fails at once instead of being looked up on the hub.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from text2image.world import captions

PAD, BOS, EOS, UNK = "[PAD]", "[BOS]", "[EOS]", "[UNK]"
SPECIALS = (PAD, BOS, EOS, UNK)  # ids 0, 1, 2, 3
MAX_LENGTH = 32  # the longest caption (five objects with sizes, Oxford comma) has 30 tokens with BOS and EOS


class UnknownWordError(ValueError):
    """A prompt uses words the shapes world does not have."""


class CaptionError(ValueError):
    """A caption that is empty, or longer than the encoders' ``MAX_LENGTH`` tokens."""


def backend() -> Tokenizer:
    """The ``tokenizers.Tokenizer``: ids 0-3 are the special tokens, then the words in order."""
    vocab = {token: i for i, token in enumerate(SPECIALS)}
    for word in captions.vocabulary():
        vocab[word] = len(vocab)
    tok = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # \w+ and runs of punctuation
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])])
    return tok


class ShapesTokenizer(PreTrainedTokenizerFast):
    """``PreTrainedTokenizerFast`` that refuses words outside the vocabulary."""

    def check(self, texts) -> None:
        """Raise :class:`UnknownWordError` naming every unknown word of ``texts`` (str or list of str)."""
        if isinstance(texts, str):
            texts = [texts]
        vocab = self.get_vocab()
        unknown = set()
        for text in texts:
            if not isinstance(text, str):  # pre-split words
                words = [w.lower() for w in text]
            else:
                words = self.words(text)
            if not words:
                raise CaptionError(f"empty caption {text!r}: a caption needs 1 to {MAX_LENGTH - 2} words "
                                   f"({MAX_LENGTH} tokens with [BOS] and [EOS]); found 0")
            if len(words) + 2 > MAX_LENGTH:
                shown = text if isinstance(text, str) else " ".join(text)
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                raise CaptionError(f"caption too long: {len(words) + 2} tokens with [BOS] and [EOS], the limit is "
                                   f"{MAX_LENGTH} ({shown!r})")
            unknown |= {w for w in words if w not in vocab or w in SPECIALS}
        if unknown:
            words = sorted(w for w in vocab if w not in SPECIALS)
            raise UnknownWordError(
                f"unknown word(s) {', '.join(map(repr, sorted(unknown)))}; "
                f"the vocabulary is: {captions.vocabulary_text(words)}")

    def words(self, text: str) -> list[str]:
        """The words of ``text`` as the tokenizer reads them: normalised, the added words (a placeholder such
        as ``<star>``) taken whole, the rest split by the pre-tokenizer."""
        normal = self.backend_tokenizer.normalizer.normalize_str(text)
        added = sorted((t for t in self.added_tokens_encoder if t not in SPECIALS), key=len, reverse=True)
        pieces = re.split("(" + "|".join(map(re.escape, added)) + ")", normal) if added else [normal]
        split = self.backend_tokenizer.pre_tokenizer.pre_tokenize_str
        words: list[str] = []
        for k, piece in enumerate(pieces):
            words += [piece] if k % 2 else [w for w, _ in split(piece)]
        return words

    def _encode_plus(self, text, text_pair=None, *args, **kwargs):
        self.check(text)
        if text_pair is not None:
            self.check(text_pair)
        return super()._encode_plus(text, text_pair, *args, **kwargs)


@lru_cache(maxsize=1)
def tokenizer() -> ShapesTokenizer:
    """The shapes-world tokenizer (padding to ``MAX_LENGTH`` on the right)."""
    return ShapesTokenizer(tokenizer_object=backend(), bos_token=BOS, eos_token=EOS, pad_token=PAD,
                           unk_token=UNK, model_max_length=MAX_LENGTH, padding_side="right")


def load(path) -> ShapesTokenizer:
    """A tokenizer saved with ``save_pretrained`` in the folder ``path`` (local only, never the hub)."""
    folder = Path(path)
    if not (folder / "tokenizer.json").is_file():
        what = "no such folder" if not folder.exists() else "no tokenizer.json there"
        raise FileNotFoundError(f"{folder}: {what}; a tokenizer is loaded from a folder written by "
                                f"save_pretrained (the hub is never asked)")
    return ShapesTokenizer.from_pretrained(str(folder), local_files_only=True)


def empty_caption(n: int, max_length: int = MAX_LENGTH, tok: PreTrainedTokenizerFast | None = None) -> dict:
    """The empty caption ``[BOS] [EOS]``, padded, ``n`` times: what classifier-free guidance conditions on when
    a caption is dropped. The one caption the checks let through, on purpose: it is built here, never typed.
    ``tok``: a saved copy of the world's tokenizer (a pipeline's component); by default the world's own."""
    import torch

    tok = tok or tokenizer()
    ids = [tok.bos_token_id, tok.eos_token_id] + [tok.pad_token_id] * (max_length - 2)
    mask = [1, 1] + [0] * (max_length - 2)
    return {"input_ids": torch.tensor([ids] * n), "attention_mask": torch.tensor([mask] * n)}


def drop_captions(input_ids, attention_mask, dropped) -> None:
    """Replace, in place, the captions of the rows where ``dropped`` (a boolean array or tensor) is true by
    the empty caption: how the diffusion recipes train one network that is also its own unconditional model."""
    import torch

    dropped = torch.as_tensor(dropped, dtype=torch.bool)
    null = empty_caption(1, input_ids.shape[1])
    input_ids[dropped] = null["input_ids"][0].to(input_ids.dtype)
    attention_mask[dropped] = null["attention_mask"][0].to(attention_mask.dtype)


def encode(texts, max_length: int = MAX_LENGTH, return_tensors: str | None = "pt"):
    """Token ids and attention masks of ``texts``, padded to ``max_length`` (errors on unknown words)."""
    return tokenizer()(texts, padding="max_length", max_length=max_length, truncation=False,
                       return_tensors=return_tensors)


def token_positions(caption: captions.Caption) -> dict[str, list[int]]:
    """Token positions of each noun of ``caption`` (position 0 is ``[BOS]``)."""
    out: dict[str, list[int]] = {}
    for g in caption.nouns:
        out.setdefault(g.word, []).append(g.token_index)
    return out
