"""Prompt/response tokenisation with truncation that never cuts a response.

A conversation prompt is rendered with the tokenizer's chat template; a plain
prompt is used as it is. The response gets the EOS token appended so the model
learns to stop. If prompt + response is longer than `max_length`, the prompt is
cut from the left (keeping a leading BOS); if the response alone does not fit
with at least one prompt token, the record is dropped and counted.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def render_prompt(tokenizer, prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "a conversational prompt needs a tokenizer with a chat template; this tokenizer has none "
            "(give plain-string prompts, or set tokenizer.chat_template)"
        )
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def encode_prompt(tokenizer, prompt) -> list[int]:
    text = render_prompt(tokenizer, prompt)
    # A chat template writes its own special tokens; a plain prompt gets the tokenizer's (e.g. Llama's BOS).
    return tokenizer(text, add_special_tokens=isinstance(prompt, str))["input_ids"]


def encode_response(tokenizer, response: str, add_eos: bool = True) -> list[int]:
    ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    if add_eos and tokenizer.eos_token_id is not None:
        ids = ids + [tokenizer.eos_token_id]
    return ids


def fit_prompt(prompt_ids: list[int], budget: int, bos_id: int | None) -> list[int] | None:
    """Cut the prompt from the left to `budget` tokens, keeping a leading BOS; None if budget < 1."""
    if budget < 1:
        return None
    if len(prompt_ids) <= budget:
        return prompt_ids
    if bos_id is not None and prompt_ids and prompt_ids[0] == bos_id and budget >= 2:
        return [bos_id] + prompt_ids[len(prompt_ids) - budget + 1 :]
    return prompt_ids[len(prompt_ids) - budget :]


class TruncationCounter:
    """Counts prompts cut and records dropped, and says so once at the end."""

    def __init__(self, what: str):
        self.what = what
        self.truncated = 0
        self.dropped = 0

    def report(self) -> None:
        if self.truncated:
            log.info("%s: %d prompt(s) cut from the left to fit max_length", self.what, self.truncated)
        if self.dropped:
            log.warning("%s: dropped %d record(s) whose response does not fit max_length even with the prompt "
                        "cut to one token (raise max_length to keep them)", self.what, self.dropped)


def encode_pair(tokenizer, prompt, response: str, max_length: int, counter: TruncationCounter | None = None):
    """(prompt_ids, response_ids) fitted to max_length, or None if the response cannot fit."""
    prompt_ids = encode_prompt(tokenizer, prompt)
    response_ids = encode_response(tokenizer, response)
    fitted = fit_prompt(prompt_ids, max_length - len(response_ids), tokenizer.bos_token_id)
    if fitted is None:
        if counter:
            counter.dropped += 1
        return None
    if counter and len(fitted) < len(prompt_ids):
        counter.truncated += 1
    return fitted, response_ids
