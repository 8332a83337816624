"""Human evaluation through the labeling app: `rlhf eval label_db=...` writes blinded tasks,
labelers (HTTP clients of a live `rlhf label serve`) rank them, `rlhf eval report --labels`
reads the export back. Expected numbers are worked out from the labelers' rules, not from
the code under test."""

import html
import json
import re
from collections import defaultdict

import httpx
import pytest
from tests.eval.conftest import run_eval

from rlhf.cli import main as cli
from rlhf.eval.human import comparison_tasks, human_metrics

pytest.importorskip("fastapi", reason="the labeling app needs the `label` extra: pip install -e .[label]")

from tests.label.conftest import LiveServer, add_user, http_login  # noqa: E402
from tests.label.label_helpers import form_fields, ranking_form  # noqa: E402

CARD = re.compile(r'<li class="card" tabindex="0" data-index="(\d+)".*?<div class="text">(.*?)</div>', re.DOTALL)


def shown_texts(page: str) -> dict[int, str]:
    """Response index -> text, as the labeler's page shows them."""
    return {int(i): html.unescape(text) for i, text in CARD.findall(page)}


def rule_answer(prefers_longer: bool, texts: dict[int, str]) -> dict:
    """A labeler's form: the preferred response first (equal lengths tie), Likert 6 for it and 3 for the
    other (4 each on a tie), `hallucination` on the other and `follows_constraints` on the preferred."""
    (i, a), (j, b) = sorted(texts.items())
    if len(a) == len(b):
        return ranking_form(2, [i, j], likert=[4, 4], ties={j})
    best, worst = (i, j) if (len(a) > len(b)) == prefers_longer else (j, i)
    likert = [6 if k == best else 3 for k in (0, 1)]
    return ranking_form(2, [best, worst], likert=likert, flags={worst: ["hallucination"], best: ["follows_constraints"]})


def label_everything(url: str, labelers: dict[str, bool]) -> int:
    """Round-robin: each labeler answers one task in turn until none is left. Returns answers sent."""
    clients = {}
    for name in labelers:
        clients[name] = httpx.Client(base_url=url, timeout=60)
        http_login(clients[name], name)
    sent, active = 0, set(labelers)
    while active:
        for name in sorted(active):
            nxt = clients[name].get("/next")
            if nxt.status_code != 303:
                assert "No task for you" in nxt.text
                active.discard(name)
                continue
            path = nxt.headers["location"]
            page = clients[name].get(path).text
            r = clients[name].post(path, data={**form_fields(page), **rule_answer(labelers[name], shown_texts(page))})
            assert r.status_code == 303, r.text
            sent += 1
    for c in clients.values():
        c.close()
    return sent


def expected_from_rules(key, export, labelers):
    """Win rate, Likert and hallucination rate of ppo, and agreement, from the labelers' rules."""
    by_task = {row["task"]: row for row in key}
    per_prompt = defaultdict(list)
    likert, halluc, by_item = defaultdict(list), defaultdict(list), defaultdict(list)
    for rec in export:
        row = by_task[rec["prompt_id"]]
        ppo, sft = (row["responses"][row["models"].index(n)] for n in ("ppo", "sft"))
        longer = labelers[rec["labeler_id"]]
        if len(ppo) == len(sft):
            win, score, bad = 0.5, 4, 0.0
        else:
            win = 1.0 if (len(ppo) > len(sft)) == longer else 0.0
            score, bad = (6, 0.0) if win else (3, 1.0)
        per_prompt[row["prompt_index"]].append(win)
        likert[row["prompt_index"]].append(score)
        halluc[row["prompt_index"]].append(bad)
        by_item[rec["prompt_id"]].append(win)
    for row in key:
        if row["model"] == "ppo" and not row["labelers"]:
            per_prompt[row["prompt_index"]].append(0.5)  # identical responses: a tie, never sent

    def mean_of_means(groups):
        return sum(sum(v) / len(v) for v in groups.values()) / len(groups)

    pairs = [float(w[0] == w[1]) for w in by_item.values() if len(w) == 2 and 0.5 not in w]
    return mean_of_means(per_prompt), mean_of_means(likert), mean_of_means(halluc), pairs


@pytest.mark.slow
def test_human_evaluation_through_the_labeling_app(runs, tmp_path):
    from rlhf.label.db import Database
    from rlhf.label.models import Item

    db_url = f"sqlite:///{tmp_path / 'labels.db'}"
    out = runs / "eval"
    run_eval(runs, out, f"label_db={db_url}", "label_overlap=0.5", num_prompts=16)  # no model judge needed
    key = [json.loads(line) for line in (out / "human_tasks.jsonl").read_text().splitlines()]
    sent = [row for row in key if row["labelers"]]
    assert {row["model"] for row in key} == {"ppo"}  # the baseline is not compared with itself
    assert len(sent) >= 10 and sum(row["labelers"] == 2 for row in sent) == round(0.5 * len(sent))
    assert {tuple(row["models"]) for row in sent} == {("ppo", "sft"), ("sft", "ppo")}  # order shuffled per task

    # Blinded: the app holds opaque task ids and the two responses, never a model name.
    db = Database(db_url)
    with db.reading() as s:
        items = s.query(Item).all()
    assert len(items) == len(sent)
    assert all(i.models is None and not i.extra and re.fullmatch(r"eval-[0-9a-f]{16}", i.prompt_id) for i in items)
    assert {i.prompt_id: i.overlap for i in items} == {row["task"]: row["labelers"] for row in sent}
    labelers = {"ann": True, "ben": True, "cat": False}  # cat prefers the shorter response
    for name in labelers:
        add_user(db, name)
    db.dispose()

    server = LiveServer(db_url, tmp_path / "server.log").start(timeout=300)  # a busy machine starts it slowly
    try:
        answers = label_everything(server.url, labelers)
    finally:
        server.stop()
    assert answers == sum(row["labelers"] for row in sent)
    assert cli(["label", "export", "--db", db_url, "--kind", "comparisons", "--out", str(tmp_path / "labels.jsonl")]) == 0
    assert cli(["eval", "report", "--out", str(out), "--labels", str(tmp_path / "labels.jsonl")]) == 0

    m = json.loads((out / "metrics.json").read_text())
    export = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    winrate, likert, halluc, pairs = expected_from_rules(key, export, labelers)
    assert m["human/winrate/ppo"] == pytest.approx(winrate)
    assert m["human/winrate_low/ppo"] <= m["human/winrate/ppo"] <= m["human/winrate_high/ppo"]
    assert m["human/likert/ppo"] == pytest.approx(likert)
    assert m["human/flag/hallucination/ppo"] == pytest.approx(halluc)
    assert m["human/judgments/ppo"] == answers and m["human/labelers"] == 3
    assert m["human/agreement_pairs"] == len(pairs)
    if pairs:
        assert m["human/agreement"] == pytest.approx(sum(pairs) / len(pairs))
    assert "eval/length/ppo" in m  # the model metrics of `rlhf eval` are kept
    report = (out / "report.md").read_text()
    assert "## Human evaluation" in report and "attempts correct instruction" in report
    assert f"{m['human/winrate/ppo']:.3f}" in report
    for plot in ("human_winrate.png", "human_flags.png"):
        assert (out / plot).stat().st_size > 1000


def test_report_refuses_an_export_of_other_responses(runs, tmp_path, capsys):
    out = runs / "eval"
    key = comparison_tasks([{"prompt": "p"}], ["sft", "ppo"], "sft", {"sft": ["x"], "ppo": ["y"]}, 0.0, 0, "s")
    run_eval(runs, out, f"reward_model={runs}/rm", num_prompts=2)
    (out / "human_tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in key))
    bad = {"prompt": "p", "prompt_id": key[0]["task"], "responses": ["x", "z"], "ranking": [0, 1], "labeler_id": "ann"}
    (tmp_path / "labels.jsonl").write_text(json.dumps({"prompt": "q", "responses": ["a", "b"], "ranking": [1, 0]}) + "\n"
                                          + json.dumps(bad) + "\n")
    assert cli(["eval", "report", "--out", str(out), "--labels", str(tmp_path / "labels.jsonl")]) == 2
    assert f"{tmp_path / 'labels.jsonl'}:2: field 'responses'" in capsys.readouterr().err
    (tmp_path / "other.jsonl").write_text(json.dumps({"prompt": "q", "responses": ["a", "b"], "ranking": [1, 0]}) + "\n")
    assert cli(["eval", "report", "--out", str(out), "--labels", str(tmp_path / "other.jsonl")]) == 2
    assert "none of its 1 records is a task" in capsys.readouterr().err


def test_comparison_tasks_shuffle_sides_and_overlap_a_share():
    records = [{"id": f"q{i}", "prompt": f"prompt {i}"} for i in range(40)]
    texts = {"base": [f"b{i}" for i in range(40)], "m": [f"m{i}" if i % 10 else f"b{i}" for i in range(40)]}
    key = comparison_tasks(records, ["base", "m"], "base", texts, 0.25, 0, "salt")
    assert len(key) == 40 and all(row["model"] == "m" for row in key)
    identical = [row for row in key if row["labelers"] == 0]
    assert sorted(row["prompt_index"] for row in identical) == [0, 10, 20, 30]
    assert sum(row["labelers"] == 2 for row in key) == round(0.25 * 36) == 9
    first = [row["models"][0] for row in key]
    assert 8 <= first.count("m") <= 32  # each side about half the time (binomial(40, 0.5): 99.99% inside)
    for row in key:  # the key maps each shown response back to its model
        assert row["responses"][row["models"].index("m")] == texts["m"][row["prompt_index"]]
    assert key == comparison_tasks(records, ["base", "m"], "base", texts, 0.25, 0, "salt")  # seeded
    assert len({row["task"] for row in key}) == 40


def test_human_metrics_by_hand():
    """Three prompts. p0: two labelers, model wins once and loses once (0.5); p1: one win (1.0);
    p2: identical responses, a tie (0.5). Win rate (0.5 + 1 + 0.5) / 3 = 2/3. Model Likert: p0 (6 + 2) / 2 = 4,
    p1 7 -> (4 + 7) / 2 = 5.5. Hallucination on the model's response: p0 (1 + 0) / 2, p1 0 -> 0.25.
    Agreement: p0's two labelers disagree -> 0 of 1 pair."""
    key = [{"task": "t0", "prompt_index": 0, "model": "m", "labelers": 2},
           {"task": "t1", "prompt_index": 1, "model": "m", "labelers": 1},
           {"task": "t2", "prompt_index": 2, "model": "m", "labelers": 0}]

    def j(task, p, outcome, lm, lb, halluc, labeler):
        return {"task": task, "prompt_index": p, "model": "m", "baseline": "b", "labeler": labeler, "outcome": outcome,
                "likert": {"m": lm, "b": lb}, "flags": {"m": {"hallucination": halluc}, "b": {}}}

    found = [j("t0", 0, 1.0, 6, 3, True, "ann"), j("t0", 0, 0.0, 2, 5, False, "ben"), j("t1", 1, 1.0, 7, 1, False, "ann")]
    m = human_metrics(key, found, ["b", "m"], "b", 200, 0)
    assert m["human/winrate/m"] == pytest.approx(2 / 3)
    assert m["human/likert/m"] == pytest.approx(5.5)
    assert m["human/likert/b"] == pytest.approx(((3 + 5) / 2 + 1) / 2)
    assert m["human/flag/hallucination/m"] == pytest.approx(0.25)
    assert m["human/flag/hallucination/b"] == 0.0
    assert m["human/agreement"] == 0.0 and m["human/agreement_pairs"] == 1
    assert m["human/tasks/m"] == 2 and m["human/judgments/m"] == 3 and m["human/identical/m"] == 1
    assert m["human/labelers"] == 2 and "human/winrate/b" not in m
