"""Win rate, ties and bootstrap intervals on numbers worked out by hand; labels; judges."""

import pytest

from rlhf.config import load_callable
from rlhf.eval.winrate import bootstrap_interval, judge_all, model_label, model_labels, outcomes


def test_outcomes_split_ties():
    # p > 0.5 wins, p < 0.5 loses, exactly 0.5 is a tie worth half: (1 + 0.5 + 0 + 1) / 4 = 0.625.
    results = outcomes([0.9, 0.5, 0.2, 0.7])
    assert results == [1.0, 0.5, 0.0, 1.0]
    assert sum(results) / len(results) == 0.625


def test_bootstrap_interval_of_a_constant_is_a_point():
    assert bootstrap_interval([1.0] * 20, 200, seed=0) == (1.0, 1.0)


def test_bootstrap_interval_matches_the_binomial_standard_error():
    # 100 prompts, half won: the mean's standard error is sqrt(0.25 / 100) = 0.05, so the 95%
    # interval is about 0.5 +- 1.96 * 0.05 = [0.402, 0.598].
    low, high = bootstrap_interval([0.0, 1.0] * 50, 2000, seed=1)
    assert 0.38 <= low <= 0.43 and 0.57 <= high <= 0.62
    assert bootstrap_interval([0.0, 1.0] * 50, 2000, seed=1) == (low, high)  # seeded


def test_labels_follow_the_run_folder():
    assert model_label("runs/ppo/final") == "ppo"
    assert model_label("runs/ppo-ptx/final/") == "ppo-ptx"
    assert model_label("gpt2") == "gpt2"
    assert model_labels(["a/final", "b/a/final", "c"]) == ["a", "a-2", "c"]
    assert model_labels(["x", "y"], ["sft", "ppo"]) == ["sft", "ppo"]


def test_callable_judges():
    def longer(prompt, a, b):
        return 1.0 if len(a) > len(b) else 0.0

    # identical responses are a tie without asking the judge
    assert judge_all(longer, ["p"] * 3, ["aa", "a", "same"], ["a", "aa", "same"]) == [1.0, 0.0, 0.5]
    assert load_callable("os.path:join") is __import__("os").path.join
    with pytest.raises(ValueError, match="no callable"):
        load_callable("os.path:nope")
    with pytest.raises(ValueError, match="cannot import"):
        load_callable("no_such_module_xyz:f")
