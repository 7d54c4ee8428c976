"""Gemma 3 text models (``gemma3_text``, e.g. google/gemma-3-270m): a gated MLP whose neuron is
``gelu_tanh(gate) * up``, the input of ``down_proj``, as for LLaMA; the blocks differ.

A Gemma 3 block (transformers' ``Gemma3DecoderLayer``)::

    x    = input_layernorm(h)
    q, k = rotary(q_norm(q_proj(x))), rotary(k_norm(k_proj(x)))   per head; v = v_proj(x)
    mid  = h + post_attention_layernorm(o_proj(softmax(q·kᵀ · query_pre_attn_scalar^-½) · v))
    act  = act_fn(gate_proj(y)) * up_proj(y),  y = pre_feedforward_layernorm(mid)     (the neuron site)
    h'   = mid + post_feedforward_layernorm(down_proj(act))

and around the blocks:

- **embedding scale**: ``embed_tokens`` is a ``Gemma3TextScaledWordEmbedding`` that multiplies by
  sqrt(hidden) inside its own forward, so :meth:`embed` calls the module and adds nothing;
- **RMSNorm with (1 + weight)**: every norm is called as the checkpoint's own module, never re-implemented;
- **rotary positions per layer type**: sliding and full-attention layers have their own base frequency
  (``rope_parameters[layer_type]``, 10k local / 1M global); the model's ``rotary_emb`` takes the layer type;
- **final logit softcapping**: ``Gemma3ForCausalLM`` applies ``cap · tanh(logits / cap)`` after the LM
  head when ``final_logit_softcapping`` is set (None for Gemma 3 checkpoints); :meth:`head` does the same;
- **attention logit softcapping**: ``attn_logit_softcapping`` is in the config but transformers' Gemma 3
  attention never passes it to its attention functions, so the model does not apply it and neither do the
  pieces (the fast engine's self-checks would notice a transformers version that starts to);
- **sliding-window layers** attend to the last ``sliding_window`` positions (512 in gemma-3-270m). A prompt
  that fits the window is attended to in full by every layer, which is what the pieces compute, so
  :meth:`max_positions` is the window: ``LanguageModel.prompt`` refuses a longer prompt (for both engines,
  which then agree) with an :class:`~kn_core.errors.InputError` saying how many tokens fit;
- **BOS**: Gemma is trained with ``<bos>`` in front of every text and is near-random without it; prompts
  start with the special tokens the tokenizer itself puts in front of a text (none for a tokenizer that
  adds none), which are never replaced for the minimal-information baseline.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from kn_core.data.prompts import Prompt
from kn_core.model.adapters.llama import GatedMLPAdapter

if TYPE_CHECKING:
    from transformers import Gemma3TextConfig, PreTrainedTokenizerBase

SLIDING = "sliding_attention"
ATTENTION_KINDS = {"full_attention", SLIDING}
STATIC_ROPE = {"default", "linear", "yarn", "llama3"}  # frequencies that do not depend on the sequence length


class Gemma3Adapter(GatedMLPAdapter):
    family = "Gemma 3"
    model_types = ("gemma3_text",)

    # -- prompts ------------------------------------------------------------------------------------
    @staticmethod
    def max_positions(config) -> int | None:
        """The sliding window when some layer slides (a longer prompt would not be attended to in full),
        else the model's context."""
        limit = GatedMLPAdapter.max_positions(config)
        window = getattr(config, "sliding_window", None)
        if SLIDING in (getattr(config, "layer_types", None) or ()) and isinstance(window, int) and window > 0:
            return window if limit is None else min(limit, window)
        return limit

    @classmethod
    def leading_specials(cls, tokenizer) -> list[int]:
        """The special tokens the tokenizer puts in front of a text (Gemma: ``<bos>``)."""
        plain = cls.encode(tokenizer, "a")
        full = list(tokenizer.encode("a", add_special_tokens=True))
        for cut in range(len(full) - len(plain) + 1):
            if full[cut:cut + len(plain)] == plain:
                return full[:cut]
        return []

    def build_prompt(self, tokenizer: PreTrainedTokenizerBase, template: str, subject: str, obj: str) -> Prompt:
        prompt = super().build_prompt(tokenizer, template, subject, obj)
        lead = self.leading_specials(tokenizer)
        if not lead:
            return prompt
        n = len(lead)
        return replace(prompt, input_ids=(*lead, *prompt.input_ids),
                       target_positions=tuple(p + n for p in prompt.target_positions),
                       context_positions=tuple(p + n for p in prompt.context_positions))

    # -- pieces for the fast engine ------------------------------------------------------------------
    def _architecture_issue(self, config) -> str | None:
        kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
        if not kinds <= ATTENTION_KINDS:
            return f"attention layer types {sorted(kinds - ATTENTION_KINDS)} are not implemented"
        if getattr(config, "use_bidirectional_attention", False):
            return "bidirectional (non-causal) Gemma 3 attention is not implemented"
        for kind in kinds:
            rope = ((getattr(config, "rope_parameters", None) or {}).get(kind) or {}).get("rope_type", "default")
            if rope not in STATIC_ROPE:
                return f"rotary embeddings of type {rope!r} (they depend on the sequence length) are not implemented"
        return None

    def _rotary(self, model: nn.Module, layer: int, heads: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Rotate ``heads`` [batch, heads, seq, d] by their positions, with ``layer``'s own frequencies."""
        config = cast("Gemma3TextConfig", model.config)
        assert config.layer_types is not None  # Gemma3TextConfig fills it in where config.json leaves it out
        kind = config.layer_types[layer]
        cos, sin = cast(nn.Module, self._decoder(model).rotary_emb)(heads, positions[None], kind)  # [1, seq, d]
        half = heads.shape[-1] // 2
        rotated = torch.cat([-heads[..., half:], heads[..., :half]], dim=-1)
        return heads * cos[:, None] + rotated * sin[:, None]

    def queries(self, model, layer, hidden, positions):
        block = self.layers(model)[layer]
        attn = block.self_attn
        q = attn.q_norm(self.split_heads(attn.q_proj(block.input_layernorm(hidden)), attn.head_dim))
        return self._rotary(model, layer, q, positions)

    def keys_values(self, model, layer, hidden, positions):
        block = self.layers(model)[layer]
        attn, x = block.self_attn, block.input_layernorm(hidden)
        k = attn.k_norm(self.split_heads(attn.k_proj(x), attn.head_dim))
        return self._rotary(model, layer, k, positions), self.split_heads(attn.v_proj(x), attn.head_dim)

    def attention_scale(self, model: nn.Module, layer: int) -> float:
        attn = cast(nn.Module, self.layers(model)[layer].self_attn)
        return cast(float, attn.scaling)  # query_pre_attn_scalar ** -0.5

    def attention_output(self, model, layer, attended, residual):
        block = self.layers(model)[layer]
        return residual + block.post_attention_layernorm(block.self_attn.o_proj(attended))

    def neurons(self, model, layer, mid):
        block = self.layers(model)[layer]
        x = block.pre_feedforward_layernorm(mid)
        return block.mlp.act_fn(block.mlp.gate_proj(x)) * block.mlp.up_proj(x)

    def ffn_output(self, model, layer, act, mid):
        block = self.layers(model)[layer]
        return mid + block.post_feedforward_layernorm(block.mlp.down_proj(act))

    def head(self, model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        logits = cast(nn.Module, model.lm_head)(cast(nn.Module, self._decoder(model).norm)(hidden))
        cap = getattr(model.config, "final_logit_softcapping", None)
        return logits if cap is None else torch.tanh(logits / cap) * cap
