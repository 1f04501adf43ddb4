"""Text cleaning: light cleaning for transformers, heavy normalisation for bag-of-words baselines."""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import pandas as pd
from nltk.tokenize import TweetTokenizer
from pydantic import ConfigDict, Field

from sentiment.config import Section

URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
MENTION_RE = re.compile(r"(?<!\w)@\w+")
HASHTAG_RE = re.compile(r"(?<!\w)#(\w+)")
TAG_RE = re.compile(r"<[^<>]{1,200}>")
SPACE_RE = re.compile(r"\s+")
PUNCT_ONLY_RE = re.compile(r"^[^\w!?]+$")


@dataclass(frozen=True)
class Cleaning:
    """The light cleaning every transformer input gets (the part of params.yaml `clean` that applies to it)."""

    url_placeholder: str
    user_placeholder: str
    max_repeat: int


def _strip_controls(text: str) -> str:
    return "".join(" " if unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} else ch for ch in text)


def clean_text(text: str, cfg: Cleaning) -> str:
    """Light cleaning that keeps what a transformer can use (case, punctuation, emoji)."""
    text = html.unescape(text)
    text = TAG_RE.sub(" ", text)
    text = URL_RE.sub(f" {cfg.url_placeholder} " if cfg.url_placeholder else " ", text)
    text = MENTION_RE.sub(f" {cfg.user_placeholder} " if cfg.user_placeholder else " ", text)
    text = HASHTAG_RE.sub(r"\1", text)
    text = _strip_controls(text)
    if cfg.max_repeat > 0:
        # letters only: "soooo" -> "soo", but "1000" stays a number
        text = re.sub(rf"([^\W\d_])\1{{{cfg.max_repeat},}}", r"\1" * cfg.max_repeat, text)
    return SPACE_RE.sub(" ", text).strip()


@dataclass
class Normalizer:
    """Baseline text: lowercase tokens, stopwords out (negations kept), optional lemma/stem."""

    stopwords: frozenset[str] = frozenset()
    negations: frozenset[str] = frozenset()
    lemmatize: bool = False
    stem: bool = False
    _tokenizer: TweetTokenizer = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._tokenizer = TweetTokenizer(preserve_case=False, reduce_len=True, strip_handles=True)
        self._lemmatizer = None
        self._stemmer = None
        if self.lemmatize:
            from nltk.stem import WordNetLemmatizer

            self._lemmatizer = WordNetLemmatizer()
        if self.stem:
            from nltk.stem import PorterStemmer

            self._stemmer = PorterStemmer()
        self._word = lru_cache(maxsize=200_000)(self._word_uncached)

    def is_negation(self, token: str) -> bool:
        return bool(self.negations) and (token in self.negations or token.endswith("n't"))

    def _word_uncached(self, token: str) -> str:
        if self._lemmatizer is not None:
            token = self._lemmatizer.lemmatize(token)
        if self._stemmer is not None:
            token = self._stemmer.stem(token)
        return token

    def tokens(self, text: str) -> list[str]:
        out = []
        for token in self._tokenizer.tokenize(text):
            if PUNCT_ONLY_RE.match(token):
                continue
            if self.is_negation(token):
                out.append(token)
            elif token not in self.stopwords:
                out.append(self._word(token))
        return out

    def __call__(self, text: str) -> str:
        return " ".join(self.tokens(text))


def make_normalizer(
    *, remove_stopwords: bool, keep_negations: bool, negations: Iterable[str], lemmatize: bool, stem: bool
) -> Normalizer:
    """Build a Normalizer, loading NLTK data (stopwords, WordNet) through the mirror rules."""
    from sentiment.data.hub import ensure_nltk

    stop: frozenset[str] = frozenset()
    if remove_stopwords:
        ensure_nltk("corpora/stopwords", "stopwords")
        from nltk.corpus import stopwords

        stop = frozenset(stopwords.words("english"))
    if lemmatize:
        ensure_nltk("corpora/wordnet", "wordnet")
    return Normalizer(
        stopwords=stop,
        negations=frozenset(negations) if keep_negations else frozenset(),
        lemmatize=lemmatize,
        stem=stem,
    )


class TextCleaning(Section):
    """params.yaml `clean`'s text cleaning, read without `drop_label_issues` (which only the models' training rows
    follow: sentiment.data.datasets.TrainRows)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    url_placeholder: str  # "" removes URLs
    user_placeholder: str  # "" removes @mentions
    max_repeat: int = Field(ge=0, le=100)  # "soooo" -> "soo"; 0 keeps elongations
    dedup_train: bool
    remove_stopwords: bool
    keep_negations: bool  # the `words.negation` list survives stopword removal
    lemmatize: bool
    stem: bool

    def light(self) -> Cleaning:
        return Cleaning(self.url_placeholder, self.user_placeholder, self.max_repeat)

    def normalizer(self, negations: Iterable[str]) -> Normalizer:
        return make_normalizer(
            remove_stopwords=self.remove_stopwords,
            keep_negations=self.keep_negations,
            negations=negations,
            lemmatize=self.lemmatize,
            stem=self.stem,
        )


class CleanConfig(TextCleaning):
    """params.yaml `clean`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    drop_label_issues: bool  # train rows that label_issues flags are dropped


def clean_split(
    frame: pd.DataFrame, cfg: TextCleaning, normalize: Normalizer, *, dedup: bool
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Clean one split; return it and the rows dropped per reason."""
    light = cfg.light()
    out = frame.assign(text=frame["text"].map(lambda t: clean_text(t, light)))
    empty = out["text"] == ""
    out = out[~empty]
    dropped = {"empty_after_cleaning": int(empty.sum()), "duplicate_in_train": 0}
    if dedup:
        dup = out.duplicated("text", keep="first")
        dropped["duplicate_in_train"] = int(dup.sum())
        out = out[~dup]
    out = out.assign(text_norm=out["text"].map(normalize))
    return out[["id", "text", "text_norm", "label"]].reset_index(drop=True), dropped


# --- words, as people and word-list slices read them ------------------------------------------

WORD_RE = re.compile(r"[\w']+|n't")


def words(text: str) -> list[str]:
    """Lowercase word tokens; SST-2's split clitics ("does n't") and tweets' ("doesn't") both match n't."""
    return WORD_RE.findall(text.lower())


def has_any(text: str, vocabulary: set[str]) -> bool:
    """Whether `text` contains a word of `vocabulary` (any "...n't" counts when "n't" is in it)."""
    negation_suffix = "n't" in vocabulary
    return any(t in vocabulary or (negation_suffix and t.endswith("n't")) for t in words(text))


class NegationWords(Section):
    """params.yaml `words.negation`, read without the other lists (what the baselines' normalizer keeps)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    negation: list[str]


class WordLists(NegationWords):
    """params.yaml `words`: named word lists (read as YAML 1.2, so a bare `no` is the word)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    contrast: list[str]

    def sets(self) -> dict[str, set[str]]:
        return {name: {w.lower() for w in values} for name, values in self.model_dump().items()}
