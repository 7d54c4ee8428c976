"""Writing an experiment's outcome: tidy tables (CSV, and Parquet when pyarrow is installed), PNG figures and
a short Markdown report ``report.md``; plus the plain-text rendering the CLI prints."""
from __future__ import annotations

import importlib.util
import logging
import math
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import pandas as pd

from kn_core.errors import DataError
from kn_core.experiments.common import Outcome, Settings

log = logging.getLogger(__name__)
HAS_PARQUET = importlib.util.find_spec("pyarrow") is not None
DPI = 120


def fmt(value: object) -> str:
    """A cell as text: floats with 3 decimals, tiny or huge ones in scientific notation, NaN as '–'."""
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if value != 0 and not 1e-3 <= abs(value) < 1e5:
            return f"{value:.3e}"
        return f"{value:.3f}"
    return str(value)


def pm(mean: float, sd: float = math.nan, digits: int = 3) -> str:
    """``mean ± sd`` with ``digits`` decimals (scientific for tiny or huge values); just the mean when sd is
    NaN (one seed); '–' when the mean is NaN (nothing to measure)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    mean = float(mean)
    small = mean != 0 and not 10 ** -digits <= abs(mean) < 1e5
    text = f"{mean:.{digits}e}" if small else f"{mean:.{digits}f}"
    if sd is None or math.isnan(float(sd)):
        return text
    return f"{text} ± {float(sd):.{digits}e}" if small else f"{text} ± {float(sd):.{digits}f}"


def mean_sd_cells(summary: pd.DataFrame, keys: Sequence[str], digits: int = 3) -> pd.DataFrame:
    """A summary from :func:`~kn_core.experiments.common.across_seeds` as text: the ``keys`` columns as they are
    and every metric ``c`` (with its ``c_sd``) as one ``mean ± sd`` cell; ``n_seeds`` kept."""
    metrics = [c for c in summary.columns if c not in keys and c != "n_seeds" and not c.endswith("_sd")]
    out = summary[list(keys)].copy()
    for column in metrics:
        sd = summary[f"{column}_sd"] if f"{column}_sd" in summary else pd.Series(math.nan, index=summary.index)
        out[column] = [pm(m, s, digits) for m, s in zip(summary[column], sd)]
    if "n_seeds" in summary:
        out["n_seeds"] = summary["n_seeds"]
    return out


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``frame`` (index dropped)."""
    header = "| " + " | ".join(str(c).replace("|", "\\|") for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(fmt(v).replace("|", "\\|") for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def text_table(frame: pd.DataFrame) -> str:
    """A plain-text table for the terminal."""
    return frame.to_string(index=False, formatters={c: fmt for c in frame.columns})


def write_table(frame: pd.DataFrame, folder: Path, name: str) -> list[Path]:
    """``<name>.csv`` and, when pyarrow is present, ``<name>.parquet``."""
    paths = [folder / f"{name}.csv"]
    frame.to_csv(paths[0], index=False)
    if HAS_PARQUET:
        paths.append(folder / f"{name}.parquet")
        frame.to_parquet(paths[1], index=False)
    return paths


def _relative(path: Path, folder: Path) -> str:
    try:
        return str(Path(path).relative_to(folder))
    except ValueError:
        return str(path)


def _settings_block(settings: Settings) -> str:
    lines = [f"- {key}: {', '.join(map(str, value)) if isinstance(value, tuple) else value}"
             for key, value in asdict(settings).items() if key != "out"]
    return "\n".join(lines)


def render_report(outcome: Outcome, settings: Settings, name: str) -> str:
    """The Markdown text of ``report.md``."""
    written = (f"Written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by "
               f"`python -m kn_core experiment {name}` with the settings below.")
    parts = [f"# {outcome.title}", "", written, "", "## Settings", "", _settings_block(settings), "",
             "## Headline", "", markdown_table(outcome.headline), ""]
    if outcome.caption:
        parts += [outcome.caption, ""]
    for title, table in outcome.shown.items():
        parts += [f"## {title}", "", markdown_table(table), ""]
    if outcome.notes:
        parts += ["## How to read it", "", *[f"{note}\n" for note in outcome.notes]]
    if outcome.figures:
        parts += ["## Figures", "", *[f"![{name}]({name}.png)\n" for name in outcome.figures]]
    parts += ["## Tables", "", *[f"- `{name}.csv`{' / .parquet' if HAS_PARQUET else ''}: {len(t)} rows, columns "
                                 f"{', '.join(map(str, t.columns))}" for name, t in outcome.tables.items()]]
    parts += [f"- `{_relative(p, Path(settings.out))}`" for p in outcome.files]
    return "\n".join(parts) + "\n"


def write(outcome: Outcome, settings: Settings) -> Path:
    """Write tables, figures and ``report.md`` into ``settings.out`` (created); returns the report's path."""
    folder = Path(settings.out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_table(outcome.headline, folder, "headline")
        for name, table in outcome.tables.items():
            write_table(table, folder, name)
        for name, figure in outcome.figures.items():
            figure.savefig(folder / f"{name}.png", dpi=DPI)
        report = folder / "report.md"
        report.write_text(render_report(outcome, settings, outcome.name), encoding="utf-8")
    except OSError as exc:
        raise DataError(str(folder), None, f"cannot write the results: {exc.strerror or exc}") from None
    log.info("wrote %s", report)
    return report
