"""Tests of the character tokenizer: round trips, specials, unknown characters, serialisation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ponder.policy.tokenizer import BOS, CHARSET, EOS, PAD, CharTokenizer

TOK = CharTokenizer()


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=CHARSET, max_size=80))
def test_round_trip_over_charset(text):
    ids = TOK.encode(text)
    assert len(ids) == len(text)
    assert all(len((PAD, BOS, EOS)) <= i < TOK.vocab_size for i in ids)
    assert TOK.decode(ids) == text


def test_vocabulary_layout():
    assert (TOK.pad_id, TOK.bos_id, TOK.eos_id) == (0, 1, 2)
    assert TOK.vocab_size == 3 + len(CHARSET)
    assert "\r" not in CHARSET and "\x0b" not in CHARSET and "\x0c" not in CHARSET
    assert TOK.encode(CHARSET[0]) == [3]
    assert TOK.step_token == TOK.encode("\n")[0]
    assert TOK.encode("") == []


def test_decode_drops_specials():
    ids = [BOS] + TOK.encode("ab") + [PAD, EOS] + TOK.encode("\nc") + [EOS, PAD]
    assert TOK.decode(ids) == "ab\nc"
    assert TOK.decode([PAD, BOS, EOS]) == ""


@pytest.mark.parametrize("text, bad, pos", [("abc\u00e9d", "\u00e9", 3), ("\r", "\r", 0), ("x\x0cy", "\x0c", 1)])
def test_unknown_character_raises_naming_it(text, bad, pos):
    with pytest.raises(ValueError) as e:
        TOK.encode(text)
    msg = str(e.value)
    assert repr(bad) in msg
    assert f"position {pos}" in msg


def test_to_dict_from_dict_round_trip():
    d = TOK.to_dict()
    assert d == {"type": "char", "charset": CHARSET}
    back = CharTokenizer.from_dict(d)
    assert back.charset == TOK.charset and back.vocab_size == TOK.vocab_size
    assert back.encode("Q: 1+2\n") == TOK.encode("Q: 1+2\n")


def test_custom_charset_round_trip():
    tok = CharTokenizer("ab\n")
    assert tok.vocab_size == 6
    assert tok.encode("ba\n") == [4, 3, 5]
    assert tok.step_token == 5
    back = CharTokenizer.from_dict(tok.to_dict())
    assert back.encode("ba\n") == [4, 3, 5] and back.decode([4, 3, 5]) == "ba\n"
    with pytest.raises(ValueError, match="'c'"):
        tok.encode("abc")


@pytest.mark.parametrize("d", [{}, {"type": "bpe", "charset": "ab"}, {"type": "char"}, {"type": "char", "charset": 3}])
def test_from_dict_rejects_foreign_data(d):
    with pytest.raises(ValueError, match="not a ponder character tokenizer"):
        CharTokenizer.from_dict(d)


def test_repeated_charset_rejected():
    with pytest.raises(ValueError, match="repeated"):
        CharTokenizer("aab")
