"""Exact match and F1 of the official SQuAD and DROP scripts, on cases worked out by hand."""

import pytest

from rlhf.eval.answers import drop_normalize, drop_scores, squad_normalize, squad_scores


def test_squad_normalizes_case_punctuation_and_articles():
    assert squad_normalize("The  Eiffel Tower!") == "eiffel tower"
    assert squad_normalize("an apple, a day") == "apple day"


def test_squad_exact_and_f1_by_hand():
    # pred tokens [eiffel, tower, paris], gold [eiffel, tower]: 2 shared, P = 2/3, R = 1, F1 = 0.8
    assert squad_scores(["the Eiffel Tower"], "Eiffel tower, Paris") == (0.0, pytest.approx(0.8))
    assert squad_scores(["the Eiffel Tower"], "eiffel tower.") == (1.0, 1.0)
    # the best over gold answers: "Paris" matches the second exactly
    assert squad_scores(["the city of Paris", "Paris"], "Paris") == (1.0, 1.0)
    # repeated tokens count as a multiset: pred [a-less] [new, new, york], gold [new, york]: 2 shared,
    # P = 2/3, R = 1, F1 = 0.8
    assert squad_scores(["New York"], "new new york")[1] == pytest.approx(0.8)
    # unanswerable (SQuAD 2.0): only an empty prediction is right
    assert squad_scores([""], "") == (1.0, 1.0)
    assert squad_scores([], "") == (1.0, 1.0)
    assert squad_scores([""], "Paris") == (0.0, 0.0)
    assert squad_scores(["Paris"], "") == (0.0, 0.0)


def test_drop_numbers_spans_and_rounding_by_hand():
    assert drop_normalize("2.0 yards") == "2.0 yards" and drop_normalize("2 yards") == "2.0 yards"
    assert drop_normalize("well-known") == "well known"  # hyphens split tokens
    assert drop_scores(["2"], "2.0") == (1.0, 1.0)
    # gold {38.0, yards}, pred {38.0}: numbers match; P = 1, R = 1/2, F1 = 2/3 -> 0.67 (rounded as the script does)
    assert drop_scores(["38 yards"], "38") == (0.0, 0.67)
    # gold has a number the prediction lacks: the span pair scores 0 even though "yards" is shared
    assert drop_scores(["38 yards"], "40 yards") == (0.0, 0.0)
    # two gold spans, one predicted: the alignment pairs "denver" with "denver" (F1 1), the other gold
    # span gets 0; mean over max(2, 1) = 2 spans: 0.5
    assert drop_scores([["Denver", "Oakland"]], "Denver") == (0.0, 0.5)
    # the same spans in another order: exact match compares sets
    assert drop_scores([["Denver", "Oakland"]], ["oakland", "denver"]) == (1.0, 1.0)
    # empty gold answers are skipped, the best of the rest counts
    assert drop_scores(["", "Denver"], "denver") == (1.0, 1.0)


def test_drop_matches_lm_evaluation_harness_copy_of_the_official_script():
    utils = pytest.importorskip("lm_eval.tasks.drop.utils", reason="lm-eval not installed (pip install -e .[eval])")
    cases = [(["38 yards"], "38"), ([["Denver", "Oakland"]], ["Oakland", "Denver", "Miami"]), (["the 3rd quarter"], "3rd"),
             (["1,200"], "1200"), (["well-known fact"], "a well known fact!"), (["two"], "2"),
             ([["a", "b", "c"]], ["b", "c"]), (["12.5%"], "12.5 %")]
    for golds, pred in cases:
        answers = [tuple([g] if isinstance(g, str) else g) for g in golds]
        theirs = utils.process_results({"answers": answers}, [pred] if isinstance(pred, str) else list(pred))
        assert drop_scores(golds, pred) == (theirs["em"], pytest.approx(theirs["f1"])), (golds, pred)
