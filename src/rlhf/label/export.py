"""Answers -> the records of shared/formats.md, ready for `rlhf sft` and `rlhf rm`.

Comparisons carry the ranking (a flat list when there are no ties, groups when
there are), the Likert score and the ten flags of every response, the labeler id,
and `shown_order`: the order the labeler saw the responses in (an extra field,
which readers keep). Screening answers are never exported: they are tests of the
labeler, not data. Each record is checked against the shared validator before it
is written, so an export always loads.
"""

from __future__ import annotations

from sqlalchemy import select

from rlhf.data.records import normalize_comparison, normalize_demonstration
from rlhf.label.db import Database
from rlhf.label.models import Answer, Assignment, Item, User

KINDS = {"demonstrations": "demonstration", "comparisons": "ranking"}


def flat_or_groups(groups: list[list[int]]) -> list:
    """formats.md: `[2, 0, 3, 1]` without ties, `[[2], [0, 3], [1]]` with them."""
    return [g[0] for g in groups] if all(len(g) == 1 for g in groups) else groups


def _record(item: Item, answer: Answer, assignment: Assignment, labeler: str) -> dict:
    record = dict(item.extra or {})
    record["prompt"] = item.prompt
    if item.kind == "demonstration":
        record["response"] = answer.response
    else:
        record.update(
            responses=list(item.responses), ranking=flat_or_groups(answer.ranking),
            likert=list(answer.likert), flags=list(answer.flags), shown_order=list(assignment.shown_order or []),
        )
        if item.models:
            record["models"] = list(item.models)
    record["labeler_id"] = labeler
    if item.prompt_id is not None:
        record["prompt_id"] = item.prompt_id
    return record


def export_records(
    db: Database, kind: str, exclude: set[str] = frozenset(), holdout: set[str] = frozenset()
) -> tuple[list[dict], list[dict]]:
    """(records, held_out): `exclude` labelers are dropped, `holdout` labelers go to
    the second list (the paper's held-out labelers, for measuring generalization)."""
    if kind not in KINDS:
        raise ValueError(f"kind: one of {', '.join(KINDS)}, got {kind!r}")
    check = normalize_demonstration if kind == "demonstrations" else normalize_comparison
    with db.reading() as s:
        rows = s.execute(
            select(Item, Answer, Assignment, User.username)
            .join(Assignment, Assignment.item_id == Item.id)
            .join(Answer, Answer.assignment_id == Assignment.id)
            .join(User, User.id == Assignment.user_id)
            .where(Item.kind == KINDS[kind], Item.screening.is_(False))
            .order_by(Answer.id)
        ).all()
    records, held_out = [], []
    for item, answer, assignment, labeler in rows:
        if labeler in exclude:
            continue
        record = _record(item, answer, assignment, labeler)
        check(record)  # raises FieldError: a bug here, never silently bad data
        (held_out if labeler in holdout else records).append(record)
    return records, held_out
