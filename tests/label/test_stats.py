"""Agreement, screening scores and flag rates against numbers worked out by hand."""

from __future__ import annotations

from datetime import datetime

from rlhf.label.stats import agreement, flag_rates, screening_scores, throughput

NOW = datetime(2030, 1, 1)


def row(item, labeler, ranking, flags=None, kind="ranking", reference=None, seconds=10.0):
    return (item, kind, reference, labeler, ranking, flags, seconds, NOW, None)


def test_agreement_over_items_and_per_labeler():
    rows = [
        row(1, "a", [[0], [1], [2]]), row(1, "b", [[1], [0], [2]]), row(1, "c", [[0], [1], [2]]),
        row(2, "a", [[0], [1]]),  # ranked by one labeler only: no pairs
    ]
    result = agreement(rows)
    # a-b 2/3, a-c 3/3, b-c 2/3 -> 7/9
    assert result["pairs"] == 9 and abs(result["agreement"] - 7 / 9) < 1e-12
    assert result["per_labeler"]["a"] == {"agreement": 5 / 6, "pairs": 6}
    assert result["per_labeler"]["b"] == {"agreement": 4 / 6, "pairs": 6}
    assert agreement([])["agreement"] is None


def test_screening_scores_compare_with_the_reference():
    ref = {"ranking": [[2], [1], [0]], "flags": [{"violent": True, "sexual": False}, {"violent": False}, {}]}
    rows = [
        row(1, "cand", [[2], [0], [1]], flags=[{"violent": True}, {"violent": True}, {}], reference=ref),
        row(2, "cand", None, kind="demonstration", reference={"response": "x"}),
    ]
    score = screening_scores(rows)["cand"]
    # pairs: (0,1) disagree, (0,2) agree, (1,2) agree; flags: violent ok, sexual ok, violent wrong
    assert score == {"ranking_agreement": 2 / 3, "flag_agreement": 2 / 3, "demonstrations": 1}


def test_flag_rates_and_throughput():
    flags = [{"violent": True, "sexual": False}, {"violent": False, "sexual": False}]
    rows = [row(1, "a", [[0], [1]], flags=flags, seconds=30), row(2, "a", [[1], [0]], flags=flags, seconds=10),
            row(3, "b", None, kind="demonstration", seconds=100)]
    rates = flag_rates(rows)
    assert rates["responses"] == 4 and rates["rates"]["violent"] == 0.5 and rates["rates"]["sexual"] == 0.0
    t = throughput(rows)
    assert t["a"]["answers"] == 2 and t["a"]["rankings"] == 2 and t["a"]["median_seconds"] == 20.0
    assert t["b"]["demonstrations"] == 1
