"""The data room: fact records, prompts, the bundled fact set and the mLAMA importer.

Imports only :mod:`kn_core.errors`, :mod:`kn_core.defaults` and :mod:`kn_core.types`: no model, no torch.
"""
from kn_core.data.bundled import BUNDLED_DIR, BUNDLED_NAME, load_bundled, scan_bundled
from kn_core.data.datasets import dataset_layout, load_dataset
from kn_core.data.mlama import load_mlama
from kn_core.data.records import Fact, FactSet, FrozenMapping, Problem, Relation, Template, object_slot_is_last, slugify
from kn_core.data.summary import summarize

__all__ = ["BUNDLED_DIR", "BUNDLED_NAME", "Fact", "FactSet", "FrozenMapping", "Problem", "Relation", "Template",
           "dataset_layout", "load_bundled", "load_dataset", "load_mlama", "object_slot_is_last", "scan_bundled",
           "slugify", "summarize"]
