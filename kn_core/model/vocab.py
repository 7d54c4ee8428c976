"""Tokens as people read them, and what a neuron writes: its FFN output row projected onto the vocabulary (the
unembedding matrix).

A vocabulary entry is not text: byte-level BPE (GPT-2, SmolLM2) spells a leading space ``Ġ`` and every
non-ASCII byte as a Latin-1 stand-in (``Î¿Î¼Î±Î¹`` is Greek ``ομαι``), SentencePiece (Gemma) a space ``▁``
and rare bytes ``<0xE2>``. Everything shown to a user goes through :func:`token_text`, the tokenizer's own
``convert_tokens_to_string``; the raw entry is for tooltips at most.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Sequence, cast

import torch

if TYPE_CHECKING:  # typing only: the model room is loaded by whoever calls
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from kn_core.model.loading import LanguageModel

VISIBLE = str.maketrans({" ": "␣", "\n": "⏎", "\t": "⇥", "\r": "␍"})


class PromotedToken(NamedTuple):
    """A token a neuron promotes: its text, its raw vocabulary entry and the logit per unit of activation."""

    text: str
    token: str
    logit: float


def _visible(text: str) -> str:
    return text.translate(VISIBLE) if text and not text.strip() else text


def token_text(tokenizer: PreTrainedTokenizerBase, token: str) -> str:
    """The text of one vocabulary entry, decoded by the tokenizer itself (``ĠTubman`` → `` Tubman``); a token
    that decodes to whitespace only shows it with visible marks (␣, ⏎, ⇥), and one that decodes to nothing
    shows as the raw entry. A lone byte of a multi-byte character decodes to ``�``."""
    return _visible(tokenizer.convert_tokens_to_string([token])) or token


def token_texts(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> list[str]:
    """The decoded text of each vocabulary entry of ``ids``, one by one (:func:`token_text`)."""
    return [token_text(tokenizer, str(t)) for t in tokenizer.convert_ids_to_tokens(list(ids))]


def piece_texts(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> list[str]:
    """What each token of a tokenised text adds to the tokenizer's own ``decode`` of the text so far, so that a
    character spelt over several byte tokens shows whole, at its last token (the earlier ones show ``…``);
    whitespace shows with visible marks. Where a decoder rewrites earlier text the token's own
    :func:`token_text` is shown instead."""
    ids, texts, before = list(ids), [], ""
    for i, token in enumerate(tokenizer.convert_ids_to_tokens(ids)):
        now = cast(str, tokenizer.decode(ids[:i + 1], skip_special_tokens=False,
                                         clean_up_tokenization_spaces=False)).rstrip("\ufffd")  # ids in: a str
        if now.startswith(before):
            piece, before = now[len(before):], now
            texts.append(_visible(piece) or "…")
        else:
            texts.append(token_text(tokenizer, str(token)))
    return texts


def promoted_tokens(lm: LanguageModel, layer: int, index: int, k: int = 10) -> list[PromotedToken]:
    """The k tokens whose logits neuron (layer, index) raises most per unit of activation, with the logit."""
    with torch.inference_mode():
        row = lm.adapter.output_rows(lm.model, layer)[index]
        unembedding = cast("PreTrainedModel", lm.model).get_output_embeddings().weight  # [vocab, hidden]
        logits = unembedding @ row.to(unembedding.dtype)
        top = logits.float().topk(min(k, logits.numel()))
    ids = top.indices.tolist()
    tokens = [str(t) for t in lm.tokenizer.convert_ids_to_tokens(ids)]
    return [PromotedToken(text, token, float(value))
            for text, token, value in zip(token_texts(lm.tokenizer, ids), tokens, top.values.tolist())]
