"""The demo models' shared WordPiece vocabulary and its two tokenizers.

One vocabulary, learnt from the corpus: BERT-style normalisation, cased, accents kept, and every CJK
character split off as its own token (as m-BERT does), so Chinese names are several tokens. The corpus's
English words are whole tokens (so most English objects are one token, multi-word names several); unseen
words fall back to characters.

- the masked model gets a standard ``BertTokenizer`` ([CLS] … [SEP] around a sequence, ``[MASK]``);
- the causal model gets the same vocabulary without a post-processor (like GPT-2's tokenizer, it adds
  nothing around a sequence) and uses ``[SEP]`` as its end-of-text token (the no-information token of
  the causal baseline). Token ids are the same in both.
"""
from __future__ import annotations

import string
from collections import Counter
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import BertTokenizer, PreTrainedTokenizerFast

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
EOS = SEP
VOCAB_SIZE = 3000


def _pipeline(tokenizer: Tokenizer) -> Tokenizer:
    """Give ``tokenizer`` the m-BERT-cased normaliser, pre-tokeniser and decoder."""
    tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                      strip_accents=False, lowercase=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


def _words(pipeline: Tokenizer, text: str) -> list[str]:
    """The words of ``text`` as the tokenizer sees them before WordPiece (CJK characters on their own)."""
    return [word for word, _ in pipeline.pre_tokenizer.pre_tokenize_str(pipeline.normalizer.normalize_str(text))]


def train_vocab(texts: Iterable[str], alphabet: Iterable[str] = (), vocab_size: int = VOCAB_SIZE) -> dict[str, int]:
    """A WordPiece vocabulary {token: id} learnt from ``texts``, deterministically.

    Order: the special tokens; every single character of ``alphabet``, of the texts and of ASCII letters and
    digits; their ``##`` continuations (characters that can sit inside a word); then the texts' words,
    most frequent first (ties by spelling), as long as ``vocab_size`` allows. Words left out, and words
    never seen, fall back to characters. (The ``tokenizers`` WordPiece trainer is not used because its
    choice among equally frequent pieces changes from run to run.)
    """
    pipeline = _pipeline(Tokenizer(models.WordPiece({UNK: 0}, unk_token=UNK)))
    counts = Counter(word for text in texts for word in _words(pipeline, text))
    chars = set(alphabet) | set(string.ascii_letters + string.digits) | {ch for word in counts for ch in word}
    singles = sorted(ch for ch in chars if _words(pipeline, ch) == [ch])
    continuations = [f"##{ch}" for ch in singles if _words(pipeline, "a" + ch) == ["a" + ch]]
    tokens = list(dict.fromkeys([*SPECIAL_TOKENS, *singles, *continuations]))
    taken = set(tokens)
    for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if len(tokens) >= vocab_size:
            break
        if word not in taken:
            tokens.append(word)
            taken.add(word)
    return {token: index for index, token in enumerate(tokens)}


def masked_tokenizer(vocab: dict[str, int]) -> BertTokenizer:
    """The masked model's tokenizer: m-BERT-cased behaviour over ``vocab``."""
    return BertTokenizer(vocab=dict(vocab), do_lower_case=False, tokenize_chinese_chars=True, strip_accents=False)


def causal_tokenizer(vocab: dict[str, int]) -> PreTrainedTokenizerFast:
    """The causal model's tokenizer: the same vocabulary and pipeline, nothing added around a sequence,
    ``[SEP]`` as end-of-text (and padding with ``[PAD]``)."""
    backend = _pipeline(Tokenizer(models.WordPiece(dict(vocab), unk_token=UNK)))
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOS, pad_token=PAD, unk_token=UNK)
