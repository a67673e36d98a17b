"""Tiny Hugging Face models built on the spot (random weights, a 30-word vocabulary), so the
caikit-nlp tests download nothing. Each builder writes a directory that caikit-nlp's own
``bootstrap`` / ``train`` accept as a base model path."""

from __future__ import annotations

from pathlib import Path

WORDS = [
    *("the", "a", "cat", "dog", "sat", "on", "mat", "ran", "fast", "slow", "red", "blue"),
    *("green", "is", "was", "and", "or", "to", "of", "in", "it", "good", "bad", "yes", "no"),
    *("hello", "world"),
]


def _seeded() -> None:
    import torch

    torch.manual_seed(0)


def _bert_tokenizer(directory: Path, **kwargs: object):
    """A BERT word-piece tokenizer over ``WORDS``, its vocabulary written to ``directory``."""
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (directory / "vocab.txt").write_text("\n".join([*specials, *WORDS]))
    return BertTokenizerFast(vocab_file=str(directory / "vocab.txt"), do_lower_case=True, **kwargs)


def _tiny_bert_config(vocab_size: int, **kwargs: object):
    """One layer, 16 wide: seconds to build and run on a CPU."""
    from transformers import BertConfig

    _seeded()
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        **kwargs,
    )


def sentence_transformer(directory: Path) -> Path:
    """A one-layer BERT with mean pooling, saved as a sentence-transformers model."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertModel

    bert = directory / "bert"
    bert.mkdir(parents=True)
    tokenizer = _bert_tokenizer(bert)
    BertModel(_tiny_bert_config(len(tokenizer))).save_pretrained(bert)
    tokenizer.save_pretrained(bert)
    transformer = models.Transformer(str(bert), max_seq_length=32)
    pooling = models.Pooling(transformer.get_word_embedding_dimension())
    target = directory / "sentence-transformer"
    SentenceTransformer(modules=[transformer, pooling]).save(str(target))
    return target


def sequence_classifier(directory: Path) -> Path:
    """A one-layer BERT sequence classifier with labels ``calm`` and ``alarm``."""
    from transformers import BertForSequenceClassification

    target = directory / "sequence-classifier"
    target.mkdir(parents=True)
    tokenizer = _bert_tokenizer(target, model_max_length=32)  # caikit-nlp pads to it
    tokenizer.save_pretrained(target)
    config = _tiny_bert_config(
        len(tokenizer), id2label={0: "calm", 1: "alarm"}, label2id={"calm": 0, "alarm": 1}
    )
    BertForSequenceClassification(config).save_pretrained(target)
    return target


def causal_lm(directory: Path) -> Path:
    """A one-layer GPT-2 with a word-level tokenizer whose end-of-sequence token is ``<eos>``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    target = directory / "causal-lm"
    target.mkdir(parents=True)
    vocab = {word: index for index, word in enumerate(["<pad>", "<unk>", "<eos>", *WORDS])}
    word_level = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=word_level,
        eos_token="<eos>",
        bos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_input_names=["input_ids", "attention_mask"],  # as GPT-2's: no token_type_ids
    ).save_pretrained(target)
    _seeded()
    config = GPT2Config(
        vocab_size=len(vocab),
        n_positions=128,
        n_embd=16,
        n_layer=1,
        n_head=2,
        bos_token_id=vocab["<eos>"],
        eos_token_id=vocab["<eos>"],
        pad_token_id=vocab["<pad>"],
    )
    GPT2LMHeadModel(config).save_pretrained(target)
    return target
