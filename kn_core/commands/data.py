"""``python -m kn_core data``: inspect fact sets (the bundled set, a bundled-format or an mLAMA-layout folder).

- ``data summary PATH [--json OUT]``: relations, valid facts per language, paired facts and every problem.
- ``data list [PATH]``: relations with their names, fact counts and templates per language.
"""
from __future__ import annotations

import logging
from pathlib import Path

from kn_core.commands import outputs
from kn_core.data import BUNDLED_NAME, FactSet, load_dataset, summarize

log = logging.getLogger(__name__)
SHOWN_PROBLEMS = 20


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="inspect fact sets (bundled or mLAMA layout)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    summary = actions.add_parser("summary", help="relations, facts per language, paired facts and problems")
    summary.add_argument("path", help=f"'{BUNDLED_NAME}', a bundled-format folder or an mLAMA-layout folder")
    summary.add_argument("--json", type=Path, default=None, dest="json_out", help="also write the summary as JSON")
    listing = actions.add_parser("list", help="relations with fact counts and templates")
    listing.add_argument("path", nargs="?", default=BUNDLED_NAME, help=f"data set (default: {BUNDLED_NAME})")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.action == "summary":
        json_out = None if args.json_out is None else outputs.check_file(args.json_out, "--json", outputs.stores(None))
        summary = summarize(args.path)
        print(render_summary(args.path, summary))
        if json_out is not None:
            outputs.write_json(json_out, summary, "--json")
        return 0
    fact_set = load_dataset(args.path)
    if fact_set.problems:
        log.warning("%d problem(s) skipped while reading %s; 'data summary' lists them",
                    len(fact_set.problems), args.path)
    print(render_list(fact_set))
    return 0


def render_summary(source: str, summary: dict) -> str:
    per_language = ", ".join(f"{lang} {count}" for lang, count in summary["facts"].items())
    problems = summary["problems"]
    lines = [f"data set: {source}",
             f"relations ({len(summary['relations'])}): {', '.join(summary['relations'])}",
             f"valid facts per language: {per_language or 'none'}",
             f"paired facts (present in every language): {summary['paired']}",
             f"problems: {len(problems)}"]
    for problem in problems[:SHOWN_PROBLEMS]:
        where = f"{problem['file']}:{problem['line']}" if problem["line"] is not None else problem["file"]
        lines.append(f"  {where}: {problem['reason']}")
    if len(problems) > SHOWN_PROBLEMS:
        lines.append(f"  ... and {len(problems) - SHOWN_PROBLEMS} more (use --json to see all)")
    return "\n".join(lines)


def render_list(fact_set: FactSet) -> str:
    languages = fact_set.languages
    width = max([len(relation.name) for relation in fact_set.relations.values()] + [4])
    lines = [f"{'id':<8}{'name':<{width + 2}}{'facts':>5}  templates (train+heldout)"]
    for rid, relation in fact_set.relations.items():
        templates = ", ".join(f"{lang} {len(relation.templates_for(lang, heldout=False))}"
                              f"+{len(relation.templates_for(lang, heldout=True))}" for lang in languages)
        lines.append(f"{rid:<8}{relation.name:<{width + 2}}{len(fact_set.facts_of(rid)):>5}  {templates}")
    lines.append(f"{len(fact_set.relations)} relations, {len(fact_set.facts)} facts, languages: {', '.join(languages)}")
    return "\n".join(lines)
