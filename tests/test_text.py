"""The word-level tokenizer: vocabulary, special tokens, round trip, and loud unknown words."""

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
