"""``python -m kn_core accuracy``: top-1 object accuracy of a model on a fact set, train and held-out templates.

``accuracy --model demo-mlm --lang zh [--data bundled] [--json OUT]`` prints a table and optionally writes
``{"model", "data", "lang", "accuracy", "n", "correct", "heldout_accuracy", "heldout_n", "heldout_correct",
"skipped"}`` as JSON (accuracies are null where a split has no prompts; ``skipped`` prompts could not be
built for the model and are not in ``n``).
"""
from __future__ import annotations

from pathlib import Path

from kn_core.commands import outputs
from kn_core.commands.options import lang_option, whole_number
from kn_core.data import BUNDLED_NAME, load_dataset
from kn_core.method.evaluate import AccuracyResult, object_accuracy
from kn_core.model.loading import load_model


def register(subparsers) -> None:
    p = subparsers.add_parser("accuracy", help="top-1 object accuracy of a model on a fact set")
    p.add_argument("--model", required=True, help="demo-mlm, demo-clm, a model folder or a Hugging Face id")
    p.add_argument("--lang", required=True, type=lang_option,
                   help="language of the templates and labels, e.g. en or zh")
    p.add_argument("--data", default=BUNDLED_NAME, help=f"'{BUNDLED_NAME}' or a data folder (default: {BUNDLED_NAME})")
    p.add_argument("--batch-size", type=whole_number(1), default=128, help="prompts per forward pass")
    p.add_argument("--json", type=Path, default=None, dest="json_out", help="also write the result as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    json_out = None if args.json_out is None else outputs.check_file(args.json_out, "--json", outputs.stores(None))
    factset = load_dataset(args.data)
    lm = load_model(args.model)
    train, heldout = (object_accuracy(lm, factset, args.lang, split, args.batch_size) for split in (False, True))
    print(render(args.model, train, heldout))
    if json_out is not None:
        outputs.write_json(json_out, to_json(args.model, args.data, train, heldout), "--json")
    return 0


def to_json(model: str, data: str, train: AccuracyResult, heldout: AccuracyResult) -> dict:
    return {"model": model, "data": data, "lang": train.lang,
            "accuracy": train.accuracy, "n": train.n, "correct": train.correct,
            "heldout_accuracy": heldout.accuracy, "heldout_n": heldout.n, "heldout_correct": heldout.correct,
            "skipped": train.skipped + heldout.skipped}


def render(model: str, *results: AccuracyResult) -> str:
    width = max(12, len(model) + 2)
    lines = [f"{'model':<{width}}{'lang':<6}{'templates':<11}{'correct':>8}{'n':>7}  accuracy"]
    for result in results:
        shown = "—" if result.accuracy is None else f"{100 * result.accuracy:6.1f} %"
        lines.append(f"{model:<{width}}{result.lang:<6}{result.split:<11}{result.correct:>8}{result.n:>7}  {shown}")
    skipped = sum(result.skipped for result in results)
    if skipped:
        lines.append(f"({skipped} prompt(s) could not be built for this model, e.g. objects its tokenizer cannot "
                     "spell, and are left out of n)")
    return "\n".join(lines)
