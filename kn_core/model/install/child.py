"""Conversion of the GGUF into a plain safetensors model, in a child interpreter.

The child (``python -m kn_core.model.install convert GGUF OUT --probe TEXT --threads N --parent PID``) sees the
packages pip has just installed and hands its memory back when it ends; it dies with the installer. It talks to
the installer in lines on stdout: ``@@progress F MESSAGE``, then ``@@result JSON`` or ``@@error MESSAGE``."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from kn_core.model.install import packages
from kn_core.model.install.base import PHASES, InstallError, InstallProgress
from kn_core.model.registry import CONVERTER_PACKAGES, ModelSpec

MAX_PROB_DIFF = 1e-4  # the saved folder must predict what the GGUF model predicts, to this tolerance
PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # the folder holding kn_core (for the child interpreter)

def convert(gguf: Path, out: Path, probe: str, report: InstallProgress) -> dict:
    """De-quantize ``gguf`` into a plain safetensors model + tokenizer in ``out``; check the saved folder against
    the GGUF model on ``probe``. Needs transformers with gguf and accelerate. Returns facts for kn_model.json."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    report(0.0, "reading the tokenizer from the GGUF")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    report(0.15, "de-quantizing the weights to fp32 (the slowest step)")
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    quantized.eval()
    report(0.6, "copying the weights into a plain model")
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # save_pretrained refuses GGUF-loaded models
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantized.state_dict(), strict=True)
    plain.tie_weights()
    report(0.7, "saving safetensors and the tokenizer")
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    parameters = sum(p.numel() for p in plain.parameters())
    del plain
    report(0.85, "reloading the saved folder and checking it against the GGUF model")
    reloaded = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True, trust_remote_code=False).eval()
    retokenizer = AutoTokenizer.from_pretrained(out, trust_remote_code=False)
    ids = tokenizer(probe, return_tensors="pt").input_ids
    if not torch.equal(ids, retokenizer(probe, return_tensors="pt").input_ids):
        raise RuntimeError(f"the saved tokenizer splits {probe!r} differently from the GGUF's")
    with torch.inference_mode():
        expected = quantized(ids).logits[0, -1].float().softmax(-1)
        actual = reloaded(ids).logits[0, -1].float().softmax(-1)
    diff = float((expected - actual).abs().max())
    if not diff <= MAX_PROB_DIFF:
        raise RuntimeError(f"the saved model predicts differently from the GGUF model (probability difference "
                           f"{diff:.2e} > {MAX_PROB_DIFF})")
    top = actual.topk(5)
    keys = ("model_type", "num_hidden_layers", "hidden_size", "intermediate_size", "vocab_size")
    report(1.0, "converted")
    return {"parameters": parameters, "config": {k: getattr(reloaded.config, k, None) for k in keys},
            "probe": {"prompt": probe, "max_prob_diff": diff,
                      "top5": [[retokenizer.decode([int(i)]), round(float(p), 4)]
                               for p, i in zip(top.values, top.indices)]}}


def _die_with_parent(parent: int) -> None:
    """Linux: be killed when the installer dies (a killed install must not leave a converter running)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the next progress line's EPIPE ends it
            pass
    if os.getppid() != parent:  # the installer died before prctl took effect
        os._exit(1)


def _child_main(argv: list[str]) -> int:
    """``python -m kn_core.model.install convert GGUF OUT --probe TEXT --threads N``: protocol lines on stdout
    (``@@progress F MESSAGE``, ``@@result JSON``, ``@@error MESSAGE``); transformers' bars go to stderr."""
    parser = argparse.ArgumentParser(prog="python -m kn_core.model.install")
    parser.add_argument("action", choices=["convert"])
    parser.add_argument("gguf", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--probe", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parent", type=int, default=None, help="die when this process (the installer) dies")
    args = parser.parse_args(argv)
    if args.parent is not None:
        _die_with_parent(args.parent)
    try:
        import torch
        torch.set_num_threads(max(1, args.threads))
        result = convert(args.gguf, args.out, args.probe,
                         lambda f, message: print(f"@@progress {f:.4f} {message}", flush=True))
        versions = []
        for dist in ("transformers", "torch", "gguf", "accelerate"):
            versions.append(f"{dist} {packages._installed_version(dist)}")
        result["converter"] = {"versions": versions}
        print("@@result " + json.dumps(result), flush=True)
        return 0
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which cleans up
        print(f"@@error {type(exc).__name__}: {packages._shorten(str(exc), 600)}", flush=True)
        return 1


def convert_in_child(spec: ModelSpec, gguf: Path, out: Path, threads: int, progress: InstallProgress) -> dict:
    """Run :func:`convert` in a fresh interpreter, relaying its progress; InstallError when it fails."""
    start, end = PHASES["convert"], PHASES["finish"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [sys.executable, "-m", "kn_core.model.install", "convert", str(gguf), str(out), "--probe", spec.probe,
           "--threads", str(max(1, threads)), "--parent", str(os.getpid())]
    progress(start, f"converting {gguf.name} to safetensors ({threads} thread{'s' if threads > 1 else ''})")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", env=env)
    assert proc.stdout is not None  # stdout=PIPE
    result: dict | None = None
    error: str | None = None
    tail: list[str] = []
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("@@progress "):
                _, fraction, message = line.split(" ", 2)
                progress(start + (end - start) * float(fraction), message)
            elif line.startswith("@@result "):
                result = json.loads(line[len("@@result "):])
            elif line.startswith("@@error "):
                error = line[len("@@error "):]
            else:
                tail = (tail + [line])[-5:]
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if rc != 0 or result is None:
        reason = error or packages._shorten(" ".join(tail)) or f"the converter exited with status {rc}"
        if "gguf" in reason.lower() and ("install" in reason.lower() or "No module" in reason):
            reason += f" (the converter needs {', '.join(CONVERTER_PACKAGES)}: pip install -r requirements-models.txt)"
        raise InstallError(f"cannot convert the GGUF of {spec.name}: {reason}; nothing was installed")
    return result
