"""Truncation never cuts a response: prompts are cut from the left, what cannot fit is dropped and counted."""

from rlhf.core.models import load_tokenizer
from rlhf.core.tokens import TruncationCounter, encode_pair, encode_prompt, fit_prompt


def test_fit_prompt_cuts_from_the_left_and_keeps_bos():
    assert fit_prompt([1, 2, 3, 4, 5], 3, bos_id=None) == [3, 4, 5]
    assert fit_prompt([0, 2, 3, 4, 5], 3, bos_id=0) == [0, 4, 5]
    assert fit_prompt([1, 2], 5, bos_id=None) == [1, 2]
    assert fit_prompt([1, 2], 0, bos_id=None) is None


def test_encode_pair_keeps_response_whole_and_counts(tiny_gpt2):
    tok = load_tokenizer(str(tiny_gpt2))
    counter = TruncationCounter("t")
    long_prompt = "the quick brown fox " * 30
    prompt_ids, response_ids = encode_pair(tok, long_prompt, "hello world", 20, counter)
    assert response_ids[-1] == tok.eos_token_id
    assert tok.decode(response_ids[:-1]) == "hello world"
    assert len(prompt_ids) + len(response_ids) == 20
    assert prompt_ids == encode_prompt(tok, long_prompt)[-len(prompt_ids):]  # the end of the prompt survives
    assert counter.truncated == 1 and counter.dropped == 0
    assert encode_pair(tok, "hi", "word " * 40, 20, counter) is None
    assert counter.dropped == 1


def test_conversation_prompts_use_the_chat_template(tiny_gpt2):
    tok = load_tokenizer(str(tiny_gpt2))
    ids = encode_prompt(tok, [{"role": "user", "content": "hi there"}])
    assert tok.decode(ids) == "<|user|>hi there\n<|assistant|>"


def test_fused_gelu_is_the_same_function(tiny_gpt2):
    """gelu_new -> gelu_pytorch_tanh is a speed change only: same logits."""
    import torch
    from transformers import AutoModelForCausalLM

    from rlhf.core.models import load_causal_lm

    plain = AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()
    fused = load_causal_lm(str(tiny_gpt2)).eval()
    assert plain.config.activation_function == "gelu_new"
    assert fused.config.activation_function == "gelu_pytorch_tanh"
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        assert torch.allclose(plain(ids).logits, fused(ids).logits, atol=1e-5)
