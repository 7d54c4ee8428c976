"""Templates with ``[X]``/``[Y]`` slots, their validation, and the :class:`Prompt` record.

How a template becomes token ids is the adapter's job (``Adapter.build_prompt``); this module holds
what every architecture shares: checking the template and the labels, and splitting at ``[Y]``.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

from kn_core.errors import InputError, TemplateError

SUBJECT_SLOT, OBJECT_SLOT = "[X]", "[Y]"
MAX_TEMPLATE_CHARS = 1000
MAX_LABEL_CHARS = 200


@dataclass(frozen=True)
class Prompt:
    """One prompt of a fact, ready for the model.

    Attributes:
        template, subject, object: what the user gave.
        input_ids: the model input (length T), with specials and masks / the teacher-forced object prefix.
        target_positions: k positions where object token i is predicted (k = number of object tokens).
        object_ids: the k gold object tokens.
        context_positions: positions replaced one at a time by the no-information token to build the
            minimal-information baseline (prompt tokens; no specials, no object positions).
        cut: template text after [Y] that the model does not read (a causal LM predicts the object from
            the text before it, as LAMA-style work on GPT models does); empty when nothing was left out.
        reader: which model's tokenizer and prompt format built the ids (``LanguageModel.reader``); a model
            refuses a prompt of another reader. Empty for a prompt built by hand; not part of equality.
    """

    template: str
    subject: str
    object: str
    input_ids: tuple[int, ...]
    target_positions: tuple[int, ...]
    object_ids: tuple[int, ...]
    context_positions: tuple[int, ...]
    cut: str = ""
    reader: str = field(default="", compare=False)

    @property
    def n_object_tokens(self) -> int:
        return len(self.object_ids)

    @property
    def text(self) -> str:
        """The filled sentence, as a person reads it."""
        return self.template.replace(SUBJECT_SLOT, self.subject).replace(OBJECT_SLOT, self.object)

    @property
    def query(self) -> str:
        """The sentence with the object slot left open, as the model reads it (without the ``cut`` text)."""
        template = self.template
        if self.cut:
            template = template[:template.index(OBJECT_SLOT) + len(OBJECT_SLOT)]
        return template.replace(SUBJECT_SLOT, self.subject)


def is_invisible(ch: str) -> bool:
    """Whitespace or an invisible format character (Unicode Cf: zero-width space, byte-order mark, word joiner,
    soft hyphen, ...)."""
    return ch.isspace() or unicodedata.category(ch) == "Cf"


def strip_invisible(text: str) -> str:
    """``text`` without leading and trailing whitespace and invisible format characters."""
    start, end = 0, len(text)
    while start < end and is_invisible(text[start]):
        start += 1
    while end > start and is_invisible(text[end - 1]):
        end -= 1
    return text[start:end]


def _check_text(field: str, value: object, max_chars: int) -> str:
    if not isinstance(value, str):
        raise InputError(field, f"expected text, got {type(value).__name__}")
    if not value.strip():
        raise InputError(field, "is empty; enter some text")
    if not strip_invisible(value):
        raise InputError(field, "holds only invisible characters (zero-width spaces, byte-order marks, ...); "
                                "enter some text")
    if len(value) > max_chars:
        raise InputError(field, f"is {len(value)} characters long; the limit is {max_chars}")
    bad = [ch for ch in value if unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn") and ch not in "\t"]
    if bad:
        raise InputError(field, f"contains control or unassigned characters ({bad[0]!r}); remove them")
    return value


def validate_label(field: str, value: object) -> str:
    """A subject or object: non-empty printable text of at most MAX_LABEL_CHARS; returned without leading and
    trailing whitespace and invisible format characters."""
    text = strip_invisible(_check_text(field, value, MAX_LABEL_CHARS))
    if OBJECT_SLOT in text or SUBJECT_SLOT in text:
        raise InputError(field, f"must not contain the slot markers {SUBJECT_SLOT} or {OBJECT_SLOT}")
    return text


def validate_template(template: object) -> str:
    """A template with exactly one [X] and exactly one [Y]; returned stripped."""
    text = _check_text("template", template, MAX_TEMPLATE_CHARS).strip()
    for slot, role in ((SUBJECT_SLOT, "subject"), (OBJECT_SLOT, "object")):
        count = text.count(slot)
        if count == 0:
            raise TemplateError(f"has no {slot} slot for the {role}; e.g. 'The capital of [X] is [Y].'")
        if count > 1:
            raise TemplateError(f"has {count} {slot} slots; use exactly one")
    return text


class FilledTemplate(NamedTuple):
    """A validated template with [X] filled, split at [Y]."""

    template: str
    subject: str
    object: str
    left: str
    right: str
    space_before_object: bool


def fill_template(template: object, subject: object, obj: object) -> FilledTemplate:
    """Validate template and labels, fill [X] and split at [Y]; the slots are counted again after filling, since
    a subject such as ``"Tanzania [Y"`` can complete a marker with the template's text (``"[X]] is [Y]"``)."""
    template = validate_template(template)
    subject = validate_label("subject", subject)
    obj = validate_label("object", obj)
    filled = template.replace(SUBJECT_SLOT, subject)
    for slot, count in ((SUBJECT_SLOT, 0), (OBJECT_SLOT, 1)):
        if filled.count(slot) != count:
            raise InputError("subject", f"{subject!r} and the template's text around [X] together form another "
                                        f"{slot} slot marker; change the subject or the template")
    left, right = filled.split(OBJECT_SLOT)
    return FilledTemplate(template, subject, obj, left, right, left[-1:].isspace())


def match_template(sentence: str, templates: Sequence[str]) -> tuple[str, str, str] | None:
    """Read a claim sentence back into (template, subject, object) with the first template that matches it."""
    text = " ".join(str(sentence).split())
    for template in templates:
        try:
            validate_template(template)
        except InputError:
            continue
        pattern = re.escape(" ".join(template.split()))
        pattern = pattern.replace(re.escape(SUBJECT_SLOT), "(?P<x>.+?)").replace(re.escape(OBJECT_SLOT), "(?P<y>.+?)")
        found = re.fullmatch(pattern, text)
        if found and found["x"].strip() and found["y"].strip():
            return template, found["x"].strip(), found["y"].strip()
    return None
