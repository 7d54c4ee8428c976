"""Reading and editing neuron activations through forward hooks (always removed in ``finally``).

An *edit* is a function ``act -> act`` applied to the post-activation tensor [batch, seq, d_ff] of one
layer. Everything that installs hooks holds the model's lock, since hooks mutate the shared module.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, Sequence

import torch

if TYPE_CHECKING:  # typing only: the model room is loaded by whoever calls
    from kn_core.model.loading import LanguageModel

Edit = Callable[[torch.Tensor], torch.Tensor]


@contextmanager
def edited(lm: LanguageModel, edits: Mapping[int, Edit]) -> Iterator[None]:
    """Apply ``edits[layer]`` to that layer's neuron activations for the duration of the block."""
    with lm.lock:
        handles = []
        try:
            for layer, fn in edits.items():
                site = lm.neuron_site(layer)
                if lm.adapter.site_kind == "output":
                    handles.append(site.register_forward_hook(lambda _m, _i, out, fn=fn: fn(out)))
                else:
                    handles.append(site.register_forward_pre_hook(
                        lambda _m, args, fn=fn: (fn(args[0]), *args[1:])))
            yield
        finally:
            for handle in handles:
                handle.remove()


@contextmanager
def recorded(lm: LanguageModel, layers: Sequence[int],
             positions: Sequence[int] | None = None) -> Iterator[dict[int, torch.Tensor]]:
    """Record the neuron activations of ``layers`` into the yielded dict: [batch, seq, d_ff], or
    [batch, len(positions), d_ff] when ``positions`` is given (only those are kept)."""
    store: dict[int, torch.Tensor] = {}
    index = None if positions is None else torch.as_tensor(list(positions), device=lm.device)

    def recorder(layer: int) -> Edit:
        def fn(act: torch.Tensor) -> torch.Tensor:
            store[layer] = (act if index is None else act[:, index]).detach()
            return act
        return fn

    with edited(lm, {layer: recorder(layer) for layer in layers}):
        yield store


def _forward(lm: LanguageModel, module, input_ids: torch.Tensor):
    kwargs = {"use_cache": False} if lm.kind == "causal" else {}
    return module(input_ids=input_ids.to(lm.device), attention_mask=torch.ones_like(input_ids, device=lm.device),
                  **kwargs)


def run(lm: LanguageModel, input_ids: torch.Tensor) -> torch.Tensor:
    """Logits [batch, seq, vocab] of a plain forward pass (no KV cache)."""
    return _forward(lm, lm.model, input_ids).logits


def run_body(lm: LanguageModel, input_ids: torch.Tensor) -> None:
    """A forward pass through the embeddings and blocks only, without the LM head (no logits), for reading
    neuron activations with :func:`recorded`: the head's [batch, seq, vocab] product is the largest single
    matmul of a small model's pass, and nothing here needs it."""
    _forward(lm, lm.adapter.body(lm.model), input_ids)


def gold_probs(logits: torch.Tensor, positions: Sequence[int], tokens: Sequence[int]) -> torch.Tensor:
    """P(token_i at position_i) for every batch row: [batch, k]."""
    pos = torch.as_tensor(positions, device=logits.device)
    tok = torch.as_tensor(tokens, device=logits.device)
    picked = logits[:, pos, :].float().softmax(-1)  # [B, k, V]
    return picked.gather(-1, tok.view(1, -1, 1).expand(picked.shape[0], -1, 1)).squeeze(-1)


def count_hooks(lm: LanguageModel) -> int:
    """Number of forward hooks installed anywhere in the model (0 when nothing leaked)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in lm.model.modules())
