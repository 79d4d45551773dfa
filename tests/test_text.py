"""The word-level tokenizer: vocabulary, special tokens, round trip, and loud unknown words."""

import time

import pytest
import torch

from text2image import text
from text2image.world import captions as C
from text2image.world import splits


def test_vocabulary_is_every_caption_word():
    tok = text.tokenizer()
    vocab = tok.get_vocab()
    assert set(vocab) == set(C.vocabulary()) | set(text.SPECIALS)
    assert [vocab[s] for s in text.SPECIALS] == [0, 1, 2, 3]
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)


def test_encoding_and_noun_positions():
    tok = text.tokenizer()
    for e in splits.examples("train", 0, 200):
        ids = tok(e.caption.text)["input_ids"]
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        assert tok.convert_ids_to_tokens(ids)[1:-1] == list(e.caption.words)
        for g in e.caption.groundings:
            assert tok.convert_ids_to_tokens(ids[g.token_index]) == g.word
        assert len(ids) <= text.MAX_LENGTH


def test_batch_padding_and_case():
    batch = text.encode(["a red circle", "Two Blue SQUARES above a small cyan cross"])
    assert batch["input_ids"].shape == (2, text.MAX_LENGTH)
    assert batch["attention_mask"].sum(1).tolist() == [5, 10]
    assert (batch["input_ids"][0, 5:] == 0).all()
    assert batch["input_ids"].dtype == torch.long


def test_save_and_load_round_trip(tmp_path):
    tok = text.tokenizer()
    tok.save_pretrained(tmp_path)
    again = text.load(tmp_path)
    assert isinstance(again, text.ShapesTokenizer)
    sentence = "a picture of three magenta diamonds"
    assert again(sentence)["input_ids"] == tok(sentence)["input_ids"]
    with pytest.raises(text.UnknownWordError):
        again("a purple circle")


@pytest.mark.parametrize("prompt", ["a purple circle", ["a red circle", "a red blob"], "a red circle [UNK]"])
def test_unknown_words_are_errors_that_name_them(prompt):
    with pytest.raises(text.UnknownWordError) as info:
        text.tokenizer()(prompt)
    message = str(info.value)
    assert "vocabulary is" in message and "circle" in message
    assert ("purple" in message) or ("blob" in message) or ("unk" in message.lower())


def test_the_vocabulary_in_an_unknown_word_error_is_one_quoted_token_after_another():
    """The message once read "the vocabulary is: , a above ...": the comma token and the one-letter words
    were lost among the spaces. Each token is quoted now, and the list is exactly the vocabulary."""
    import ast

    for check in (lambda: text.tokenizer()("a purple circle"), lambda: C.parse("a purple circle")):
        with pytest.raises(ValueError) as info:
            check()
        listed = str(info.value).split("the vocabulary is: ", 1)[1]
        assert listed.startswith("',', 'a', ")
        assert list(ast.literal_eval(f"[{listed}]")) == C.vocabulary()


# --------------------------------------------------------------------------- refused captions, local loading (issue 14)

def test_a_caption_longer_than_the_encoders_limit_is_refused_with_both_numbers():
    """Issue 14.12: a caption over 32 tokens passed the tokenizer and failed deep inside transformers."""
    long = " and ".join(["a small red circle"] * 7)  # 7 x 4 words + 6 "and" = 34 words, 36 tokens
    for prompt in (long, ["a red circle", long]):
        with pytest.raises(text.CaptionError) as error:
            text.tokenizer()(prompt)
        message = str(error.value)
        assert "\n" not in message and "36 tokens" in message and f"the limit is {text.MAX_LENGTH}" in message
    with pytest.raises(text.CaptionError):
        text.encode([long])


@pytest.mark.parametrize("prompt", ["", "   ", "\t\n", ["a red circle", " "]])
def test_an_empty_caption_is_refused(prompt):
    """Issue 14.12: empty or whitespace-only captions were scored silently."""
    with pytest.raises(text.CaptionError, match="empty caption.*found 0"):
        text.tokenizer()(prompt)


def test_the_longest_caption_of_the_world_fits():
    longest = max((e.caption.text for e in splits.examples("train", 0, 2000)), key=lambda t: len(t.split()))
    assert len(text.tokenizer()(longest)["input_ids"]) <= text.MAX_LENGTH


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection is recorded and refused."""
    import socket

    attempts = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: attempts.append(a) or (_ for _ in ()).throw(OSError("no")))
    return attempts


def test_a_mistyped_tokenizer_path_fails_at_once_without_the_network(tmp_path, no_network):
    """Issue 14.11: a mistyped path meant 209 s of retries against the model hub, then a misleading error."""
    started = time.perf_counter()
    for path in (tmp_path / "tokenizr", "shapes-tokenizer", tmp_path):
        with pytest.raises(FileNotFoundError) as error:
            text.load(path)
        assert str(path) in str(error.value) and "hub is never asked" in str(error.value)
    assert time.perf_counter() - started < 5
    assert no_network == []


def test_the_empty_caption_is_built_as_the_tokenizer_would_have_written_it():
    empty = text.empty_caption(2)
    tok = text.tokenizer()
    assert empty["input_ids"].shape == (2, text.MAX_LENGTH)
    assert empty["input_ids"][0, :3].tolist() == [tok.bos_token_id, tok.eos_token_id, tok.pad_token_id]
    assert empty["attention_mask"][0].sum() == 2
    with pytest.raises(text.CaptionError, match="empty caption"):
        text.encode([""])
