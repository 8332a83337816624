"""The shared sampler: greedy at temperature 0, degenerate temperatures and top_p, the KV cache,
and generate() cuts after EOS."""

import warnings

import pytest
import torch

from rlhf.core.generate import generate, kv_cache, left_pad, pick_tokens, positions_from_mask
from rlhf.core.models import LoraConfig, load_causal_lm, load_tokenizer


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


def test_a_top_p_that_rounds_to_zero_keeps_the_top_token():
    # 1e-46 is 0 in float32: the nucleus filter must still keep the most likely token, not drop
    # every token and fall through to the least likely one (issue 16, item 1).
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.7]])).repeat(3, 1)
    assert pick_tokens(logits, torch.tensor([0.0, 0.5, 0.999]), 1.0, 1e-46).tolist() == [2, 2, 2]


def test_a_tiny_temperature_tends_to_greedy_instead_of_nan():
    logits = torch.tensor([[0.1, 2.0, 1.9], [3.0, -1.0, 0.0]])
    for u in (0.0, 0.5, 0.999):
        assert pick_tokens(logits, torch.full((2,), u), 1e-300, 1.0).tolist() == [1, 0]


@pytest.mark.parametrize("lora", [0, 4])
def test_the_sampler_uses_the_current_cache_api(tiny_gpt2, lora):
    """transformers 5 deprecates `past_key_values=` (removed in 5.40); the sampler must not use it,
    also through a PEFT wrapper (PPO with lora.r > 0), and must give the same greedy answer."""
    tok = load_tokenizer(str(tiny_gpt2))
    model = load_causal_lm(str(tiny_gpt2), lora=LoraConfig(r=lora))
    prompt = tok("hello world")["input_ids"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = generate(model, tok, [prompt], 4, do_sample=False)
    assert not [w for w in caught if "past_key_values" in str(w.message)]
    with torch.no_grad():  # LoRA's B starts at zero, so both match the plain model's greedy answer
        expected = model.generate(torch.tensor([prompt]), max_new_tokens=4, do_sample=False,
                                  pad_token_id=tok.pad_token_id)[0, len(prompt):].tolist()
    assert ids[0] == expected[: len(ids[0])]


def test_the_kv_cache_gives_the_logits_of_the_full_forward(tiny_gpt2):
    """Each cached step's logits equal a forward over the whole left-padded sequence so far."""
    model, tok = load_causal_lm(str(tiny_gpt2)).eval(), load_tokenizer(str(tiny_gpt2))
    prompts = [tok("hello world")["input_ids"], tok("the quick brown fox jumps")["input_ids"]]
    ids, mask = left_pad(prompts, tok.pad_token_id)  # (B, P)
    cache = kv_cache(model)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask), use_cache=True,
                    **cache)
        for _ in range(3):
            token = out.logits[:, -1].argmax(-1)  # (B,)
            ids, mask = torch.cat([ids, token[:, None]], 1), torch.cat([mask, mask.new_ones(2, 1)], 1)
            out = model(input_ids=token[:, None], attention_mask=mask, position_ids=positions_from_mask(mask)[:, -1:],
                        use_cache=True, **cache)
            full = model(input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask)).logits[:, -1]
            assert torch.allclose(out.logits[:, -1], full, atol=1e-4)
