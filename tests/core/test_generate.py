"""The shared sampler: greedy at temperature 0, and generate() cuts after EOS."""

import torch

from rlhf.core.generate import generate, pick_tokens
from rlhf.core.models import load_causal_lm, load_tokenizer


def test_temperature_zero_is_argmax_whatever_the_noise():
    logits = torch.tensor([[0.1, 2.0, 1.9], [3.0, -1.0, 0.0]])
    for u in (0.0, 0.5, 0.999):
        assert pick_tokens(logits, torch.full((2,), u), 0.0, 1.0).tolist() == [1, 0]


def test_generate_greedy_is_deterministic_and_stops_at_eos(tiny_gpt2):
    model, tok = load_causal_lm(str(tiny_gpt2)), load_tokenizer(str(tiny_gpt2))
    prompts = [tok("hello world")["input_ids"], tok("the quick brown fox")["input_ids"]]
    a = generate(model, tok, prompts, 6, do_sample=False)
    b = generate(model, tok, prompts[::-1], 6, do_sample=False)[::-1]  # batch order does not matter
    assert a == b
    for row in a:
        assert 1 <= len(row) <= 6
        assert tok.eos_token_id not in row[:-1]  # nothing kept after an EOS
