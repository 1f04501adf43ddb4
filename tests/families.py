"""Tiny random-init checkpoints of each encoder family, with a tokenizer of the family's kind trained in
the test (WordPiece, byte-level BPE or Unigram), saved into a mirror laid out like the Hub."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoConfig, AutoModel, PreTrainedTokenizerFast

CORPUS = [
    "the film was good and the acting was great",
    "a lovely wonderful excellent story with a charming cast",
    "the plot was bad , boring and really awful",
    "a terrible dreadful film ; the story was dull",
    "it is not good , but it is not bad either",
    "i did n't like it , though the music was fine",
    "quite a moving journey , often affecting and funny",
    "@user loving the new album ! #music http://t.co/x",
] * 4

BERT_SPECIALS = {"cls": "[CLS]", "sep": "[SEP]", "pad": "[PAD]", "mask": "[MASK]", "unk": "[UNK]"}
ROBERTA_SPECIALS = {"cls": "<s>", "sep": "</s>", "pad": "<pad>", "mask": "<mask>", "unk": "<unk>"}

# family -> (model_type, tokenizer kind, special tokens, extra config)
FAMILIES: dict[str, tuple[str, str, dict[str, str], dict]] = {
    "bert": ("bert", "wordpiece", BERT_SPECIALS, {}),
    "distilbert": ("distilbert", "wordpiece", BERT_SPECIALS, {}),
    "electra": ("electra", "wordpiece", BERT_SPECIALS, {"embedding_size": 32}),
    "roberta": ("roberta", "bpe", ROBERTA_SPECIALS, {}),
    "xlm-roberta": ("xlm-roberta", "unigram", ROBERTA_SPECIALS, {}),
    "albert": ("albert", "unigram", BERT_SPECIALS, {"embedding_size": 32}),
    "deberta-v2": ("deberta-v2", "unigram", BERT_SPECIALS, {"position_biased_input": True, "relative_attention": False}),
    "deberta-v3": (
        "deberta-v2",
        "unigram",
        BERT_SPECIALS,
        {
            "position_biased_input": False,
            "relative_attention": True,
            "pos_att_type": ["p2c", "c2p"],
            "max_relative_positions": -1,
        },
    ),
    "mpnet": ("mpnet", "wordpiece", ROBERTA_SPECIALS, {}),
    "modernbert": ("modernbert", "bpe", BERT_SPECIALS, {"global_attn_every_n_layers": 1, "local_attention": 16}),
}

SIZE = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def train_tokenizer(kind: str, specials: dict[str, str]) -> PreTrainedTokenizerFast:
    """A small tokenizer of `kind`, trained on CORPUS in well under a second, wrapping inputs as cls … sep."""
    tokens = list(dict.fromkeys([specials["pad"], specials["unk"], specials["cls"], specials["sep"], specials["mask"]]))
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=specials["unk"]))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=200, special_tokens=tokens)
    elif kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token=specials["unk"]))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=tokens, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=150, special_tokens=tokens, unk_token=specials["unk"])
    tok.train_from_iterator(CORPUS, trainer)
    cls, sep = specials["cls"], specials["sep"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B {sep}",
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        cls_token=cls,
        sep_token=sep,
        pad_token=specials["pad"],
        mask_token=specials["mask"],
        unk_token=specials["unk"],
        bos_token=cls,
        eos_token=sep,
        model_max_length=128,
    )


def build_checkpoint(family: str, mirror: Path) -> str:
    """Save a tiny random-init `family` encoder and its tokenizer under mirror/models/tiny/<family>; return the id."""
    model_type, kind, specials, extra = FAMILIES[family]
    tokenizer = train_tokenizer(kind, specials)
    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
        max_position_embeddings=130,
        **({"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64} if model_type == "distilbert" else SIZE),
        **extra,
    )
    hub_id = f"tiny/{family}"
    out = mirror / "models" / hub_id
    AutoModel.from_config(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return hub_id
