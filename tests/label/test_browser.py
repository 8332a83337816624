"""A real browser (Debian's Chromium, driven by Playwright) logs in as a labeler,
ranks 4 outputs by keyboard and by dragging, submits, and the export holds that
ranking. Screenshots go into the test's tmp folder."""

from __future__ import annotations

import os

import pytest
from tests.label.conftest import PASSWORD, add_user
from tests.label.label_helpers import add_rankings

from rlhf.label.db import Database
from rlhf.label.export import export_records

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is absent: apt-get install chromium"),
]


@pytest.fixture
def page(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the `test` extra")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1100, "height": 1600})
        page = context.new_page()
        page.set_default_timeout(20_000)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: errors.append(f"dialog: {d.message}"))  # an XSS alert would land here
        yield page
        context.close()
        browser.close()
        assert not errors, errors


def card_labels(page) -> list[str]:
    return page.eval_on_selector_all("#ranking > li.card", "cards => cards.map(c => c.dataset.label)")


def rank_values(page) -> dict[str, str]:
    return dict(page.eval_on_selector_all(
        "#ranking > li.card", "cards => cards.map(c => [c.dataset.label, c.querySelector('select').value])"))


def index_of(page, label: str) -> int:
    return int(page.get_attribute(f'#ranking > li.card[data-label="{label}"]', "data-index"))


def log_in_and_open_task(page, url: str, name: str) -> None:
    page.goto(f"{url}/login")
    page.fill('input[name="username"]', name)
    page.fill('input[name="password"]', PASSWORD)
    page.click('button[type="submit"]')
    page.wait_for_url(f"{url}/")
    page.click("text=Start the next task")
    page.wait_for_selector("#ranking.js")  # rank.js ran


def test_labeler_ranks_four_outputs_by_keyboard_and_the_export_has_it(sqlite_url, tmp_path, live_server, page):
    db = Database(sqlite_url)
    add_user(db, "ann")
    add_rankings(db, tmp_path, k=4, prompt='<script>alert("xss")</script> Pick the best greeting',
                 responses=["Hello!", "Hi <b>there</b>", "Greetings.", "Yo"])
    db.dispose()
    server = live_server(sqlite_url)
    log_in_and_open_task(page, server.url, "ann")
    assert page.inner_text("#prompt-text").startswith('<script>alert("xss")</script>')  # shown, not run
    assert card_labels(page) == ["A", "B", "C", "D"]
    page.screenshot(path=str(tmp_path / "ranking_before.png"), full_page=True)

    # Keyboard: move D to the top (three ArrowUps), then C up one, then tie B with the card above it.
    page.focus('li.card[data-label="D"]')
    for _ in range(3):
        page.keyboard.press("ArrowUp")
    assert card_labels(page) == ["D", "A", "B", "C"]
    page.focus('li.card[data-label="C"]')
    page.keyboard.press("ArrowUp")
    assert card_labels(page) == ["D", "A", "C", "B"]
    page.focus('li.card[data-label="B"]')
    page.keyboard.press("t")
    assert rank_values(page) == {"D": "1", "A": "2", "C": "3", "B": "3"}
    assert "rank 3 of 4 (tied)" in page.inner_text("#rank-status")
    for n, label in enumerate("DACB"):
        page.check(f'li.card[data-label="{label}"] input[name^="likert_"][value="{7 - n}"]')
    page.check('li.card[data-label="B"] input[value="hallucination"]')
    page.screenshot(path=str(tmp_path / "ranking_after.png"), full_page=True)
    idx = {label: index_of(page, label) for label in "ABCD"}
    expected = [[idx["D"]], [idx["A"]], sorted([idx["C"], idx["B"]])]

    page.click("button.submit")
    page.wait_for_selector("text=No task for you right now")
    page.screenshot(path=str(tmp_path / "after_submit.png"), full_page=True)
    db = Database(sqlite_url)
    (record,) = export_records(db, "comparisons")[0]
    db.dispose()
    assert [sorted(g) for g in record["ranking"]] == expected
    assert record["labeler_id"] == "ann" and record["flags"][idx["B"]]["hallucination"] is True
    assert sum(f["hallucination"] for f in record["flags"]) == 1
    assert [record["likert"][idx[label]] for label in "DACB"] == [7, 6, 5, 4]
    assert record["shown_order"] == [idx[label] for label in "ABCD"]
    assert record["responses"][1] == "Hi <b>there</b>"  # stored as given, not mangled by escaping
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["after_submit.png", "ranking_after.png", "ranking_before.png"]


def test_labeler_ranks_by_dragging(sqlite_url, tmp_path, live_server, page):
    db = Database(sqlite_url)
    add_user(db, "bob")
    add_rankings(db, tmp_path, k=4)
    db.dispose()
    server = live_server(sqlite_url)
    log_in_and_open_task(page, server.url, "bob")
    shown = [index_of(page, label) for label in "ABCD"]
    # Drag D by its handle above A, then B below C.
    page.locator('li.card[data-label="D"] .handle').drag_to(page.locator('li.card[data-label="A"]'),
                                                           target_position={"x": 20, "y": 5})
    assert card_labels(page)[0] == "D"
    page.locator('li.card[data-label="B"] .handle').drag_to(page.locator('li.card[data-label="C"]'),
                                                           target_position={"x": 20, "y": 200})
    order = card_labels(page)
    assert order.index("B") > order.index("C")
    page.screenshot(path=str(tmp_path / "ranking_dragged.png"), full_page=True)
    for label in "ABCD":
        page.check(f'li.card[data-label="{label}"] input[name^="likert_"][value="4"]')
    expected = [index_of(page, label) for label in order]
    page.click("button.submit")
    page.wait_for_selector("text=No task for you right now")
    db = Database(sqlite_url)
    (record,) = export_records(db, "comparisons")[0]
    db.dispose()
    assert record["ranking"] == expected and record["shown_order"] == shown
