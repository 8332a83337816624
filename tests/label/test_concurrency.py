"""Racing labelers on SQLite and PostgreSQL: a single-overlap item goes to one
labeler, and concurrent double submits store one answer."""

from __future__ import annotations

import threading

from tests.label.conftest import add_user
from tests.label.label_helpers import add_prompts
from sqlalchemy import func, select

from rlhf.label import tasks
from rlhf.label.auth import CurrentUser
from rlhf.label.models import Answer, Assignment, User

N = 8


def users(db, names) -> list[CurrentUser]:
    for name in names:
        add_user(db, name)
    with db.transaction() as s:
        rows = s.scalars(select(User).where(User.username.in_(names)).order_by(User.id)).all()
    return [CurrentUser(u.id, u.username, u.role, u.status) for u in rows]


def race(fn, args_list) -> list:
    barrier = threading.Barrier(len(args_list))
    results: list = [None] * len(args_list)

    def go(i, args):
        barrier.wait()
        try:
            results[i] = fn(*args)
        except Exception as e:  # noqa: BLE001 - the test inspects what each thread got
            results[i] = e

    threads = [threading.Thread(target=go, args=(i, a)) for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_racing_labelers_never_share_a_single_overlap_item(db, tmp_path):
    add_prompts(db, tmp_path, [f"prompt {i}" for i in range(N // 2)], overlap=1)
    labelers = users(db, [f"l{i}" for i in range(N)])
    got = race(lambda u: tasks.next_assignment(db, u), [(u,) for u in labelers])
    assert not [g for g in got if isinstance(g, Exception)], got
    assigned = [g for g in got if g is not None]
    assert len(assigned) == N // 2 and got.count(None) == N // 2
    with db.transaction() as s:
        items = s.scalars(select(Assignment.item_id)).all()
    assert sorted(items) == list(range(1, N // 2 + 1))  # each item exactly once


def test_racing_labelers_fill_overlap_exactly(db, tmp_path):
    add_prompts(db, tmp_path, ["shared"], overlap=3)
    labelers = users(db, [f"l{i}" for i in range(6)])
    got = race(lambda u: tasks.next_assignment(db, u), [(u,) for u in labelers])
    assert len([g for g in got if isinstance(g, int)]) == 3 and got.count(None) == 3
    with db.transaction() as s:
        assert sorted(s.scalars(select(Assignment.slot))) == [0, 1, 2]


def test_concurrent_double_submits_store_one_answer(db, tmp_path):
    add_prompts(db, tmp_path, ["p"])
    (user,) = users(db, ["ann"])
    aid = tasks.next_assignment(db, user)
    answer = tasks.ParsedAnswer(response="one")
    got = race(tasks.submit, [(db, aid, user, "same-token", answer)] * 6)
    assert all(isinstance(g, int) for g in got) and len(set(got)) == 1, got
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Answer)) == 1
