"""Request bodies of the OpenAI API subset we serve, validated strictly.

Strict mode: "5" is not an integer and 1 is not a boolean, as in the OpenAI API.
Unknown fields are ignored (clients send many we do not use), except those that
would change the answer and that we do not implement, which are refused.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rlhf.data.prompt_log import is_blank_prompt

MAX_N = 8
MAX_STOP = 4
# vLLM's bounds: a seed is a signed 64-bit integer (what torch.Generator takes), and a temperature
# below 0.01 is raised to 0.01 (0 itself stays greedy).
MIN_SEED, MAX_SEED = -(2**63), 2**63 - 1
MIN_TEMPERATURE = 0.01


class _Base(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")

    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=MAX_N)
    stream: bool = False
    stream_options: dict | None = None
    stop: str | list[str] | None = Field(default=None, validate_default=True)
    seed: int | None = Field(default=None, ge=MIN_SEED, le=MAX_SEED)
    user: str | None = None
    store: bool | None = None
    """OpenAI's own opt-out: `store: false` keeps this request out of the prompt log."""

    @field_validator("temperature")
    @classmethod
    def _temperature_floor(cls, value):
        return MIN_TEMPERATURE if 0 < value < MIN_TEMPERATURE else value

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value):
        if value is None:
            return []
        stops = [value] if isinstance(value, str) else value
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        return stops

    def unsupported(self) -> str | None:
        """The name of a set parameter that we do not implement, if any."""
        extra = self.model_extra or {}
        for name in ("logprobs", "top_logprobs", "echo", "suffix", "tools", "functions", "logit_bias"):
            if extra.get(name) not in (None, False, 0, [], {}):
                return name
        if extra.get("best_of") not in (None, 1):
            return "best_of"
        return None

    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))

    def params(self, max_tokens: int) -> dict:
        """The generation parameters, as logged."""
        return {"max_tokens": max_tokens, "temperature": self.temperature, "top_p": self.top_p, "n": self.n,
                "stop": self.stop, "seed": self.seed, "stream": self.stream, "user": self.user}


class CompletionRequest(_Base):
    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _prompt_list(cls, value):
        prompts = [value] if isinstance(value, str) else value
        if not prompts:
            raise ValueError("must not be empty")
        blank = [i for i, p in enumerate(prompts) if is_blank_prompt(p)]
        if blank:
            where = "" if isinstance(value, str) else f" (prompt {blank[0]})"
            raise ValueError(f"a prompt must not be empty or only whitespace{where}")
        return prompts


class TextPart(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def plain(self) -> dict:
        # "developer" is the newer name of "system"; the chat templates know "system".
        role = "system" if self.role == "developer" else self.role
        content = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": role, "content": content}


class ChatRequest(_Base):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    @field_validator("messages")
    @classmethod
    def _ends_with_user(cls, value):
        if value[-1].role != "user":
            raise ValueError("the last message must be from the user")
        if is_blank_prompt([m.plain() for m in value]):
            raise ValueError("the messages must not all be empty or only whitespace")
        return value
