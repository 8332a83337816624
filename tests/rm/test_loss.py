"""The K-way ranking loss and ranking -> pairs, against values worked out by hand."""

import math

import pytest
import torch

from rlhf.data.rankings import ranking_pairs
from rlhf.data.records import FieldError, normalize_ranking
from rlhf.rm.data import Ranking, collate_rankings
from rlhf.rm.loss import ranking_loss


def nls(x):  # -log sigmoid(x) = log(1 + e^-x)
    return math.log1p(math.exp(-x))


def test_k3_ranking_gives_three_pairs_best_first():
    assert ranking_pairs(normalize_ranking([2, 0, 1], 3)) == [(2, 0), (2, 1), (0, 1)]


def test_k4_without_ties_gives_c42_pairs():
    pairs = ranking_pairs(normalize_ranking([3, 1, 0, 2], 4))
    assert pairs == [(3, 1), (3, 0), (3, 2), (1, 0), (1, 2), (0, 2)]
    assert len(pairs) == math.comb(4, 2)


def test_ties_give_no_pair_within_a_group():
    pairs = ranking_pairs(normalize_ranking([[3], [0, 1], [2]], 4))
    assert pairs == [(3, 0), (3, 1), (3, 2), (0, 2), (1, 2)]  # 6 - 1 tied pair


def test_all_tied_gives_no_pairs():
    assert ranking_pairs(normalize_ranking([[0, 1, 2]], 3)) == []


@pytest.mark.parametrize("bad, why", [([0, 0, 1], "repeated"), ([0, 1], "missing"), ([0, 1, 5], "out of range"),
                                      ([[0], [], [1, 2]], "empty")])
def test_bad_rankings_are_refused(bad, why):
    with pytest.raises(FieldError, match=why):
        normalize_ranking(bad, 3)


def test_k3_loss_by_hand():
    # ranking [2, 0, 1], scores r = [1, 0, 2]: margins r2-r0=1, r2-r1=2, r0-r1=1
    scores = torch.tensor([1.0, 0.0, 2.0])
    pairs = torch.tensor([[2, 0], [2, 1], [0, 1]])
    loss, stats = ranking_loss(scores, pairs, torch.zeros(3, dtype=torch.long), 1)
    expected = (nls(1) + nls(2) + nls(1)) / 3  # = 0.2511505
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert loss.item() == pytest.approx(0.2511505, abs=1e-6)
    assert stats["correct"].item() == 3 and stats["pairs"] == 3


def test_k4_with_ties_mean_over_existing_pairs_by_hand():
    # ranking [[3], [0, 1], [2]], scores [0, 1, -1, 0.5]
    # pairs (3,0) .5, (3,1) -.5, (3,2) 1.5, (0,2) 1, (1,2) 2: five pairs, not C(4,2) = 6
    scores = torch.tensor([0.0, 1.0, -1.0, 0.5])
    pairs = torch.tensor(ranking_pairs([[3], [0, 1], [2]]))
    loss, stats = ranking_loss(scores, pairs, torch.zeros(5, dtype=torch.long), 1)
    expected = (nls(0.5) + nls(-0.5) + nls(1.5) + nls(1) + nls(2)) / 5
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert loss.item() == pytest.approx(0.4179514, abs=1e-6)
    assert stats["correct"].item() == 4  # the (3, 1) pair is scored the wrong way round
    assert stats["margin_sum"].item() == pytest.approx(4.5)


def test_batch_of_prompts_with_different_k_is_the_mean_of_per_prompt_means():
    # Prompt A (K=3) and prompt B (K=4, ties) in one micro-batch: flat scores, offset pairs.
    scores = torch.tensor([1.0, 0.0, 2.0, 0.0, 1.0, -1.0, 0.5])
    a = [(2, 0), (2, 1), (0, 1)]
    b = [(3 + w, 3 + l) for w, l in ranking_pairs([[3], [0, 1], [2]])]
    pairs = torch.tensor(a + b)
    pair_prompt = torch.tensor([0] * 3 + [1] * 5)
    loss, stats = ranking_loss(scores, pairs, pair_prompt, 2)
    assert loss.item() == pytest.approx((0.2511505 + 0.4179514) / 2, abs=1e-6)
    # Not the mean over all 8 pairs, which would weight prompt B more:
    flat = (3 * 0.2511505 + 5 * 0.4179514) / 8
    assert abs(loss.item() - flat) > 1e-3


def test_collate_forwards_each_response_once_and_offsets_pairs():
    rankings = [Ranking([[5, 6], [5, 7, 8], [5]], [(1, 0), (1, 2), (0, 2)]), Ranking([[9], [9, 9]], [(0, 1)])]
    batch = collate_rankings(rankings, pad_id=0)
    assert len(batch.groups) == 1  # no grouping asked for
    ids, mask = batch.groups[0]
    assert ids.shape == (5, 3)  # 3 + 2 responses, one row each
    assert mask.sum(1).tolist() == [2, 3, 1, 1, 2]
    assert batch.row_position.tolist() == [0, 1, 2, 3, 4]
    assert batch.pairs.tolist() == [[1, 0], [1, 2], [0, 2], [3, 4]]
    assert batch.pair_prompt.tolist() == [0, 0, 0, 1]


def test_rows_in_length_groups_score_as_one_batch(tiny_gpt2):
    """Rows of lengths 2, 3, 1, 1, 2 in groups {1, 1} {2, 2} {3} at half a token a forward; the grouped
    forward returns each row's reward in its own place, equal to the one-batch forward's."""
    from rlhf.core.groups import GroupedForward
    from rlhf.core.reward import reward_model_from_lm

    rankings = [Ranking([[5, 6], [5, 7, 8], [5]], [(1, 0), (1, 2), (0, 2)]), Ranking([[9], [9, 9]], [(0, 1)])]
    batch = collate_rankings(rankings, pad_id=0, group_cost=0.5)
    assert [ids.tolist() for ids, _ in batch.groups] == [[[5], [9]], [[5, 6], [9, 9]], [[5, 7, 8]]]  # rows 2 3, 0 4, 1
    assert batch.row_position.tolist() == [2, 4, 0, 1, 3]
    whole_ids, whole_mask = collate_rankings(rankings, pad_id=0).groups[0]
    rm = reward_model_from_lm(str(tiny_gpt2), seed=3).eval()
    with torch.no_grad():
        whole = rm(whole_ids, whole_mask)
        grouped = GroupedForward(rm)(batch.groups, batch.row_position)
        alone = torch.stack([rm(whole_ids[i : i + 1, :n], whole_mask[i : i + 1, :n])[0]
                             for i, n in enumerate([2, 3, 1, 1, 2])])
    torch.testing.assert_close(grouped, whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grouped, alone, atol=1e-5, rtol=1e-5)


def test_gradient_pushes_winner_up_and_loser_down():
    scores = torch.tensor([0.0, 0.0], requires_grad=True)
    loss, _ = ranking_loss(scores, torch.tensor([[0, 1]]), torch.tensor([0]), 1)
    loss.backward()
    assert scores.grad[0] < 0 < scores.grad[1]  # d/dr_w = -(1 - sigma(0)) = -0.5
    assert scores.grad.tolist() == pytest.approx([-0.5, 0.5])
