"""Reference engine: Captum Integrated Gradients (the quadrature rule of the config), one baseline path, one
layer and one object token at a time, through Captum's public API only.

Several baseline paths b_j (the ``masked`` baseline: one per masked prompt) get one Captum IG each, from b_j
to a; the attribution is the mean of the paths' integrals (docs/method.md §1).

The forward function's input is the activation vector at the target position; the whole model runs for
each of the m scaled copies (the way the field's code does it), on torch's default kernels. Slow but plain:
it is the oracle that faster engines are tested against.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import torch

from kn_core.attribution.quadrature import CAPTUM_METHODS, DEFAULT_RULE
from kn_core.attribution.quadrature import rule as quadrature_rule
from kn_core.attribution.result import Integrals
from kn_core.data.prompts import Prompt
from kn_core.model.hooks import edited, gold_probs, run

if TYPE_CHECKING:
    from kn_core.model.loading import LanguageModel


def _replace_at(position: int, z: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    def fn(act: torch.Tensor) -> torch.Tensor:
        return torch.cat([act[:, :position], z[:, None, :].to(act.dtype), act[:, position + 1:]], dim=1)
    return fn


def _integrated_gradients(forward: Callable[[torch.Tensor], torch.Tensor], a: torch.Tensor, b: torch.Tensor,
                          steps: int, rule: str = DEFAULT_RULE) -> tuple[torch.Tensor, torch.Tensor]:
    """Captum's IG of ``forward`` from ``b`` to ``a`` ([1, d_ff] each) by the quadrature ``rule``, with its
    convergence delta.

    Captum's Riemann rules assert m > 1, although they are well defined for m = 1 (one point z = b + α(a − b),
    weight 1: α = 1 for the right rule, α = 0 for the left one), where IG is (a − b) · ∂f/∂z at that point:
    Captum's public :class:`~captum.attr.InputXGradient` (x · ∂g/∂x) of g(x) = f(x − d + z) at x = d = a − b
    (x − d is exactly 0 there, so g reads exactly z and ∂g/∂x = ∂f/∂z), and the delta comes from Captum's
    public completeness check.
    """
    from captum.attr import InputXGradient, IntegratedGradients  # imported here: captum pulls in IPython and
    # matplotlib (~12 s on a busy machine), which a fast-engine run never needs

    ig = IntegratedGradients(forward)
    if steps > 1 or not CAPTUM_METHODS[rule].startswith("riemann"):
        return ig.attribute(a, baselines=b, n_steps=steps, method=CAPTUM_METHODS[rule], internal_batch_size=steps,
                            return_convergence_delta=True)
    (alpha,), (weight,) = (x.tolist() for x in quadrature_rule(rule, 1))
    diff = a - b
    point, shift = (b + alpha * diff).detach(), diff.detach().clone()  # z as Captum's IG builds its points
    attr = weight * InputXGradient(lambda x: forward(x - shift + point)).attribute(shift.clone().requires_grad_())
    return attr, ig.compute_convergence_delta(attr, b, a)


def integrate(lm: LanguageModel, prompt: Prompt, clean: torch.Tensor, start: torch.Tensor, layers: Sequence[int],
              steps: int, progress: Callable[[float], None], rule: str = DEFAULT_RULE) -> Integrals:
    """The reference :class:`~kn_core.attribution.result.Engine`: IG of every (baseline path, object token,
    layer), combined as :class:`Integrals`: the paths' mean attribution [k, len(layers), d_ff], each path's
    Σ_i Attr and completeness residual [n_paths, k, len(layers)].

    ``clean`` are the activations at the targets [k, n_layers, d_ff] of the prompt; ``start`` those of the
    baseline paths [n_paths, k, n_layers, d_ff].
    """
    ids = torch.tensor(prompt.input_ids, device=lm.device)[None]
    k, n = prompt.n_object_tokens, start.shape[0]
    attrs = torch.zeros(k, len(layers), clean.shape[-1])
    sums, deltas = torch.zeros(n, k, len(layers)), torch.zeros(n, k, len(layers))
    done, total = 0, n * k * len(layers)
    for i, (position, token) in enumerate(zip(prompt.target_positions, prompt.object_ids)):
        for row, layer in enumerate(layers):
            def forward(z: torch.Tensor, layer=layer, position=position, token=token) -> torch.Tensor:
                with edited(lm, {layer: _replace_at(position, z)}):
                    logits = run(lm, ids.expand(z.shape[0], -1))
                return gold_probs(logits, [position], [token])[:, 0]

            paths = []
            for j in range(n):
                attr, delta = _integrated_gradients(forward, clean[i, layer][None], start[j, i, layer][None], steps,
                                                   rule)
                paths.append(attr[0].detach().cpu())
                sums[j, i, row], deltas[j, i, row] = paths[-1].sum(), delta.detach().cpu()[0]
                done += 1
                progress(done / total)
            attrs[i, row] = torch.stack(paths).mean(dim=0)
    return Integrals(attrs=attrs, path_sums=sums, path_deltas=deltas, engine="reference")
