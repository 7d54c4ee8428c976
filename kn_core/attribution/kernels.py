"""Matrix-product kernels of the fast engine: oneDNN's fp32 matmul where torch's default is slower.

torch's CPU ``linear`` / ``addmm`` call MKL's sgemm. On this workplace's AMD EPYC (AVX-512) MKL reports a
generic code path and ran at 210-230 GFLOP/s on 2 cores, where oneDNN's fp32 matmul, also inside torch
(``torch.ops.mkldnn._linear_pointwise``, its AVX-512 kernel), ran at about twice that, forward and backward.
Both are IEEE fp32 (no bf16/tf32 shortcut): results differ by summation order only. On an AVX2-only host
(no AVX-512; ``torch.backends.cpu.get_cpu_capability()`` says AVX2) both ran at the same 65-70 GFLOP/s, and
the fast engine took 6.3 s vs 5.8 s (BERT-base) and 1.8 s vs 2.0 s (GPT-2) on oneDNN vs torch
(``bench/bench_peers.py``): there the choice gains nothing and costs little.

``matmuls()`` is a scoped context (a ``TorchFunctionMode``: thread-local, popped on the way out) that sends
to oneDNN the ``F.linear`` calls and GPT-2 Conv1D's ``torch.addmm(bias, x, W)`` whose weight is a plain or
transposed contiguous fp32 CPU matrix that takes no gradient. Anything else (sliced weights, on which
oneDNN's generic path was far slower; weights with gradients; other dtypes or devices) goes to torch
unchanged. The kernel is checked against ``F.linear`` once per process (forward and backward, both weight
layouts); if it is missing or disagrees, torch's own runs, with a warning in the log.

An attribution runs its clean pass and its baseline inside it, whatever the engine, so that both engines
integrate from the very same activations a and b (a − b cancels for neurons the baseline barely moves, and
would amplify a difference in rounding there); the fast engine runs its integral inside it too; the
reference engine's integral always runs on torch's kernel (the plain oracle).

Choose with ``$KN_EXPLORER_MATMUL``: ``auto`` (default: oneDNN for models of ``AUTO_MIN_PARAMETERS`` and
more, torch's below, where the mode's overhead outweighs the gain), ``onednn`` or ``torch``.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
from typing import Iterator

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from kn_core.errors import InputError

log = logging.getLogger(__name__)

VARIABLE = "KN_EXPLORER_MATMUL"
MATMULS = ("auto", "onednn", "torch")
# auto: oneDNN from this many model parameters on. Below, the mode's per-call overhead outweighs the faster
# products: `python bench/bench_kernels.py` (one thread) puts the break-even near 2M parameters for masked
# LMs, 2.3-3.5M for causal ones on this machine (1M-parameter models like the demo ones run 7-30 % slower on
# oneDNN; bert-base sized ones about twice as fast).
AUTO_MIN_PARAMETERS = 3_000_000
_ACTIVE: contextvars.ContextVar[str] = contextvars.ContextVar("kn_explorer_matmul", default="torch")


def _onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class OneDNNLinear(torch.autograd.Function):
    """x @ weight.T + bias ([..., in] → [..., out]) by oneDNN, with the input's gradient (grad @ weight) by
    oneDNN too. The weight and bias take no gradient (the caller checks), so only the weight is saved."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(weight)
        return _onednn(x, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable  # a second derivative raises instead of coming out 0
    def backward(ctx, *grad_outputs: torch.Tensor):
        (grad,) = grad_outputs  # forward returns one tensor
        (weight,) = ctx.saved_tensors
        return _onednn(grad.contiguous(), weight.t(), None), None, None


def _eligible(x, weight, bias) -> bool:
    """Whether ``x @ weight.T + bias`` can go to oneDNN as is: plain fp32 CPU tensors, a weight stored plainly
    or transposed, a contiguous bias of exactly one value per output, nothing that takes a gradient but x."""
    tensors = (x, weight) if bias is None else (x, weight, bias)
    if not all(type(t) in (torch.Tensor, torch.nn.Parameter) and t.layout == torch.strided
               and t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors):
        return False  # subclasses, sparse or quantized tensors, other devices or dtypes: torch's own
    return (x.dim() >= 2 and weight.dim() == 2 and (weight.is_contiguous() or weight.t().is_contiguous())
            and not weight.requires_grad
            and (bias is None or (bias.shape == weight.shape[:1] and bias.is_contiguous()
                                  and not bias.requires_grad)))


def _to_onednn(func, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The result of ``func(*args, **kwargs)`` by :class:`OneDNNLinear`, or None when the call is not an
    eligible ``F.linear`` or ``torch.addmm(bias, x, W)``."""
    if func is F.linear:
        bound = {**dict(zip(("input", "weight", "bias"), args)), **kwargs}
        if len(args) <= 3 and set(bound) - {"bias"} == {"input", "weight"}:
            x, weight, bias = bound["input"], bound["weight"], bound.get("bias")
            if _eligible(x, weight, bias):
                return OneDNNLinear.apply(x, weight, bias)
    elif func is torch.addmm and len(args) == 3 and not kwargs:  # beta = alpha = 1: bias + x @ W
        bias, x, weight = args
        if isinstance(weight, torch.Tensor) and weight.dim() == 2 and _eligible(x, weight.t(), bias) and x.dim() == 2:
            return OneDNNLinear.apply(x, weight.t(), bias)
    return None


class OneDNNMatmuls(TorchFunctionMode):
    """Sends eligible linear layers to oneDNN while the innermost :func:`matmuls` block says ``onednn``."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _ACTIVE.get() == "onednn":
            out = _to_onednn(func, args, kwargs)
            if out is not None:
                return out
        return func(*args, **kwargs)


@functools.cache
def onednn_works() -> bool:
    """Whether oneDNN's linear exists here and equals ``F.linear``, forward and backward, for both weight
    layouts and a batched input (checked once per process)."""
    try:
        if not torch.backends.mkldnn.is_available():
            raise RuntimeError("torch was built without oneDNN")
        with torch.inference_mode(False), torch.enable_grad():  # whatever the caller's grad mode
            return _matches_torch()
    except Exception as error:  # noqa: BLE001 — any failure means: use torch's kernel
        log.warning("oneDNN matmul unavailable (%s); using torch's default", error)
        return False


def _matches_torch() -> bool:
    """oneDNN's linear against ``F.linear`` on a small batch; raises when they differ."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 7, generator=generator, requires_grad=True)
    bias = torch.randn(3, generator=generator)
    for weight in (torch.randn(3, 7, generator=generator), torch.randn(7, 3, generator=generator).t()):
        got = OneDNNLinear.apply(x, weight, bias)
        (got_grad,) = torch.autograd.grad(got.square().sum(), x)
        expected = F.linear(x, weight, bias)
        (expected_grad,) = torch.autograd.grad(expected.square().sum(), x)
        if not (torch.allclose(got, expected, rtol=1e-5, atol=1e-5)
                and torch.allclose(got_grad, expected_grad, rtol=1e-5, atol=1e-5)):
            raise RuntimeError("its results differ from F.linear")
    return True


def chosen() -> str:
    """The kernel named by ``$KN_EXPLORER_MATMUL`` (default ``auto``)."""
    name = os.environ.get(VARIABLE, "auto").strip().lower()
    if name not in MATMULS:
        raise InputError("matmul", f"{VARIABLE}={name!r} is not a kernel; choose one of {', '.join(MATMULS)}")
    return name


def resolve(name: str | None = None, model: torch.nn.Module | None = None) -> str:
    """The kernel that ``matmuls(name, model)`` runs: ``name`` (default: :func:`chosen`), with ``auto`` decided
    by ``model`` (oneDNN for a CPU model of ``AUTO_MIN_PARAMETERS`` parameters or more) and oneDNN replaced by
    torch's where it does not work."""
    name = chosen() if name is None else name
    if name not in MATMULS:
        raise InputError("matmul", f"unknown kernel {name!r}; choose one of {', '.join(MATMULS)}")
    if name == "auto":
        parameters = list(model.parameters()) if model is not None else []
        big = bool(parameters) and sum(p.numel() for p in parameters) >= AUTO_MIN_PARAMETERS
        name = "onednn" if big and parameters[0].device.type == "cpu" else "torch"
    return "torch" if name == "onednn" and not onednn_works() else name


@contextlib.contextmanager
def matmuls(name: str | None = None, model: torch.nn.Module | None = None) -> Iterator[str]:
    """Run the block on the kernel :func:`resolve` gives; yields it. Blocks nest: the innermost one decides
    (``matmuls("torch")`` inside a oneDNN block runs torch's)."""
    name = resolve(name, model)
    token = _ACTIVE.set(name)  # what a mode entered further out obeys, too
    try:
        if name == "onednn":
            with OneDNNMatmuls():  # popped on the way out, exceptions included
                yield name
        else:
            yield name
    finally:
        _ACTIVE.reset(token)
