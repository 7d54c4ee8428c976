"""What an architecture adapter provides, and the two prompt styles (masked LM, causal LM).

An adapter knows, for one family of checkpoints:
- its **neuron site**: the module whose output (or input) is the FFN post-activation of each layer;
- its **output rows**: the FFN output-projection weights, one row of ``hidden`` per neuron;
- how a template becomes a :class:`~kn_core.data.prompts.Prompt` (masks for masked LMs, teacher forcing for
  causal LMs), including how the object is tokenised, and
- its **no-information token** for the minimal-information baseline, and
- optionally, the model as explicit **pieces** (embedding, attention projections, neurons, FFN output,
  head) for the fast attribution engine (``kn_core.attribution.fast``).

Nothing outside ``kn_core.model.adapters`` names an architecture.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, Literal, cast

import torch
from torch import nn

from kn_core.data.prompts import OBJECT_SLOT, SUBJECT_SLOT, FilledTemplate, Prompt, fill_template
from kn_core.errors import InputError, TemplateError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SiteKind = Literal["output", "input"]
KeysValues = tuple[torch.Tensor, torch.Tensor]


class Adapter(ABC):
    """One architecture family. Subclasses set the class variables and the site accessors."""

    family: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]
    kind: ClassVar[Literal["masked", "causal"]]
    site_kind: ClassVar[SiteKind] = "output"

    # -- model structure -------------------------------------------------------------------------
    @abstractmethod
    def layers(self, model: nn.Module) -> list[nn.Module]:
        """The transformer blocks, bottom to top."""

    @abstractmethod
    def neuron_site(self, model: nn.Module, layer: int) -> nn.Module:
        """Module whose output (``site_kind == "output"``) or first input (``"input"``) is the
        post-activation vector [batch, seq, d_ff] of ``layer``."""

    @abstractmethod
    def output_rows(self, model: nn.Module, layer: int) -> torch.Tensor:
        """FFN output projection of ``layer`` as [d_ff, hidden]: row i is what neuron i writes."""

    def body(self, model: nn.Module) -> nn.Module:
        """The model without its LM head (embeddings and blocks: transformers' ``base_model``), for passes
        that only read neuron activations; it must hold every neuron site."""
        return cast(nn.Module, model.base_model)  # nn.Module types attribute lookups Tensor | Module

    def n_layers(self, model: nn.Module) -> int:
        return len(self.layers(model))

    def d_ff(self, model: nn.Module) -> int:
        return int(self.output_rows(model, 0).shape[0])

    @staticmethod
    def max_positions(config) -> int | None:
        for name in ("max_position_embeddings", "n_positions", "n_ctx"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    # -- the model as pieces, for the fast engine ---------------------------------------------------
    # Each piece calls the checkpoint's own submodules through their plain tensor signatures (Linear,
    # LayerNorm, the MLP's parts), never a block's or an attention module's forward, whose signatures
    # change between transformers versions. The engine assembles attention itself (softmax(q·kᵀ·scale)·v),
    # which lets it reuse cached keys and values and compute only the rows that change. A block is:
    #   mid = attention_output(attention(queries(h), keys_values(h)), h)
    #   act = neurons(mid)  (the neuron site)        h' = ffn_output(act, mid)
    # Dropout is left out: it is the identity in eval mode (``fast_path_issue`` checks).

    def fast_path_issue(self, model: nn.Module) -> str | None:
        """Why ``model`` cannot be run as pieces (None when it can)."""
        if model.training:
            return "the model is in training mode (dropout)"
        return self._architecture_issue(model.config)

    def _architecture_issue(self, config) -> str | None:
        """Configuration options the pieces do not implement (None when there are none)."""
        return f"no fast path for the {self.family} family"

    def embed(self, model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        """Hidden states entering block 0: [batch, seq, hidden]."""
        raise NotImplementedError

    def queries(self, model: nn.Module, layer: int, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Queries [batch, heads, seq, d] of ``hidden`` [batch, seq, hidden], whose rows sit at ``positions``
        [seq] of the prompt."""
        raise NotImplementedError

    def keys_values(self, model: nn.Module, layer: int, hidden: torch.Tensor,
                    positions: torch.Tensor) -> KeysValues:
        """Keys and values [batch, kv_heads, seq, d] of ``hidden``, as :meth:`queries`."""
        raise NotImplementedError

    def attention_scale(self, model: nn.Module, layer: int) -> float:
        """Factor applied to the query-key products."""
        raise NotImplementedError

    def attention_output(self, model: nn.Module, layer: int, attended: torch.Tensor,
                         residual: torch.Tensor) -> torch.Tensor:
        """Residual stream after the attention sub-block, from the heads' output [batch, seq, heads * d] and
        the block's input ``residual``."""
        raise NotImplementedError

    def neurons(self, model: nn.Module, layer: int, mid: torch.Tensor) -> torch.Tensor:
        """The neuron activations [batch, seq, d_ff] from the residual stream after attention."""
        raise NotImplementedError

    def ffn_output(self, model: nn.Module, layer: int, act: torch.Tensor, mid: torch.Tensor) -> torch.Tensor:
        """The block's output from its neuron activations and the residual stream after attention."""
        raise NotImplementedError

    def head(self, model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """Logits from the top block's output (final norm and LM head included): [..., vocab]."""
        raise NotImplementedError

    @staticmethod
    def split_heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
        """[batch, seq, heads * d] → [batch, heads, seq, d]."""
        return x.view(*x.shape[:2], -1, head_dim).transpose(1, 2)

    # -- prompts -----------------------------------------------------------------------------------
    @abstractmethod
    def no_info_token_id(self, tokenizer: PreTrainedTokenizerBase) -> int:
        """Token that carries no information, used to build the minimal-information baseline."""

    @abstractmethod
    def build_prompt(self, tokenizer: PreTrainedTokenizerBase, template: str, subject: str, obj: str) -> Prompt:
        """Turn a template with [X]/[Y] into model input with target positions and gold tokens."""

    @staticmethod
    def encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
        return list(tokenizer.encode(text, add_special_tokens=False)) if text else []

    def encode_object(self, tokenizer: PreTrainedTokenizerBase, filled: FilledTemplate) -> list[int]:
        """Gold object tokens: no special tokens, original case; a leading space when the template has
        one before [Y] (byte-level BPE encodes it into the first token; WordPiece ignores it)."""
        obj = filled.object
        ids = self.encode(tokenizer, (" " if filled.space_before_object else "") + obj)
        if not ids:
            raise InputError("object", f"{obj!r} tokenises to nothing; enter a visible word")
        unk = tokenizer.unk_token_id
        if unk is not None and unk in ids:
            raise InputError("object", f"{obj!r} contains characters unknown to this model's vocabulary; "
                                       "use the spelling the model knows")
        return ids


class MaskedLMAdapter(Adapter):
    """Masked LMs: one mask per object token; targets are the masks."""

    kind = "masked"

    def no_info_token_id(self, tokenizer: PreTrainedTokenizerBase) -> int:
        if tokenizer.mask_token_id is None:
            raise InputError("model", "the tokenizer has no mask token, which a masked LM needs")
        return int(tokenizer.mask_token_id)

    def build_prompt(self, tokenizer: PreTrainedTokenizerBase, template: str, subject: str, obj: str) -> Prompt:
        filled = fill_template(template, subject, obj)
        object_ids = self.encode_object(tokenizer, filled)
        mask = self.no_info_token_id(tokenizer)
        filled_left = self.encode(tokenizer, filled.left.rstrip())
        body = filled_left + [mask] * len(object_ids) + self.encode(tokenizer, filled.right)
        probe = list(tokenizer.encode(tokenizer.mask_token, add_special_tokens=True))  # e.g. [CLS] [MASK] [SEP]
        cut = probe.index(mask)
        ids = probe[:cut] + body + probe[cut + 1:]
        targets = tuple(range(cut + len(filled_left), cut + len(filled_left) + len(object_ids)))
        context = tuple(j for j in range(cut, cut + len(body)) if j not in targets)
        return Prompt(template=filled.template, subject=filled.subject, object=filled.object, input_ids=tuple(ids),
                      target_positions=targets, object_ids=tuple(object_ids), context_positions=context)


class CausalLMAdapter(Adapter):
    """Causal LMs: the prompt is cut at [Y]; object tokens are teacher-forced, each predicted at the
    position just before it."""

    kind = "causal"

    def no_info_token_id(self, tokenizer: PreTrainedTokenizerBase) -> int:
        if tokenizer.eos_token_id is None:
            raise InputError("model", "the tokenizer has no end-of-text token, which the baseline needs")
        return int(tokenizer.eos_token_id)

    def build_prompt(self, tokenizer: PreTrainedTokenizerBase, template: str, subject: str, obj: str) -> Prompt:
        filled = fill_template(template, subject, obj)
        if filled.template.index(OBJECT_SLOT) < filled.template.index(SUBJECT_SLOT):
            raise TemplateError("[Y] comes before [X]: a causal LM reads only the text before [Y], so the subject "
                                "would be cut away; put [X] before [Y]")
        cut = filled.right.strip() if any(ch.isalnum() for ch in filled.right) else ""  # read up to [Y] only
        prefix = self.encode(tokenizer, filled.left.rstrip())
        if not prefix:
            raise TemplateError("a causal LM needs text before [Y] to predict the object from")
        object_ids = self.encode_object(tokenizer, filled)
        ids = prefix + object_ids[:-1]
        targets = tuple(len(prefix) - 1 + i for i in range(len(object_ids)))
        context = tuple(range(len(prefix)))
        return Prompt(template=filled.template, subject=filled.subject, object=filled.object, input_ids=tuple(ids),
                      target_positions=targets, object_ids=tuple(object_ids), context_positions=context, cut=cut)
