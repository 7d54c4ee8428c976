"""Fast engine: the same integral as the reference engine, computed without repeating unchanged work.

Replacing the activation at target position t of layer l changes nothing below layer l, and in a causal LM
nothing before t either. So, after one clean pass through the model taken apart by its adapter (per block:
its input, the residual stream after attention, the queries, keys and values):

- a *stream* (target t, layer l) starts from the clean residual stream after layer l's attention at t, adds
  the FFN output of the path points z_j(α) = b_j + α(a − b_j) (the quadrature rule's points below α = 1:
  right Riemann α = 1/m … (m−1)/m, left Riemann α = 0 … (m−1)/m (α = 0, the baseline itself, is a point
  like the others), Gauss–Legendre all m nodes; :mod:`.quadrature`) of every baseline path j
  (the ``masked`` baseline has one per masked prompt: only the activation at t differs between paths, so
  all paths share the clean prefix and their points are just more rows of the same batch), and runs only
  blocks l+1..L-1;
- causal LM: one token per path point, attending to the clean keys and values of positions < t (m
  single-token passes instead of m whole prompts); masked LM: the whole sequence (every position changes
  above l), except that the first block recomputes queries, keys and values of row t only and the top block
  computes the output of row t only;
- the LM head runs on the target row only, in chunks of rows, each chunk's P(o) = softmax[o] and its
  gradient computed at once with a hand-written softmax backward (:class:`HeadProbability`): no
  [rows, vocabulary] tensor is held, whatever the number of path points;
- the weights take no gradients; the work units (layer, path) run as batches of as many as fit in
  ``GROUP_BYTES`` of saved activations (lowest layers first; a layer's paths may span batches, so the
  memory of a batch does not grow with the number of paths), and one backward pass gives every path point
  its gradient;
- α = 1 is the one point that every layer's and every baseline's path shares (z_j(1) = a, the clean
  activation; the right-Riemann rule's last point): its gradients, for all layers at once, come from the
  clean pass itself (one backward pass per target);
- the paths' integrals are combined as their mean (docs/method.md §1) while they are computed, so no
  per-path attribution matrix is ever held; each path's Σ_i Attr and P at its baseline are kept for its
  own completeness residual;
- P at the baseline (α = 0), which the completeness residual needs, takes no backward pass;
- linear layers run on oneDNN's fp32 matmul where torch's default (MKL) is slower (:mod:`.kernels`; the
  clean pass and the baseline that both engines start from run on it too).

Self-checks guard against a piece that does not match the real model: the clean pass must reproduce the
activations the caller recorded through hooks, its P(object) that of a plain forward pass (once per loaded
model), and the P at α = 1 of the lowest and of the two top layers' streams (between them they take every
path through the pieces) that of the clean pass. A model that fails, or whose adapter has no pieces,
is attributed by the reference engine instead, with a warning in the log, and the result records it
(:attr:`~kn_core.attribution.result.Attribution.engine_used` is "reference").
"""
from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import torch
import torch.nn.functional as F

from kn_core.attribution import kernels, quadrature, reference
from kn_core.attribution.quadrature import DEFAULT_RULE
from kn_core.attribution.result import Integrals
from kn_core.data.prompts import Prompt
from kn_core.model.hooks import gold_probs, run

if TYPE_CHECKING:
    from kn_core.model.loading import LanguageModel

log = logging.getLogger(__name__)

GROUP_BYTES = 512 * 2**20  # activations one batch of streams may keep for its backward pass
SHORT = 64  # keys up to which attention runs as plain matmuls (see :func:`attention`)
RTOL = 1e-3  # self-checks: largest deviation from the real model, relative to the largest value
_MATCHING_HEADS: weakref.WeakSet = weakref.WeakSet()  # models whose head piece has matched the model once


@dataclass(frozen=True)
class CleanPass:
    """The prompt through the model's pieces. Per block: its input ``hidden`` [1, T, H] (entry L is the top
    output), the residual stream after attention ``mid`` [1, T, H], its ``queries`` and ``keys_values``
    [1, heads, T, d]; the neuron activations at the targets ``acts`` [k, L, d_ff]; P(object token) at each
    target ``probs`` [k]; and ``grads`` [k, len(layers), d_ff], ∂P(o_i)/∂z at α = 1 for each requested
    layer (z(1) = a whatever the layer: the one path point that every layer shares)."""

    hidden: list[torch.Tensor]
    mid: list[torch.Tensor]
    queries: list[torch.Tensor]
    keys_values: list[tuple[torch.Tensor, torch.Tensor]]
    acts: torch.Tensor
    probs: torch.Tensor
    grads: torch.Tensor


def attention(lm: LanguageModel, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, residual: torch.Tensor,
              causal: bool = False) -> torch.Tensor:
    """Residual stream after the attention sub-block of ``layer``: q [B, heads, S, d] attends to k, v
    [B, kv_heads, S', d] (S = S' when ``causal``); ``residual`` [B, S, H] is the block's input at the query
    rows.

    Up to ``SHORT`` keys, plain matmuls: with prompts this short the fused kernel's per-head overhead
    dominates (measured 1.8x slower, forward and backward, on [120, 12, 14, 64] on 2 cores); beyond, the
    fused kernel, which does not hold the [S, S'] weights of every head.
    """
    scale = lm.adapter.attention_scale(lm.model, layer)
    batch, heads, rows, d = q.shape
    kv_heads, keys = k.shape[1], k.shape[2]
    if keys > SHORT:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale, enable_gqa=heads != kv_heads)
    else:  # the heads that share a key/value head (grouped-query attention) as one matrix of rows
        group = heads // kv_heads
        scores = torch.matmul(q.reshape(batch, kv_heads, group * rows, d), k.transpose(-1, -2)) * scale
        if causal:
            later = torch.ones(rows, keys, dtype=torch.bool, device=q.device).triu(1)
            scores = scores.view(batch, kv_heads, group, rows, keys).masked_fill(later, float("-inf"))
        out = torch.matmul(scores.view(batch, kv_heads, group * rows, keys).softmax(-1), v)
        out = out.view(batch, heads, rows, d)
    return lm.adapter.attention_output(lm.model, layer, out.transpose(1, 2).flatten(2), residual)


def attention_on_prefix(lm: LanguageModel, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        prefix: tuple[torch.Tensor, torch.Tensor], residual: torch.Tensor) -> torch.Tensor:
    """As :func:`attention` for single new rows (q [B, heads, 1, d], k, v [B, kv_heads, 1, d]) that attend
    to a clean prefix shared by all of them ([1, kv_heads, P, d] each) and to themselves, without copying
    the prefix for every row."""
    rows, kv_heads, d = len(q), k.shape[1], q.shape[-1]
    q = q.reshape(rows, kv_heads, -1, d) * lm.adapter.attention_scale(lm.model, layer)  # grouped by kv head
    scores = torch.cat([torch.einsum("rgnd,gpd->rgnp", q, prefix[0][0]),
                        torch.einsum("rgnd,rgd->rgn", q, k[:, :, 0])[..., None]], dim=-1)
    weights = scores.softmax(-1)
    out = torch.einsum("rgnp,gpd->rgnd", weights[..., :-1], prefix[1][0]) + weights[..., -1:] * v
    return lm.adapter.attention_output(lm.model, layer, out.reshape(rows, 1, -1), residual)


def clean_pass(lm: LanguageModel, prompt: Prompt, layers: list[int]) -> CleanPass:
    """Run the prompt through the adapter's pieces, keeping what the streams start from, P(object) and its
    gradients at α = 1: a zero vector is added to the activations at the targets of each layer of ``layers``
    to take them by (one backward pass per target)."""
    adapter, model = lm.adapter, lm.model
    input_ids = torch.tensor(prompt.input_ids, device=lm.device)[None]
    targets, k = list(prompt.target_positions), prompt.n_object_tokens
    positions = torch.arange(input_ids.shape[1], device=lm.device)
    hidden, mids, queries, keys_values, acts = [adapter.embed(model, input_ids)], [], [], [], []
    dtype = hidden[0].dtype
    at_targets = torch.zeros(1, len(positions), k, dtype=dtype, device=lm.device)
    at_targets[0, targets, torch.arange(k)] = 1
    shifts = torch.zeros(k, len(layers), lm.d_ff, dtype=dtype, device=lm.device, requires_grad=True)
    with torch.enable_grad():
        h = hidden[0]
        for layer in range(lm.n_layers):
            q, (keys, values) = (adapter.queries(model, layer, h, positions),
                                 adapter.keys_values(model, layer, h, positions))
            mid = attention(lm, layer, q, keys, values, h, causal=lm.kind == "causal")
            act = adapter.neurons(model, layer, mid)
            acts.append(act[0, targets].detach().float())
            if layer in layers:
                act = act + at_targets @ shifts[:, layers.index(layer)]
            h = adapter.ffn_output(model, layer, act, mid)
            hidden.append(h.detach())
            mids.append(mid.detach())
            queries.append(q.detach())
            keys_values.append((keys.detach(), values.detach()))
        probs = adapter.head(model, h[0, targets]).float().softmax(-1)[torch.arange(k), list(prompt.object_ids)]
        grads = torch.stack([torch.autograd.grad(probs[i], shifts, retain_graph=i < k - 1)[0][i] for i in range(k)])
    return CleanPass(hidden, mids, queries, keys_values, torch.stack(acts, dim=1), probs.detach().cpu(),
                     grads.float())


def _close(value: torch.Tensor, expected: torch.Tensor) -> bool:
    scale = float(expected.abs().max())
    return float((value - expected).abs().max()) <= RTOL * scale + 1e-12


def _stream_bytes(lm: LanguageModel, layer: int, rows: int, steps: int) -> int:
    """Rough size of what a stream of ``steps`` path points keeps for its backward pass: per block and row a
    few hidden-sized and d_ff-sized tensors (the head keeps one hidden-sized row: :class:`HeadProbability`)."""
    per_row = 4 * lm.config.hidden_size + 3 * lm.d_ff
    blocks = lm.n_layers - 1 - layer
    return 4 * steps * (rows * blocks * per_row + lm.config.hidden_size)


def groups(lm: LanguageModel, layers, rows: int, steps: int, paths: int = 1) -> list[dict[int, range]]:
    """Split the work units (layer, path) — ``layers`` ascending, then the ``paths`` baseline paths, each unit
    ``steps`` path points of ``rows`` rows — into batches of at most ``GROUP_BYTES`` each (a unit larger than
    that runs alone). A batch maps each of its layers to the range of paths it holds."""
    out: list[dict[int, range]] = []
    used = 0
    for layer in sorted(layers):
        size = _stream_bytes(lm, layer, rows, steps)
        for path in range(paths):
            if out and used + size <= GROUP_BYTES:
                held = out[-1].get(layer)
                out[-1][layer] = range(path, path + 1) if held is None else range(held.start, path + 1)
                used += size
            else:
                out.append({layer: range(path, path + 1)})
                used = size
    return out


HEAD_BYTES = 64 * 2**20  # logits (and their softmax) of one chunk of rows through the LM head


class HeadProbability(torch.autograd.Function):
    """P(token) = softmax(head(x))[token] for hidden rows x [rows, H], through the LM head in chunks of rows:
    a chunk's logits [chunk, vocab] live only while its P and ∂P/∂x are computed, in the forward pass, so no
    [rows, vocab] tensor is ever held (Gemma 3's vocabulary is 262k tokens: 1 MB per row). ∂P/∂logits =
    P · (e_token − p) is applied by hand (autograd's own softmax backward would fill two more [chunk, vocab]
    tensors); backward only scales the saved ∂P/∂x [rows, H]. Backward runs once only."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor], token: int,
                vocab: int) -> torch.Tensor:
        chunk = max(1, HEAD_BYTES // (8 * vocab))
        probs, grads = [], []
        for part in x.detach().split(chunk):
            with torch.enable_grad():
                part = part.requires_grad_(True)
                logits = head(part)
                p = logits.detach().float().softmax(-1)
                gold = p[:, token].clone()
                d_logits = p.mul_(-gold[:, None])
                d_logits[:, token] += gold
                grads.append(torch.autograd.grad(logits, part, d_logits.to(logits.dtype))[0])
            probs.append(gold)
        ctx.save_for_backward(torch.cat(grads))
        return torch.cat(probs)

    @staticmethod
    def backward(ctx, *grad_outputs: torch.Tensor):
        (grad,) = grad_outputs  # forward returns one tensor
        (d_x,) = ctx.saved_tensors
        return (grad[:, None] * d_x).to(d_x.dtype), None, None, None


def _splice(clean: torch.Tensor, rows: torch.Tensor, at: int, dim: int) -> torch.Tensor:
    """``clean`` (batch 1) expanded to the batch of ``rows``, with index ``at`` of dimension ``dim`` replaced
    by ``rows``."""
    clean = clean.expand(len(rows), *clean.shape[1:])
    return torch.cat([clean.narrow(dim, 0, at), rows, clean.narrow(dim, at + 1, clean.shape[dim] - at - 1)], dim=dim)


class Streams:
    """Batches of streams for one target position ``target`` and its gold token ``token``.

    A stream's state is the hidden state entering a block: [rows, 1, H] (the target row: causal LMs, or a
    masked LM before its first block and after the top one) or [rows, T, H] (masked LMs in between).
    """

    def __init__(self, lm: LanguageModel, state: CleanPass, target: int, token: int):
        self.lm, self.state, self.target, self.token = lm, state, target, token
        self.causal = lm.kind == "causal"
        self.dtype = state.hidden[0].dtype
        self.at_target = torch.tensor([target], device=lm.device)
        self.everywhere = torch.arange(state.hidden[0].shape[1], device=lm.device)

    def start(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """Target row of block ``layer``'s output with the target's activations set to each row of ``z``."""
        t = self.target
        return self.lm.adapter.ffn_output(self.lm.model, layer, z.to(self.dtype)[:, None],
                                          self.state.mid[layer][:, t:t + 1])

    def attend_row(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Attention of block ``layer`` where only the target row differs from the clean pass (``x`` [rows,
        1, H]): the row's queries, keys and values are new, the others come from the clean pass. Output:
        the target row (causal LM, or the top block) or every row (masked LM)."""
        adapter, model, t = self.lm.adapter, self.lm.model, self.target
        q = adapter.queries(model, layer, x, self.at_target)
        k, v = adapter.keys_values(model, layer, x, self.at_target)
        clean_k, clean_v = self.state.keys_values[layer]
        if self.causal:  # positions after t do not matter: attend to the clean prefix and to itself
            return attention_on_prefix(self.lm, layer, q, k, v, (clean_k[:, :, :t], clean_v[:, :, :t]), x)
        k, v = _splice(clean_k, k, t, 2), _splice(clean_v, v, t, 2)
        if layer == self.lm.n_layers - 1:
            return attention(self.lm, layer, q, k, v, x)
        return attention(self.lm, layer, _splice(self.state.queries[layer], q, t, 2), k, v,
                         _splice(self.state.hidden[layer], x, t, 1))

    def attend_all(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Attention of block ``layer`` of a masked LM on whole sequences ``x`` [rows, T, H]; the top block
        computes the target row only."""
        adapter, model, t = self.lm.adapter, self.lm.model, self.target
        k, v = adapter.keys_values(model, layer, x, self.everywhere)
        if layer == self.lm.n_layers - 1:
            x = x[:, t:t + 1]
            return attention(self.lm, layer, adapter.queries(model, layer, x, self.at_target), k, v, x)
        return attention(self.lm, layer, adapter.queries(model, layer, x, self.everywhere), k, v, x)

    def block(self, layer: int, running: torch.Tensor | None, joining: torch.Tensor | None) -> torch.Tensor:
        """Block ``layer`` on the running streams' states and on the target rows of streams that start here;
        the FFN runs on both in one batch."""
        mids = []
        if running is not None:
            mids.append(self.attend_row(layer, running) if running.shape[1] == 1 else self.attend_all(layer, running))
        if joining is not None:
            mids.append(self.attend_row(layer, joining))
        mid = torch.cat(mids) if len(mids) > 1 else mids[0]
        adapter, model = self.lm.adapter, self.lm.model
        return adapter.ffn_output(model, layer, adapter.neurons(model, layer, mid), mid)

    def run(self, points: dict[int, torch.Tensor]) -> torch.Tensor:
        """P(token) at the path points ``points`` {layer: z [rows, d_ff]}, every layer's stream in one batch,
        each joining above its layer: [Σ rows], by ascending layer, then in the order of the rows."""
        n_layers, x = self.lm.n_layers, None
        for layer in range(min(points) + 1, n_layers):
            joining = self.start(layer - 1, points[layer - 1]) if layer - 1 in points else None
            x = self.block(layer, x, joining)
        if n_layers - 1 in points:  # the top layer's stream: straight to the head
            top = self.start(n_layers - 1, points[n_layers - 1])
            x = top if x is None else torch.cat([x, top])
        assert x is not None  # points is not empty: its lowest layer's stream joined a block or the head
        head = lambda rows: self.lm.adapter.head(self.lm.model, rows)  # noqa: E731
        try:
            return HeadProbability.apply(x[:, 0], head, self.token, self.lm.config.vocab_size)
        except RuntimeError as exc:  # autograd.grad inside a forward pass is refused under some torch modes
            if "currently running autograd.grad" not in str(exc):  # (e.g. FlopCounterMode's module hooks)
                raise
            log.debug("fast engine: the LM head's gradient by plain autograd (%s)", exc)
            return head(x[:, 0]).float().softmax(-1)[:, self.token]


def _ig(streams: Streams, a: torch.Tensor, b: torch.Tensor, batch: dict[int, range], alphas: torch.Tensor,
        weights: torch.Tensor, with_start: bool) -> dict[int, tuple[torch.Tensor, torch.Tensor | None]]:
    """For each layer of ``batch`` and each of its baseline paths j (``b`` [n_paths, n_layers, d_ff]): the
    weighted sum Σ_k w_k ∂P/∂z at the path points z_j(α_k) (``alphas``, ``weights`` [n]: the rule's points
    other than α = 1, which comes from the clean pass), one target: {layer: ([paths, d_ff], P at α = 0
    [paths] when ``with_start`` (a point riding along in the batch, outside the loss), else None)}."""
    if with_start:
        alphas = torch.cat([alphas.new_zeros(1), alphas])
    alphas, n_points, n = alphas[:, None], len(alphas), len(weights)
    points = {}
    batch = dict(sorted(batch.items()))  # the order of Streams.run's output
    for layer, paths in batch.items():
        start = b[paths.start:paths.stop, layer][:, None]  # [paths, 1, d_ff]
        points[layer] = (start + alphas * (a[layer] - start)).flatten(0, 1).requires_grad_(True)
    with torch.enable_grad():
        probs = streams.run(points).view(-1, n_points)  # [Σ paths, points], by layer, then path
        grads = torch.autograd.grad((probs[:, -n:] * weights).sum(), list(points.values()))
    out, row = {}, 0
    for (layer, paths), grad in zip(batch.items(), grads):
        sums = grad.view(len(paths), n_points, -1)[:, -n:].sum(dim=1)
        out[layer] = (sums, probs.detach()[row:row + len(paths), 0] if with_start else None)
        row += len(paths)
    return out


def _fallback(lm: LanguageModel, why: str, *args) -> Integrals:
    """The reference engine's integrals (which say ``engine="reference"``, so the result records the fallback)."""
    log.warning("fast engine: %s for %s; using the reference engine", why, lm.name)
    return reference.integrate(lm, *args)


def _head_matches(lm: LanguageModel, ids: torch.Tensor, prompt: Prompt, probs: torch.Tensor) -> bool:
    """Whether the pieces' P(object) equals the model's own; a plain forward pass once per loaded model."""
    if lm.model not in _MATCHING_HEADS:
        expected = gold_probs(run(lm, ids), prompt.target_positions, prompt.object_ids)[0].cpu()
        if not _close(probs, expected):
            return False
        _MATCHING_HEADS.add(lm.model)
    return True


class _PiecesDiffer(Exception):
    """The adapter's pieces do not reproduce the model (a self-check failed): use the reference engine."""


def integrate(lm: LanguageModel, prompt: Prompt, clean: torch.Tensor, start: torch.Tensor, layers: Sequence[int],
              steps: int, progress: Callable[[float], None], rule: str = DEFAULT_RULE) -> Integrals:
    """The fast :class:`~kn_core.attribution.result.Engine` (the same contract as
    :func:`kn_core.attribution.reference.integrate`); linear layers run on the kernel of
    :func:`kernels.matmuls` (``$KN_EXPLORER_MATMUL``). Its integrals name the engine that computed them:
    "fast", or "reference" where a self-check failed and the reference engine ran instead."""
    args = (prompt, clean, start, layers, steps, progress, rule)
    issue = lm.adapter.fast_path_issue(lm.model)
    if issue is not None:
        return _fallback(lm, issue, *args)
    try:
        with kernels.matmuls(model=lm.model):
            return _integrate(lm, *args)
    except _PiecesDiffer as why:
        return _fallback(lm, str(why), *args)


def _integrate(lm: LanguageModel, prompt: Prompt, clean: torch.Tensor, start: torch.Tensor, layers: Sequence[int],
               steps: int, progress: Callable[[float], None], rule: str) -> Integrals:
    layers = list(layers)
    n_paths = start.shape[0]
    # the rule's points below α = 1 are computed; α = 1 (the right-Riemann rule's last point) is the clean pass
    alphas, weights = (torch.tensor(x, dtype=clean.dtype, device=clean.device) for x in quadrature.rule(rule, steps))
    at_end = float(weights[-1]) if float(alphas[-1]) == 1.0 else 0.0
    inner = alphas < 1.0
    alphas, weights = alphas[inner], weights[inner]
    with torch.no_grad():
        state = clean_pass(lm, prompt, layers)
        ids = torch.tensor(prompt.input_ids, device=lm.device)[None]
        if not (_close(state.acts, clean) and _head_matches(lm, ids, prompt, state.probs)):
            raise _PiecesDiffer("the pieces do not reproduce the model")
    # P at the baselines (α = 0) needs no gradient. Single-token streams (causal LMs) cost little more than
    # reading the weights, so α = 0 rides along in their batch; whole sequences get passes without gradients,
    # the first of which also runs the self-check: α = 1 for the lowest and the two top layers (every path
    # through the pieces between them), whose P must be the clean pass's.
    single = lm.kind == "causal"
    rows = 1 if single else len(prompt.input_ids)
    points = len(alphas) + single  # per layer and path: the rule's points below 1, and α = 0 riding along
    batches = groups(lm, layers, rows, points, n_paths) if len(alphas) else []
    plain = [] if single and batches else groups(lm, layers, rows, 1, n_paths)  # α = 0 without gradients
    checked = sorted({layers[0], *layers[-2:]})
    k, d_ff = prompt.n_object_tokens, clean.shape[-1]
    attrs = torch.zeros(k, len(layers), d_ff)
    sums = torch.zeros(n_paths, k, len(layers))
    p_start, p_checked = torch.zeros(n_paths, k, len(layers)), torch.zeros(k, len(checked))
    done, total = 0, k * (max(len(plain), 1) + len(batches))
    for i, (target, token) in enumerate(zip(prompt.target_positions, prompt.object_ids)):
        streams = Streams(lm, state, target, token)
        with torch.no_grad():
            for index, batch in enumerate(plain or [{}]):
                checks = checked if index == 0 else []
                order = sorted([(layer, j) for layer, paths in batch.items() for j in paths]
                               + [(layer, None) for layer in checks], key=lambda row: row[0])  # Streams.run's order
                at: dict[int, list[torch.Tensor]] = {}
                for layer, j in order:
                    at.setdefault(layer, []).append(clean[i, layer] if j is None else start[j, i, layer])
                probs = streams.run({layer: torch.stack(z) for layer, z in at.items()}).cpu()
                for (layer, j), p in zip(order, probs):
                    if j is None:
                        p_checked[i, checked.index(layer)] = p
                    else:
                        p_start[j, i, layers.index(layer)] = p
                done += 1
                progress(done / total)
        # Attr = mean_j (a − b_j) · G_j, G_j = Σ_k w_k ∂P/∂z at z_j(α_k); α = 1 (the clean pass) is every path's
        diffs = clean[i, layers] - start[:, i, layers]  # [n_paths, len(layers), d_ff]
        at_clean = state.grads[i] * at_end
        combined = diffs.mean(dim=0) * at_clean
        path_sums = (diffs * at_clean).sum(dim=-1)  # [n_paths, len(layers)]
        for batch in batches:
            found = _ig(streams, clean[i], start[:, i], batch, alphas, weights, with_start=single)
            for layer, (grad_sums, p0) in found.items():
                row = layers.index(layer)
                part = diffs[batch[layer].start:batch[layer].stop, row] * grad_sums  # [paths, d_ff]
                combined[row] += part.sum(dim=0) / n_paths
                path_sums[batch[layer].start:batch[layer].stop, row] += part.sum(dim=-1)
                if single:
                    assert p0 is not None  # _ig gives P at the start points when with_start
                    p_start[batch[layer].start:batch[layer].stop, i, row] = p0.cpu()
            done += 1
            progress(done / total)
        attrs[i] = combined.cpu()
        sums[:, i] = path_sums.cpu()
    p_end = state.probs[:, None]
    if not _close(p_checked, p_end.expand_as(p_checked)):
        raise _PiecesDiffer("the streams do not reproduce the clean pass")
    return Integrals(attrs=attrs, path_sums=sums, path_deltas=sums - (p_end - p_start), engine="fast")
