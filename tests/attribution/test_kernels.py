"""The matmul kernels: oneDNN's linear equals torch's, forward and backward; the mode routes only what it can
take, leaves everything else to torch, nests, is popped on the way out; the fast engine equals the reference on
either kernel and really runs on the one chosen; auto's choice; the reference's integral runs on torch's kernel."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kn_core.attribution import AttributionConfig, attribute, kernels
from kn_core.errors import InputError

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


@pytest.fixture
def routed(monkeypatch) -> list[tuple]:
    """The (input, weight) shapes of every call that the mode sends to oneDNN."""
    kernels.onednn_works()  # its one-time self-check calls the kernel too: not part of what a test routes
    calls: list[tuple] = []
    apply = kernels.OneDNNLinear.apply

    def spy(x, weight, bias):
        calls.append((tuple(x.shape), tuple(weight.shape)))
        return apply(x, weight, bias)
    monkeypatch.setattr(kernels.OneDNNLinear, "apply", spy)
    return calls


def test_onednn_works_here_whatever_the_grad_mode():
    kernels.onednn_works.cache_clear()
    try:
        with torch.no_grad():  # the one-time check must not fail (and stick) for a caller without gradients
            assert kernels.onednn_works()
        with torch.inference_mode():
            assert kernels.resolve("onednn") == "onednn"
    finally:
        kernels.onednn_works.cache_clear()


def test_a_second_derivative_is_refused_not_wrong():
    x = torch.randn(3, 37, requires_grad=True)
    weight = torch.randn(11, 37)
    (grad,) = torch.autograd.grad(kernels.OneDNNLinear.apply(x, weight, None).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        grad.sum().backward()


@pytest.mark.parametrize("shape", [(5, 37), (3, 4, 37), (1, 37)])
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_onednn_linear_equals_torch(shape, transposed, with_bias):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=generator, dtype=torch.float64).float().requires_grad_(True)
    weight = torch.randn(37, 23, generator=generator).t() if transposed else torch.randn(23, 37, generator=generator)
    bias = torch.randn(23, generator=generator) if with_bias else None
    cotangent = torch.randn(*shape[:-1], 23, generator=generator)
    got = kernels.OneDNNLinear.apply(x, weight, bias)
    (got_grad,) = torch.autograd.grad(got, x, cotangent)
    expected = F.linear(x.double(), weight.double(), None if bias is None else bias.double())
    (expected_grad,) = torch.autograd.grad(expected, x, cotangent.double())
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_grad.double(), expected_grad.double(), rtol=1e-5, atol=1e-5)


def test_mode_routes_linear_layers_and_conv1d_addmm(routed):
    torch.manual_seed(0)
    layer = torch.nn.Linear(37, 11).requires_grad_(False)
    conv1d_weight, bias = torch.randn(37, 11), torch.randn(11)  # GPT-2's Conv1D: x @ W + b, W [in, out]
    x = torch.randn(2, 3, 37)
    with kernels.matmuls("onednn") as name:
        assert name == "onednn"
        out_linear = layer(x)
        out_addmm = torch.addmm(bias, x[0], conv1d_weight)
        out_keywords = F.linear(input=x[1], weight=layer.weight)
    assert routed == [((2, 3, 37), (11, 37)), ((3, 37), (11, 37)), ((3, 37), (11, 37))]
    torch.testing.assert_close(out_keywords, x[1] @ layer.weight.t())
    torch.testing.assert_close(out_linear, F.linear(x, layer.weight, layer.bias))
    torch.testing.assert_close(out_addmm, bias + x[0] @ conv1d_weight)


def test_mode_leaves_what_it_cannot_take_to_torch(routed):
    torch.manual_seed(0)
    x, bias = torch.randn(4, 37), torch.randn(11)
    sliced = torch.randn(37, 33)[:, 11:22]  # a slice of a fused weight (GPT-2's q|k|v): neither layout contiguous
    trained = torch.randn(11, 37, requires_grad=True)
    with kernels.matmuls("onednn"):
        out_sliced = torch.addmm(bias, x, sliced)
        out_trained = F.linear(x, trained, bias)
        (weight_grad,) = torch.autograd.grad(out_trained.sum(), trained)
        out_double = F.linear(x.double(), torch.randn(11, 37, dtype=torch.float64))
        out_scaled = torch.addmm(bias, x, sliced, beta=0.5)
        sparse = torch.eye(37)[:11].to_sparse()
        out_sparse = F.linear(x, sparse)
        strided_bias = torch.randn(66)[::6]  # not contiguous
        out_strided_bias = F.linear(x, trained.detach(), strided_bias)
        out_broadcast_bias = F.linear(x, trained.detach(), bias[:1])  # one value for every output
    assert routed == []
    torch.testing.assert_close(out_sparse, x[:, :11])
    torch.testing.assert_close(out_strided_bias, x @ trained.detach().t() + strided_bias)
    torch.testing.assert_close(out_broadcast_bias, x @ trained.detach().t() + bias[:1])
    torch.testing.assert_close(out_sliced, bias + x @ sliced)
    torch.testing.assert_close(weight_grad, x.sum(0).expand(11, 37))
    assert out_double.dtype == torch.float64
    torch.testing.assert_close(out_scaled, 0.5 * bias + x @ sliced)


def test_torch_kernel_routes_nothing_and_the_mode_is_popped_on_errors(routed):
    layer = torch.nn.Linear(37, 11).requires_grad_(False)
    with kernels.matmuls("torch") as name:
        assert name == "torch"
        layer(torch.randn(2, 37))
    with kernels.matmuls("onednn"):
        with kernels.matmuls("torch"):  # nested: the innermost block decides
            layer(torch.randn(2, 37))
        assert routed == []
        layer(torch.randn(3, 37))
    assert routed == [((3, 37), (11, 37))]
    routed.clear()
    with pytest.raises(RuntimeError, match="boom"), kernels.matmuls("onednn"):
        raise RuntimeError("boom")
    assert torch._C._len_torch_function_stack() == 0  # the mode is gone, not just idle
    layer(torch.randn(2, 37))
    assert routed == []


def test_unknown_kernel_is_refused_with_the_choices(monkeypatch):
    with pytest.raises(InputError, match="auto, onednn, torch"), kernels.matmuls("blas"):
        pass
    monkeypatch.setenv(kernels.VARIABLE, "mkl")
    with pytest.raises(InputError, match="KN_EXPLORER_MATMUL='mkl'.*auto, onednn, torch"):
        kernels.chosen()
    monkeypatch.setenv(kernels.VARIABLE, " Torch ")
    assert kernels.chosen() == "torch"
    monkeypatch.delenv(kernels.VARIABLE)
    assert kernels.chosen() == "auto"


def test_auto_picks_onednn_for_large_models_only(bert, monkeypatch):
    """Below AUTO_MIN_PARAMETERS the mode's overhead outweighs the faster products (bench/bench_kernels.py)."""
    parameters = sum(p.numel() for p in bert.model.parameters())
    assert parameters < kernels.AUTO_MIN_PARAMETERS
    assert kernels.resolve("auto", bert.model) == "torch" and kernels.resolve("auto") == "torch"
    monkeypatch.setattr(kernels, "AUTO_MIN_PARAMETERS", parameters)
    assert kernels.resolve("auto", bert.model) == "onednn"
    assert kernels.resolve("torch", bert.model) == "torch" and kernels.resolve("onednn") == "onednn"
    monkeypatch.setattr(kernels, "AUTO_MIN_PARAMETERS", 0)
    assert kernels.resolve("auto") == "torch"  # no model: nothing to decide by
    assert kernels.resolve("auto", torch.nn.Linear(8, 8, device="meta")) == "torch"  # oneDNN is for CPUs


@pytest.mark.parametrize("kernel", ["onednn", "torch"])
def test_fast_engine_equals_reference_on_either_kernel(lm, kernel, routed, monkeypatch):
    monkeypatch.setenv(kernels.VARIABLE, kernel)
    prompt = lm.prompt("The capital of [X] is [Y].", "Tanzania", "Dar es Salaam")
    fast = attribute(lm, prompt, AttributionConfig(engine="fast", steps=6))
    assert (len(routed) > 0) == (kernel == "onednn")  # the chosen kernel really runs
    routed.clear()
    ref = attribute(lm, prompt, AttributionConfig(engine="reference", steps=6))
    scale = abs(ref.scores).max()
    assert abs(fast.scores - ref.scores).max() <= 1e-4 * scale
    assert abs(fast.baseline_probs - ref.baseline_probs).max() <= 1e-4 * abs(ref.baseline_probs).max()


def test_every_engine_starts_from_passes_on_the_chosen_kernel_and_the_reference_integrates_on_torch(
        bert, routed, monkeypatch):
    from kn_core.attribution import _clean_pass
    from kn_core.attribution.baselines import baseline
    prompt = bert.prompt("The capital of [X] is [Y].", "Tanzania", "Paris")
    with kernels.matmuls("onednn"):
        _clean_pass(bert, torch.tensor(prompt.input_ids)[None], prompt)
        baseline(bert, prompt, "masked")
    shared = len(routed)
    routed.clear()
    monkeypatch.setenv(kernels.VARIABLE, "onednn")
    attribute(bert, prompt, AttributionConfig(engine="reference", steps=4))
    assert shared > 0 and len(routed) == shared


def test_kernel_bench_quick_runs():
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(repo / "bench" / "bench_kernels.py"), "--quick"], cwd=repo,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith(("| bert", "| gpt2"))]
    assert len(rows) == 4 and all(row.rstrip(" |").endswith("torch") for row in rows)  # small: auto keeps torch's
