"""Giving out tasks and storing answers: the part that must be right under concurrency.

Assignment: a labeler works on one task at a time. A real task goes to an approved
labeler who has not seen the item, into a free `slot` below the item's overlap; the
unique (item_id, slot) constraint means two labelers racing for the last slot
cannot both commit, and the loser simply looks again. Candidates get every
screening item instead.

Leases: an open assignment holds its slot for `lease_minutes` (a setting). After
that the slot may be taken over by the next labeler who asks for work, and the
abandoned assignment becomes `expired`; until someone takes it, the first labeler
can still submit.

Submission: one answer per assignment (unique), keyed by the form's token, so a
double-clicked submit stores one answer and both clicks see success.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from rlhf.data import FLAGS
from rlhf.label.auth import CurrentUser, Refused
from rlhf.label.db import Database, setting
from rlhf.label.models import MAX_ID, Answer, Assignment, Item, utcnow

MAX_RESPONSE_CHARS = 100_000
_RETRIES = 50


class _LostRace(Exception):
    """Another labeler took the last slot between our two reads (PostgreSQL's READ
    COMMITTED gives each statement a fresh snapshot); look again."""


class LeaseLost(Refused):
    """The assignment's lease ran out and another labeler took its slot."""

    def __init__(self):
        super().__init__(409, "Your time on this task ran out and it went to another labeler. Your answer was "
                              "not stored; it is kept on this page for you to copy.")


@dataclass
class TaskView:
    """What a task page shows: the item's content in the order this labeler sees it."""

    assignment_id: int
    kind: str
    screening: bool
    prompt: object
    responses: list[tuple[int, str]]  # (index into item.responses, text), in shown order
    status: str
    answer: dict | None = None
    lease_until: datetime | None = None  # open real tasks: when another labeler may take the slot


@dataclass
class ParsedAnswer:
    response: str | None = None
    ranking: list[list[int]] | None = None
    likert: list[int] | None = None
    flags: list[dict[str, bool]] | None = None
    errors: dict[str, str] = field(default_factory=dict)


def default_overlap(session) -> int:
    return setting(session, "overlap")


def _lease_start_cutoff(session) -> datetime:
    """Open assignments made before this have outlived their lease."""
    return utcnow() - timedelta(minutes=setting(session, "lease_minutes"))


def _open_assignment(session, user_id: int) -> Assignment | None:
    return session.scalar(
        select(Assignment).where(Assignment.user_id == user_id, Assignment.status == "open").order_by(Assignment.id)
    )


def _candidate_item(session, user: CurrentUser, kind: str | None) -> tuple[Item, int | None] | None:
    """The next item for `user` and the slot to take (None: screening, no limit)."""
    seen = exists().where(Assignment.item_id == Item.id, Assignment.user_id == user.id)
    query = select(Item).where(~seen).order_by(Item.id)
    if kind:
        query = query.where(Item.kind == kind)
    if not user.labels_real_tasks:
        return next(((item, None) for item in session.scalars(query.where(Item.screening.is_(True)).limit(1))), None)
    cutoff = _lease_start_cutoff(session)
    held = and_(Assignment.slot.is_not(None), or_(Assignment.status != "open", Assignment.assigned_at >= cutoff))
    taken = select(func.count(Assignment.id)).where(Assignment.item_id == Item.id, held).correlate(Item).scalar_subquery()
    overlap = func.coalesce(Item.overlap, default_overlap(session))
    item = session.scalar(query.where(Item.screening.is_(False), taken < overlap).limit(1))
    if item is None:
        return None
    holders = session.execute(
        select(Assignment.slot, Assignment.id, Assignment.status, Assignment.assigned_at)
        .where(Assignment.item_id == item.id, Assignment.slot.is_not(None))
    ).all()
    used = {slot for slot, _, status, at in holders if status != "open" or at >= cutoff}
    free = [slot for slot in range(item.overlap or default_overlap(session)) if slot not in used]
    if not free:
        raise _LostRace()
    for slot, stale_id, _, _ in holders:
        if slot == free[0]:
            _expire(session, stale_id, cutoff)
    return item, free[0]


def _expire(session, assignment_id: int, cutoff: datetime) -> None:
    """Take the slot of an assignment whose lease ran out. Conditional, so that on
    PostgreSQL a submit that committed in between wins and we look again."""
    expired = session.execute(
        update(Assignment)
        .where(Assignment.id == assignment_id, Assignment.status == "open", Assignment.assigned_at < cutoff)
        .values(status="expired", slot=None)
    )
    if expired.rowcount != 1:
        raise _LostRace()


def next_assignment(db: Database, user: CurrentUser, kind: str | None = None) -> int | None:
    """The id of the user's open assignment, making one if needed; None when nothing is left."""
    for _ in range(_RETRIES):
        try:
            with db.transaction() as s:
                current = _open_assignment(s, user.id)
                if current is not None:
                    return current.id
                found = _candidate_item(s, user, kind)
                if found is None:
                    return None
                item, slot = found
                order = list(range(len(item.responses))) if item.responses else None
                if order:
                    random.shuffle(order)  # the paper shows outputs in random order; we record it
                assignment = Assignment(item_id=item.id, user_id=user.id, slot=slot, shown_order=order)
                s.add(assignment)
                s.flush()
                return assignment.id
        except (IntegrityError, _LostRace):
            continue  # lost a race for the slot (or a double-clicked "next"): look again
    raise Refused(503, "The server is busy handing out tasks; try again in a moment.")


def _own_assignment(session, assignment_id: int, user: CurrentUser) -> tuple[Assignment, Item]:
    assignment = session.get(Assignment, assignment_id) if 0 < assignment_id <= MAX_ID else None
    # Someone else's assignment answers exactly like a missing one: no probing for ids.
    if assignment is None or assignment.user_id != user.id:
        raise Refused(404, "No such task.")
    return assignment, session.get(Item, assignment.item_id)


def load_task(db: Database, assignment_id: int, user: CurrentUser) -> TaskView:
    with db.reading() as s:
        assignment, item = _own_assignment(s, assignment_id, user)
        order = assignment.shown_order or []
        responses = [(i, item.responses[i]) for i in order]
        answer = s.scalar(select(Answer).where(Answer.assignment_id == assignment.id))
        stored = None
        if answer is not None:
            stored = {"response": answer.response, "ranking": answer.ranking, "likert": answer.likert, "flags": answer.flags}
        lease_until = None
        if assignment.status == "open" and assignment.slot is not None:
            lease_until = assignment.assigned_at + timedelta(minutes=setting(s, "lease_minutes"))
        return TaskView(assignment.id, item.kind, item.screening, item.prompt, responses, assignment.status, stored,
                        lease_until)


def parse_answer(kind: str, k: int, form) -> ParsedAnswer:
    """Form fields -> an answer, or `errors` by field name for the page to show.

    Ranking fields, per response index i (not shown position): `rank_i` (1 = best;
    equal numbers are a tie), `likert_i` (1-7), `flag_i` (repeated, one per flag set).
    """
    out = ParsedAnswer()
    if kind == "demonstration":
        text = form.get("response") or ""
        if not text.strip():
            out.errors["response"] = "Write the response you would want the assistant to give."
        elif len(text) > MAX_RESPONSE_CHARS:
            out.errors["response"] = f"At most {MAX_RESPONSE_CHARS} characters."
        elif "\x00" in text:
            out.errors["response"] = "Remove the NUL character (it cannot be stored)."
        out.response = text
        return out
    ranks, out.likert, out.flags = [], [], []
    for i in range(k):
        rank = _int_field(form, f"rank_{i}", 1, k, out.errors, "a rank from 1 to K")
        ranks.append(rank)
        out.likert.append(_int_field(form, f"likert_{i}", 1, 7, out.errors, "a quality score from 1 to 7"))
        chosen = form.getlist(f"flag_{i}")
        unknown = [f for f in chosen if f not in FLAGS]
        if unknown:
            out.errors[f"flag_{i}"] = f"unknown flag {unknown[0]!r}"
        out.flags.append({name: name in chosen for name in FLAGS})
    if not out.errors:
        # Equal rank numbers are a tie; numbers need not be consecutive (1, 1, 3, 4 is fine).
        out.ranking = [[i for i in range(k) if ranks[i] == r] for r in sorted(set(ranks))]
    return out


def _int_field(form, name: str, low: int, high: int, errors: dict, what: str) -> int | None:
    raw = form.get(name)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        errors[name] = f"Give {what}."
        return None
    if not low <= value <= high:
        errors[name] = f"Give {what}."
        return None
    return value


def submit(db: Database, assignment_id: int, user: CurrentUser, token: str, answer: ParsedAnswer) -> int:
    """Store the answer; returns its id. The commit has happened when this returns."""
    if not token or len(token) > 64:
        raise Refused(400, "The form is missing its submission token; reload the page.")
    try:
        with db.transaction() as s:
            assignment, item = _own_assignment(s, assignment_id, user)
            previous = s.scalar(select(Answer).where(Answer.assignment_id == assignment.id))
            if previous is not None:
                return _same_submission(previous, token)
            if assignment.status == "skipped":
                raise Refused(409, "You skipped this task; it is no longer yours to answer.")
            if assignment.status == "expired":
                raise LeaseLost()
            now = utcnow()
            row = Answer(
                assignment_id=assignment.id, token=token, response=answer.response, ranking=answer.ranking,
                likert=answer.likert, flags=answer.flags, submitted_at=now,
                seconds=max(0.0, (now - assignment.assigned_at).total_seconds()),
            )
            s.add(row)
            s.flush()
            # Conditional: on PostgreSQL another labeler may have taken the slot over since we read it.
            done = s.execute(update(Assignment).where(Assignment.id == assignment.id, Assignment.status == "open")
                             .values(status="submitted"))
            if done.rowcount != 1:
                raise LeaseLost()
            return row.id
    except IntegrityError:
        # The other click of a double-click committed first: answer as it did.
        with db.reading() as s:
            previous = s.scalar(select(Answer).where(Answer.assignment_id == assignment_id))
            if previous is None:
                raise Refused(409, "This form was already used; reload the page.") from None
            return _same_submission(previous, token)


def _same_submission(previous: Answer, token: str) -> int:
    if previous.token != token:
        raise Refused(409, "This task was already submitted (from another tab or an older page).")
    return previous.id


def skip(db: Database, assignment_id: int, user: CurrentUser) -> None:
    """Give an open task back: its slot frees up for another labeler, and this labeler
    is not given the item again (the skipped assignment row stays)."""
    with db.transaction() as s:
        assignment, _ = _own_assignment(s, assignment_id, user)
        if assignment.status != "open":
            raise Refused(409, "Only an open task can be skipped.")
        assignment.status, assignment.slot = "skipped", None


def release_open(session, user_id: int) -> int:
    """Give back a user's open tasks (when they are disabled or sent back to
    screening), so their slots do not stay taken forever. Returns how many."""
    open_rows = session.scalars(select(Assignment).where(Assignment.user_id == user_id, Assignment.status == "open")).all()
    for assignment in open_rows:
        assignment.status, assignment.slot = "skipped", None
    return len(open_rows)


def new_form_token() -> str:
    return secrets.token_urlsafe(24)


def answered(db: Database, user: CurrentUser) -> int:
    """How many answers the user has submitted."""
    with db.reading() as s:
        return s.scalar(
            select(func.count(Answer.id)).join(Assignment, Assignment.id == Answer.assignment_id)
            .where(Assignment.user_id == user.id)
        )


def history(db: Database, user: CurrentUser, limit: int = 200) -> list[dict]:
    """The user's own submitted answers, newest first."""
    with db.reading() as s:
        rows = s.execute(
            select(Assignment.id, Item.kind, Item.screening, Item.prompt, Answer.submitted_at)
            .join(Item, Item.id == Assignment.item_id)
            .join(Answer, Answer.assignment_id == Assignment.id)
            .where(Assignment.user_id == user.id)
            .order_by(Answer.id.desc())
            .limit(limit)
        ).all()
    return [dict(assignment_id=r[0], kind=r[1], screening=r[2], prompt=r[3], submitted_at=r[4]) for r in rows]
