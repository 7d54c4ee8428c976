"""Tiny random models built from configs (odd sizes catch hidden assumptions), saved as safetensors."""
from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertTokenizerFast,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

INIT = 0.5  # larger than the default 0.02 so that activations move probabilities measurably
WORDS = ("the capital of is in a an and city country language spoken official continent currency "
         "Tanzania Dodoma France Paris Japan Tokyo Kenya Nairobi Peru Lima Africa Europe Asia "
         "Dar es Salaam New Delhi Buenos Aires . , 的 首 都 是 法 国 巴 黎 日 本 东 京 。").split()
CORPUS = ["The capital of Tanzania is Dodoma.", "The capital of France is Paris.", "The capital of Japan is Tokyo.",
          "Dar es Salaam is a city in Tanzania.", "Buenos Aires and New Delhi.", "Kenya Nairobi Peru Lima Africa"]


def bert_tokenizer(folder: Path) -> BertTokenizerFast:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(WORDS) | set("abcdefghijklmnopqrstuvwxyz"))
    return BertTokenizerFast(vocab={tok: i for i, tok in enumerate(vocab)}, do_lower_case=False,
                             tokenize_chinese_chars=True)


def gpt2_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    from tokenizers import decoders
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>")


def make_bert(folder: Path, seed: int = 0, layers: int = 3, d_ff: int = 37) -> Path:
    tokenizer = bert_tokenizer(folder)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=24, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=d_ff, max_position_embeddings=40, type_vocab_size=1,
                        initializer_range=INIT)
    BertForMaskedLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def make_gpt2(folder: Path, seed: int = 0, layers: int = 3, d_ff: int = 37) -> Path:
    tokenizer = gpt2_tokenizer()
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=24, n_layer=layers, n_head=2, n_inner=d_ff, n_positions=40,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id, initializer_range=INIT)
    GPT2LMHeadModel(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder
