"""Regenerate the bundled facts' label columns beyond English and Chinese (assets/facts/README.md, "Languages
beyond en/zh"). A build-time tool, not part of the app: it needs Babel (Unicode CLDR data), pinned in
requirements-dev.txt, and writes the same bytes on every run with that version.

    python assets/facts/build_languages.py           # rewrite <relation>.tsv and provenance.tsv
    python assets/facts/build_languages.py --check   # exit 1 if a file differs from what would be written

Inputs, beside this script:

- the ``subject_en, object_en, subject_zh, object_zh`` columns of every ``<relation>.tsv`` (hand-written, kept
  as they are: the English label names each entity);
- ``labels/entities.tsv`` (``entity_en  kind  code``): the entities that CLDR names, by a stable id: ``territory``
  (ISO 3166-1 alpha-2), ``language`` (ISO 639), ``currency`` (ISO 4217), ``region`` (UN M49 code, for the
  continents) or ``zone`` (IANA time zone, whose CLDR exemplar city names a city);
- ``labels/written.tsv`` (``entity_en  <lang>...  note``): labels written for this project, for entities that CLDR
  does not name (most cities, people, companies, fields, instruments) or where CLDR's name does not fit a
  sentence (``note`` says why). A written label wins over CLDR's.

Outputs: the ``<lang>`` columns of every ``<relation>.tsv`` (en and zh first, then :data:`LANGUAGES`) and
``labels/provenance.tsv`` (``entity_en  lang  label  source``), one line per entity and language with the source
of its label: ``cldr`` (a CLDR display name or exemplar city), ``cldr-zone-id`` (a city CLDR leaves to the
zone id's last part, TR35's fallback, used only for Latin-script languages) or ``written``. An entity that
neither source names in a language leaves both labels of its facts in that language empty: the fact has no
label in that language (the loader accepts an empty subject *and* object pair, nothing else).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LABELS = "labels"  # sub-folder of the inputs and provenance.tsv (the loader reads only the top folder's *.tsv)
BABEL_VERSION = "2.18.0"  # the CLDR release the committed labels come from (Babel 2.18.0 ships CLDR 47)
BASE = ("en", "zh")  # hand-written columns, read and kept
LANGUAGES = ("fr", "es", "ru", "ja", "ar", "de")  # generated columns, in this order
LATIN = {"fr", "es", "de"}  # where CLDR leaves a city equal to its zone id (TR35 fallback)
UNSPACED = {"ja"}  # languages written without spaces between words: CLDR's spaces are dropped
KINDS = ("territory", "language", "currency", "region", "zone")


def read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def relation_ids(root: Path) -> list[str]:
    _, rows = read_tsv(root / "relations.tsv")
    return [row[0] for row in rows]


def cldr_label(kind: str, code: str, lang: str) -> tuple[str, str] | None:
    """(label, source) from CLDR through Babel, or None where CLDR has no name."""
    from babel import Locale

    locale = Locale.parse(lang)
    if kind == "zone":
        city = locale.time_zones.get(code, {}).get("city")
        if city:
            return city, "cldr"
        return (code.rsplit("/", 1)[-1].replace("_", " "), "cldr-zone-id") if lang in LATIN else None
    table = {"territory": locale.territories, "region": locale.territories, "language": locale.languages,
             "currency": locale.currencies}[kind]
    label = table.get(code)
    if label and lang in UNSPACED:
        label = label.replace(" ", "")  # CLDR's ja currency names put a space between country and unit
    return (label, "cldr") if label else None


def labels(root: Path) -> dict[str, dict[str, tuple[str, str]]]:
    """entity_en -> lang -> (label, source): the written label where there is one, else CLDR's."""
    found: dict[str, dict[str, tuple[str, str]]] = {}
    header, written = read_tsv(root / LABELS / "written.tsv")
    if header != ["entity_en", *LANGUAGES, "note"]:
        raise SystemExit(f"written.tsv: header must be entity_en, {', '.join(LANGUAGES)}, note")
    for row in written:
        row += [""] * (len(header) - len(row))
        entity = row[0]
        if entity in found:
            raise SystemExit(f"written.tsv: {entity!r} twice")
        found[entity] = {lang: (label.strip(), "written") for lang, label in zip(LANGUAGES, row[1:]) if label.strip()}
    _, entities = read_tsv(root / LABELS / "entities.tsv")
    for entity, kind, code in entities:
        if kind not in KINDS:
            raise SystemExit(f"entities.tsv: {entity!r} has kind {kind!r}; use one of {', '.join(KINDS)}")
        for lang in LANGUAGES:
            if lang in found.get(entity, {}):
                continue
            label = cldr_label(kind, code, lang)
            if label is None:
                continue
            if "(" in label[0]:
                raise SystemExit(f"CLDR names {entity!r} ({kind} {code}) in {lang} {label[0]!r}, with a "
                                 "parenthesis: write a label for it in written.tsv")
            found.setdefault(entity, {})[lang] = label
    return found


def build(root: Path) -> dict[str, str]:
    """file name (relative to ``root``) -> the text it should hold."""
    names = labels(root)
    out: dict[str, str] = {}
    used: dict[str, set[str]] = {}
    for rid in relation_ids(root):
        header, rows = read_tsv(root / f"{rid}.tsv")
        if header[:4] != ["subject_en", "object_en", "subject_zh", "object_zh"]:
            raise SystemExit(f"{rid}.tsv: the first four columns must be subject_en, object_en, subject_zh, object_zh")
        lines = ["\t".join(f"{role}_{lang}" for lang in (*BASE, *LANGUAGES) for role in ("subject", "object"))]
        for row in rows:
            subject, obj = row[0], row[1]
            cells = row[:4]
            for lang in LANGUAGES:
                pair = names.get(subject, {}).get(lang), names.get(obj, {}).get(lang)
                if pair[0] and pair[1]:
                    cells += [pair[0][0], pair[1][0]]
                    used.setdefault(subject, set()).add(lang)
                    used.setdefault(obj, set()).add(lang)
                else:
                    cells += ["", ""]
            lines.append("\t".join(cells))
        out[f"{rid}.tsv"] = "\n".join(lines) + "\n"
    provenance = ["entity_en\tlang\tlabel\tsource"]
    for entity in sorted(used, key=str.casefold):
        for lang in LANGUAGES:
            if lang in used[entity]:
                label, source = names[entity][lang]
                provenance.append(f"{entity}\t{lang}\t{label}\t{source}")
    out[f"{LABELS}/provenance.tsv"] = "\n".join(provenance) + "\n"
    return out


def stats(root: Path) -> str:
    """Labels per source (every fact's subject and object in every generated language, and the distinct
    entity-language labels of labels/provenance.tsv), and how often CLDR's Chinese name equals the hand-written zh."""
    names = labels(root)
    per_fact: dict[str, int] = {}
    table3: dict[str, int] = {}
    for rid in relation_ids(root):
        _, rows = read_tsv(root / f"{rid}.tsv")
        for row in rows:
            for lang in LANGUAGES:
                for entity in row[:2]:
                    source = names.get(entity, {}).get(lang, ("", "none"))[1]
                    per_fact[source] = per_fact.get(source, 0) + 1
                    if rid in ("P36", "P37", "P30", "P38", "P17"):
                        table3[source] = table3.get(source, 0) + 1
    _, provenance = read_tsv(root / LABELS / "provenance.tsv")
    distinct: dict[str, int] = {}
    for row in provenance:
        distinct[row[3]] = distinct.get(row[3], 0) + 1
    same_as_en = sum(row[3] == "written" and row[2] == row[0] for row in provenance)
    zh: dict[str, str] = {}
    for rid in relation_ids(root):
        _, rows = read_tsv(root / f"{rid}.tsv")
        for row in rows:
            zh[row[0]], zh[row[1]] = row[2], row[3]
    _, entities = read_tsv(root / LABELS / "entities.tsv")
    agree = 0
    for entity, kind, code in entities:
        label = _cldr_zh(kind, code)
        agree += label == zh.get(entity)

    def share(counts: dict[str, int]) -> str:
        total = sum(counts.values())
        return ", ".join(f"{source} {n} ({100 * n / total:.1f} %)" for source, n in sorted(counts.items()))

    return "\n".join([
        f"labels in facts ({', '.join(LANGUAGES)}; subject and object of every fact): {share(per_fact)}",
        f"  of which the five Table-3 relations (P36 P37 P30 P38 P17): {share(table3)}",
        f"distinct entity-language labels (labels/provenance.tsv): {share(distinct)}; "
        f"{same_as_en} written labels are spelled as in English",
        f"CLDR's zh name equals the hand-written zh label for {agree} of {len(entities)} entities of entities.tsv "
        "(a check of the entity ids)"])


def _cldr_zh(kind: str, code: str) -> str | None:
    from babel import Locale

    locale = Locale.parse("zh")
    if kind == "zone":
        return locale.time_zones.get(code, {}).get("city")
    table = {"territory": locale.territories, "region": locale.territories, "language": locale.languages,
             "currency": locale.currencies}[kind]
    return table.get(code)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    parser.add_argument("--stats", action="store_true", help="print the share of labels per source, write nothing")
    parser.add_argument("--root", type=Path, default=HERE, help="the fact-set folder (default: this script's)")
    args = parser.parse_args(argv)
    import babel

    if babel.__version__ != BABEL_VERSION:
        raise SystemExit(f"Babel {babel.__version__} installed; the labels come from Babel {BABEL_VERSION}: "
                         f"pip install Babel=={BABEL_VERSION}")
    root = args.root
    if args.stats:
        print(stats(root))
        return 0
    wanted = build(root)
    stale = [name for name, text in wanted.items()
             if not (root / name).is_file() or (root / name).read_text(encoding="utf-8") != text]
    if args.check:
        if stale:
            print(f"out of date: {', '.join(stale)} (run python {Path(__file__).name})", file=sys.stderr)
            return 1
        print("up to date")
        return 0
    for name in stale:
        target = root / name
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_text(wanted[name], encoding="utf-8")
        temporary.replace(target)  # atomic: a reader never sees half a file
    print(f"wrote {', '.join(stale) or 'nothing (up to date)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
