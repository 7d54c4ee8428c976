"""Data-set summaries: relations, facts per language, paired facts and the problems met while reading."""
from __future__ import annotations

import os

from kn_core.data.bundled import scan_bundled
from kn_core.data.datasets import dataset_layout
from kn_core.data.mlama import import_mlama


def summarize(path: str | os.PathLike) -> dict:
    """Overview of a data set (``"bundled"``, a bundled-format folder or an mLAMA-layout folder):
    ``relations`` (sorted ids), ``facts`` ({lang: valid facts in that language}), ``paired`` (facts present
    in every language) and ``problems`` ([{file, line, reason}])."""
    layout, root = dataset_layout(path)
    if layout == "mlama" and root is not None:
        fact_set, per_language = import_mlama(root, None)
    else:
        fact_set = scan_bundled(root)
        per_language = {lang: sum(lang in fact.labels for fact in fact_set.facts) for lang in fact_set.languages}
    paired = sum(all(lang in fact.labels for lang in fact_set.languages) for fact in fact_set.facts)
    return {"relations": sorted(fact_set.relations), "facts": per_language, "paired": paired,
            "problems": [problem.to_json() for problem in fact_set.problems]}
