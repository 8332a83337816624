"""Tiny random models and a small tokenizer, built offline from configs.

Tests, benchmarks and smoke runs use these instead of downloading weights. The
folders they write are ordinary Hugging Face model folders, so every loader in
the package is exercised on them exactly as on a real checkpoint.
"""

from __future__ import annotations

from pathlib import Path

# A minimal chat template so conversational prompts work with tiny models.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

_DEFAULT_TEXT = (
    "the quick brown fox jumps over the lazy dog . a model follows the instruction and answers the question . "
    "write a short story about a bear who goes to the beach and makes friends with a seal . "
    "list five ideas for how to regain enthusiasm for my career . summarize the text in one sentence . "
    "0 1 2 3 4 5 6 7 8 9 yes no good bad true false hello world question answer user assistant system"
)


def build_tokenizer(out_dir: str | Path, texts: list[str] | None = None, vocab_size: int = 512, model_max_length: int = 1024):
    """Train a byte-level BPE on `texts` and save it as a PreTrainedTokenizerFast.

    Byte-level means any string encodes (no unknown tokens), like GPT-2's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts or [_DEFAULT_TEXT] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>", pad_token="<|pad|>",
        model_max_length=model_max_length,
    )
    fast.chat_template = CHAT_TEMPLATE
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return fast


def model_config(arch: str, vocab_size: int, n_layer: int = 2, d_model: int = 64, n_head: int = 4, max_len: int = 512, **ids):
    """A transformers config of the given shape for `gpt2`, `llama` or `gpt_neox`."""
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig

    if arch == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size, n_positions=max_len, n_embd=d_model, n_layer=n_layer, n_head=n_head,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **ids,
        )
    if arch == "llama":
        return LlamaConfig(
            vocab_size=vocab_size, hidden_size=d_model, intermediate_size=d_model * 4, num_hidden_layers=n_layer,
            num_attention_heads=n_head, num_key_value_heads=max(1, n_head // 2), max_position_embeddings=max_len,
            tie_word_embeddings=True, **ids,
        )
    if arch == "gpt_neox":
        return GPTNeoXConfig(
            vocab_size=vocab_size, hidden_size=d_model, intermediate_size=d_model * 4, num_hidden_layers=n_layer,
            num_attention_heads=n_head, max_position_embeddings=max_len, rotary_pct=0.25,
            hidden_dropout=0.0, attention_dropout=0.0, **ids,
        )
    raise ValueError(f"unknown architecture {arch!r}: gpt2, llama or gpt_neox")


def build_tiny_model(
    out_dir: str | Path, arch: str = "gpt2", tokenizer_dir: str | Path | None = None, seed: int = 0,
    texts: list[str] | None = None, vocab_size: int = 512, **shape,
) -> Path:
    """Write a random-weight causal LM + tokenizer folder that `from_pretrained` loads."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir)
    if tokenizer_dir is not None:
        tok = AutoTokenizer.from_pretrained(tokenizer_dir)
        tok.save_pretrained(out_dir)
    else:
        tok = build_tokenizer(out_dir, texts=texts, vocab_size=vocab_size)
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    config = model_config(arch, vocab_size=len(tok), **shape, **ids)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    """python -m rlhf.core.tiny OUT [--arch gpt2] [--texts file.jsonl]: a tiny random model folder."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out")
    parser.add_argument("--arch", default="gpt2", choices=["gpt2", "llama", "gpt_neox"])
    parser.add_argument("--texts", nargs="*", default=[], help="JSONL/text files whose strings train the tokenizer")
    parser.add_argument("--vocab-size", type=int, default=512)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    args = parser.parse_args(argv)
    texts = []
    for path in args.texts:
        for line in open(path, encoding="utf-8"):
            texts.extend(_strings(json.loads(line)) if line.lstrip().startswith("{") else [line])
    build_tiny_model(args.out, arch=args.arch, texts=texts or None, vocab_size=args.vocab_size,
                     n_layer=args.layers, d_model=args.width, n_head=args.heads)
    print(f"wrote a tiny {args.arch} model to {args.out}")


def _strings(obj) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return []


if __name__ == "__main__":
    main()
