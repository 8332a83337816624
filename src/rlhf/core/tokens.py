"""Prompt/response tokenisation with truncation that never cuts a response.

A conversation prompt is rendered with the tokenizer's chat template; a plain
prompt is used as it is. The response gets the EOS token appended so the model
learns to stop. If prompt + response is longer than `max_length`, the prompt is
cut from the left (keeping a leading BOS); if the response alone does not fit
with at least one prompt token, the record is dropped and counted.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

# The built-ins of `chat_template=`, for base models that ship no template (GPT-2, Pythia, ...). Their
# markers are ordinary text to such a tokenizer: "<|im_start|>" becomes a few tokens, no embedding is
# added, and the model learns the format from the data like any other text.
CHAT_TEMPLATES = {
    # "User: ...", "Assistant: ..." turns, a blank line between; the response follows "Assistant:".
    "plain": (
        r"{% for message in messages %}{{ message['role'] | capitalize }}: {{ message['content'] }}{{ '\n\n' }}"
        r"{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
    ),
    # ChatML, as OpenAI described it and Qwen and SmolLM use it.
    "chatml": (
        r"{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
        r"'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
}


def chat_template_text(value: str) -> str:
    """The Jinja text `chat_template=value` names: a built-in (CHAT_TEMPLATES) or a template file."""
    from rlhf.config import ConfigError

    if value in CHAT_TEMPLATES:
        return CHAT_TEMPLATES[value]
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"chat_template={value}: neither a built-in ({', '.join(CHAT_TEMPLATES)}) nor a file")
    return path.read_text(encoding="utf-8")


def set_chat_template(tokenizer, value: str) -> None:
    """Give `tokenizer` the template `value` names, replacing its own; refuse one that cannot render a
    conversation, before any data is read."""
    text = chat_template_text(value)
    if getattr(tokenizer, "chat_template", None) not in (None, text):
        log.info("chat_template=%s replaces the tokenizer's own chat template", value)
    tokenizer.chat_template = text
    check_renders_a_user_message(tokenizer, f"chat_template={value}")


def check_renders_a_user_message(tokenizer, what: str) -> None:
    """Raise ConfigError, naming `what`, unless the tokenizer's template renders one user message with it."""
    from rlhf.config import ConfigError

    probe = [{"role": "user", "content": "probe-user-message"}]  # some templates refuse a system turn: data decides
    try:
        rendered = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    except Exception as e:  # jinja2's TemplateError and whatever the template raises itself
        raise ConfigError(f"{what}: cannot render a one-message conversation: {e}") from None
    if not isinstance(rendered, str) or "probe-user-message" not in rendered:
        raise ConfigError(f"{what}: renders a conversation without its user message")


def render_prompt(tokenizer, prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "a conversational prompt needs a tokenizer with a chat template; this tokenizer has none "
            f"(give plain-string prompts, or chat_template={' or '.join(CHAT_TEMPLATES)} or a Jinja file)"
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
