import pytest

from sentiment.data.text import Cleaning, Normalizer, clean_text, make_normalizer


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("I &amp; you", "I & you"),
        ("<b>bold</b> move", "bold move"),
        ("see http://t.co/abc and www.x.com now", "see and now"),
        ("@bob hi @alice_2", "hi"),
        ("love #summer #2024", "love summer 2024"),
        ("sooooo goooood", "soo good"),
        ("1000 people", "1000 people"),
        ("tab\there\x00 ctrl\u200b", "tab here ctrl"),
        ("  many   spaces \n lines ", "many spaces lines"),
        ("I`d have responded", "I`d have responded"),
        ("@only", ""),
    ],
)
def test_clean_text_table(raw, expected):
    assert clean_text(raw, Cleaning(url_placeholder="", user_placeholder="", max_repeat=2)) == expected


def test_clean_text_placeholders():
    cfg = Cleaning(url_placeholder="http", user_placeholder="@user", max_repeat=3)
    assert clean_text("@bob look http://x.y sooooo", cfg) == "@user look http sooo"


def test_normalizer_keeps_negations_drops_stopwords():
    norm = Normalizer(stopwords=frozenset({"the", "was", "not", "is"}), negations=frozenset({"not", "no"}))
    assert norm("The film was NOT good!!!") == "film not good ! ! !"
    assert norm("it doesn't work") == "it doesn't work"


def test_normalizer_without_negation_keeping_drops_them():
    norm = Normalizer(stopwords=frozenset({"not"}), negations=frozenset())
    assert norm("not good") == "good"


def test_make_normalizer_lemmatises_and_stems():
    lemma = make_normalizer(remove_stopwords=True, keep_negations=True, negations=["not"], lemmatize=True, stem=False)
    assert lemma("The movies were not funny") == "movie not funny"
    stem = make_normalizer(remove_stopwords=False, keep_negations=False, negations=[], lemmatize=False, stem=True)
    assert stem("running jumps") == "run jump"
