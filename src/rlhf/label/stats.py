"""Progress, inter-labeler agreement, throughput, flag rates and screening scores.

Agreement is pairwise, as in the paper (section 3.4 reports 72.6% between training
labelers): for two labelers who ranked the same item, each pair of responses that
both ordered strictly counts once, and agrees when they ordered it the same way.
Pairs either labeler tied are left out: a tie is neither agreement nor disagreement
(`rlhf.data.pair_agreement`, which the simulated world's labelers are measured with too).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from itertools import combinations
from statistics import median

from sqlalchemy import func, select

from rlhf.data import FLAGS, pair_agreement
from rlhf.label.db import Database
from rlhf.label.models import Answer, Assignment, Item, User, utcnow
from rlhf.label.tasks import default_overlap


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _answers(session, screening: bool) -> list[tuple]:
    return session.execute(
        select(Item.id, Item.kind, Item.reference, User.username, Answer.ranking, Answer.flags, Answer.seconds,
               Answer.submitted_at, Answer.response)
        .join(Assignment, Assignment.item_id == Item.id)
        .join(Answer, Answer.assignment_id == Assignment.id)
        .join(User, User.id == Assignment.user_id)
        .where(Item.screening.is_(screening))
        .order_by(Answer.id)
    ).all()


def agreement(rows) -> dict:
    """Overall and per-labeler pairwise agreement on items ranked by several labelers."""
    by_item = defaultdict(list)
    for item_id, kind, _, labeler, ranking, *_ in rows:
        if kind == "ranking":
            by_item[item_id].append((labeler, ranking))
    agree = total = 0
    per = defaultdict(lambda: [0, 0])
    for answers in by_item.values():
        for (la, ra), (lb, rb) in combinations(answers, 2):
            a, t = pair_agreement(ra, rb)
            agree, total = agree + a, total + t
            for labeler in (la, lb):
                per[labeler][0] += a
                per[labeler][1] += t
    return {
        "agreement": _ratio(agree, total), "pairs": total,
        "per_labeler": {k: {"agreement": _ratio(a, t), "pairs": t} for k, (a, t) in sorted(per.items())},
    }


def throughput(rows) -> dict:
    """Per labeler: answers, answers in the last 24 h, median seconds per task."""
    since = utcnow() - timedelta(hours=24)
    per = defaultdict(list)
    for _, kind, _, labeler, _, _, seconds, submitted_at, _ in rows:
        per[labeler].append((kind, seconds, submitted_at))
    return {
        labeler: {
            "answers": len(xs),
            "demonstrations": sum(k == "demonstration" for k, _, _ in xs),
            "rankings": sum(k == "ranking" for k, _, _ in xs),
            "last_24h": sum(t >= since for _, _, t in xs),
            "median_seconds": round(median(s for _, s, _ in xs), 1),
        }
        for labeler, xs in sorted(per.items())
    }


def flag_rates(rows) -> dict:
    """Fraction of ranked responses that got each flag."""
    counts, responses = defaultdict(int), 0
    for *_, flags, _, _, _ in rows:
        for per_response in flags or []:
            responses += 1
            for name, value in per_response.items():
                counts[name] += bool(value)
    return {"responses": responses, "rates": {name: _ratio(counts[name], responses) for name in FLAGS}}


def screening_scores(rows) -> dict:
    """Per candidate: agreement with the reference rankings and flags; demonstrations
    are counted here and read by an admin (no automatic score for writing)."""
    per = defaultdict(lambda: {"rank_agree": 0, "rank_pairs": 0, "flag_agree": 0, "flags": 0, "demonstrations": 0})
    for _, kind, reference, labeler, ranking, flags, _, _, _ in rows:
        score = per[labeler]
        if kind == "demonstration":
            score["demonstrations"] += 1
            continue
        a, t = pair_agreement(ranking, reference["ranking"])
        score["rank_agree"] += a
        score["rank_pairs"] += t
        for mine, ref in zip(flags or [], reference.get("flags") or []):
            for name, value in ref.items():
                score["flags"] += 1
                score["flag_agree"] += bool(mine.get(name)) == bool(value)
    return {
        labeler: {
            "ranking_agreement": _ratio(s["rank_agree"], s["rank_pairs"]),
            "flag_agreement": _ratio(s["flag_agree"], s["flags"]),
            "demonstrations": s["demonstrations"],
        }
        for labeler, s in sorted(per.items())
    }


def progress(session) -> dict:
    """Per task kind: items, items with all their answers, answers."""
    overlap = default_overlap(session)
    answered = (
        select(Assignment.item_id, func.count(Answer.id).label("n"))
        .join(Answer, Answer.assignment_id == Assignment.id)
        .group_by(Assignment.item_id)
        .subquery()
    )
    rows = session.execute(
        select(Item.kind, Item.overlap, func.coalesce(answered.c.n, 0))
        .outerjoin(answered, answered.c.item_id == Item.id)
        .where(Item.screening.is_(False))
    ).all()
    out = {kind: {"items": 0, "done": 0, "answers": 0} for kind in ("demonstration", "ranking")}
    for kind, item_overlap, n in rows:
        out[kind]["items"] += 1
        out[kind]["answers"] += n
        out[kind]["done"] += n >= (item_overlap or overlap)
    return out


def collect(db: Database) -> dict:
    """Everything `rlhf label stats` and the admin page show."""
    with db.reading() as s:
        rows, screening_rows = _answers(s, False), _answers(s, True)
        result = {"overlap": default_overlap(s), "progress": progress(s)}
    result.update(
        agreement=agreement(rows), throughput=throughput(rows), flags=flag_rates(rows),
        screening=screening_scores(screening_rows),
    )
    return result
