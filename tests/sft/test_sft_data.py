"""SFT masking and packing, checked by hand."""

import torch

from rlhf.core.lm import ResponseLM
from rlhf.core.models import load_causal_lm
from rlhf.sft.data import Example, collate_packed, collate_padded, pack_rows
from rlhf.sft.loss import sft_loss


def test_loss_positions_are_response_tokens_only():
    batch = collate_padded([Example([10, 11, 12], [20, 21]), Example([10], [30, 31, 32])], pad_id=0)
    # Row 0: tokens 10 11 12 20 21 -> positions 2 and 3 predict 20 and 21.
    # Row 1: tokens 10 30 31 32 0 -> positions 0, 1, 2 predict 30, 31, 32; padding never counts.
    assert batch["select"].tolist() == [[False, False, True, True, False], [True, True, True, False, False]]
    assert batch["targets"].tolist() == [20, 21, 30, 31, 32]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]


def test_sft_loss_is_summed_ce_over_global_token_count():
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])  # CE(target 0) = ln 2 and ln(1 + e^-2)
    loss, stats = sft_loss(logits, torch.tensor([0, 0]), num_tokens=4)
    expected = (torch.log(torch.tensor(2.0)) + torch.log1p(torch.exp(torch.tensor(-2.0)))) / 4
    assert torch.isclose(loss, expected)
    assert stats["tokens"] == 2


def test_pack_rows_first_fit():
    rows = pack_rows([Example([1] * 3, [2] * 3), Example([1] * 5, [2] * 4), Example([1], [2] * 3)], max_length=10)
    assert [[len(e) for e in r] for r in rows] == [[6, 4], [9]]


def test_packed_boundaries_match_unpacked(tiny_model_factory):
    model = load_causal_lm(str(tiny_model_factory("llama")))
    net = ResponseLM(model).eval()
    examples = [Example([5, 6, 7], [8, 9]), Example([11, 12], [13, 14, 15]), Example([16], [17])]
    padded = collate_padded(examples, pad_id=1)
    packed = collate_packed(examples, pad_id=1, max_length=12)
    assert packed["input_ids"].shape[0] == 1  # 5 + 5 + 2 tokens fill exactly one row of 12
    # Positions restart at each example and the masks never let one example see another.
    assert packed["position_ids"][0].tolist()[:12] == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    with torch.no_grad():
        a = net(padded["input_ids"], padded["attention_mask"], padded["select"])
        b = net(packed["input_ids"], packed["attention_mask"], packed["select"], packed["position_ids"])
    assert packed["targets"].tolist() == padded["targets"].tolist()
    assert torch.allclose(a, b, atol=1e-5)
