"""Judges of two responses: a reward model, a Python callable, or a model behind any
OpenAI-compatible endpoint (`judge=openai:<model>@<base_url>`).

The endpoint judge reads a prompt file and asks about every pair twice, once in each
order, so a judge that favours a position cancels out: p(a better) is the mean of the
two verdicts, and a judge that says "A" whatever it is shown gives every pair 0.5 (a tie).
LLM judges are known to favour the first (or second) position (Zheng et al. 2023,
"Judging LLM-as-a-judge"); `eval/judge_first/<name>` measures how much this one does.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rlhf.config import ConfigError, load_callable
from rlhf.eval.winrate import RewardModelJudge

log = logging.getLogger("rlhf.eval")

PROMPTS = Path(__file__).parent / "prompts"
# The paper's instructions to labelers (section 3.4, Appendix B): helpfulness first while
# collecting training data, truthfulness and harmlessness first in final evaluations.
BUILTIN_PROMPTS = {"final": PROMPTS / "judge_final.md", "training": PROMPTS / "judge_training.md"}
PLACEHOLDERS = ("{prompt}", "{response_a}", "{response_b}")
DEFAULT_BASE_URL = "https://api.openai.com/v1"
_VERDICT = re.compile(r"verdict\s*[:=-]?\s*[*\"'`]*\s*(?:response\s+)?(a|b|tie)\b", re.IGNORECASE)


def make_judge(config, reward_model):
    """The judge `config.judge` names (see EvalConfig.judge), or the reward model, or None."""
    spec = config.judge
    if spec.startswith("openai:"):
        return OpenAIJudge.from_config(config)
    if spec and ":" in spec and not Path(spec).exists():
        return load_callable(spec, "judge")
    if spec:
        from rlhf.core.reward import load_reward_model

        return RewardModelJudge(load_reward_model(spec), config.max_length, config.batch_size)
    if reward_model is not None:
        return RewardModelJudge(reward_model, config.max_length, config.batch_size)
    return None


def judge_folder(config) -> str:
    """The reward-model folder that judges the win rates, or "" when the judge is no reward model."""
    spec = config.judge
    if not spec:
        return config.reward_model
    if spec.startswith("openai:") or (":" in spec and not Path(spec).exists()):
        return ""
    return spec


def parse_openai_spec(spec: str) -> tuple[str, str]:
    """`openai:<model>@<base_url>` -> (model, base_url); without `@...`, OpenAI's own API."""
    body = spec.removeprefix("openai:")
    model, at, url = body.partition("@http")
    if not model:
        raise ConfigError(f"judge={spec}: expected openai:<model>@<base_url>, e.g. openai:gpt-4o@https://api.openai.com/v1")
    return model, ("http" + url).rstrip("/") if at else DEFAULT_BASE_URL


def load_judge_prompt(spec: str) -> tuple[str, str]:
    """(template, where it came from): a built-in name (final, training) or a file with the three placeholders."""
    path = BUILTIN_PROMPTS.get(spec or "final", Path(spec))
    if not path.exists():
        raise ConfigError(f"judge_prompt={spec}: no such file (or one of the built-in prompts: {', '.join(BUILTIN_PROMPTS)})")
    return read_template(path, PLACEHOLDERS, "judge"), str(path)


def read_template(path: Path, placeholders, what: str) -> str:
    """A prompt template's text, refused with the placeholders it lacks (the judge's and the scorers' alike)."""
    template = path.read_text(encoding="utf-8")
    missing = [p for p in placeholders if p not in template]
    if missing:
        raise ConfigError(f"{path}: the {what} prompt must contain {', '.join(placeholders)}; missing {', '.join(missing)}")
    return template


def prompt_text(prompt) -> str:
    """A prompt as the judge reads it: a plain string as it is, a conversation as `role: content` turns."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in prompt)


def render(template: str, prompt, response_a: str, response_b: str) -> str:
    # Plain replacement, not str.format: a user's template may hold braces of its own.
    return (template.replace("{prompt}", prompt_text(prompt)).replace("{response_a}", response_a)
            .replace("{response_b}", response_b))


def parse_verdict(reply: str) -> str | None:
    """"A", "B", "tie", or None when the reply names none: the last `Verdict: X` line, else a bare letter."""
    found = _VERDICT.findall(reply)
    if found:
        return found[-1].upper() if found[-1].lower() != "tie" else "tie"
    bare = reply.strip().strip(".*\"'`()[] ").lower()
    return {"a": "A", "b": "B", "tie": "tie"}.get(bare)


def both_orders(first: str | None, second: str | None) -> float:
    """p(x better) from the verdict with x shown as A (`first`) and with x shown as B (`second`);
    a tie or an unreadable verdict counts half. A judge that always picks one position gives 0.5."""
    as_a = {"A": 1.0, "B": 0.0}.get(first, 0.5)
    as_b = {"B": 1.0, "A": 0.0}.get(second, 0.5)
    return (as_a + as_b) / 2


class ChatEndpoint:
    """One chat model behind an OpenAI-compatible /chat/completions endpoint, asked at temperature 0."""

    def __init__(self, model: str, base_url: str, api_key: str = "", max_tokens: int = 512, concurrency: int = 8,
                 timeout_s: float = 120.0, retries: int = 3):
        self.model, self.base_url, self.api_key = model, base_url, api_key
        self.max_tokens, self.concurrency, self.timeout_s, self.retries = max_tokens, concurrency, timeout_s, retries

    @classmethod
    def from_spec(cls, spec: str, config) -> ChatEndpoint:
        """`openai:<model>@<base_url>`, the key from the variable config.judge_api_key_env names."""
        model, base_url = parse_openai_spec(spec)
        return cls(model, base_url, os.environ.get(config.judge_api_key_env, ""), config.judge_max_tokens,
                   config.judge_concurrency)

    def complete(self, text: str) -> str:
        """The reply to one user message."""
        body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": text}], "temperature": 0,
                           "max_tokens": self.max_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = f"{self.base_url}/chat/completions"
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return json.loads(response.read())["choices"][0]["message"]["content"] or ""
            except urllib.error.HTTPError as e:
                detail = e.read().decode(errors="replace")[:300]
                if e.code in (401, 403):
                    raise ConfigError(f"judge {url} refused the request ({e.code}): set the API key in the environment "
                                      f"variable named by judge_api_key_env ({detail})") from None
                if e.code not in (408, 409, 429) and e.code < 500 or attempt == self.retries:
                    raise RuntimeError(f"judge {url}: HTTP {e.code}: {detail}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                if attempt == self.retries:
                    raise RuntimeError(f"judge {url}: cannot reach the endpoint ({e})") from None
            time.sleep(2**attempt)  # rate limits and restarts pass; back off before the next try
        raise AssertionError("unreachable")

    def complete_many(self, texts: list[str]) -> list[str]:
        """Replies in order, `concurrency` requests in flight."""
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self.complete, texts))


class OpenAIJudge:
    """A chat endpoint asked about each pair in both orders with a prompt template."""

    def __init__(self, endpoint: ChatEndpoint, template: str):
        self.endpoint, self.template = endpoint, template
        self.transcript: list[dict] = []

    @classmethod
    def from_config(cls, config) -> OpenAIJudge:
        return cls(ChatEndpoint.from_spec(config.judge, config), load_judge_prompt(config.judge_prompt)[0])

    def compare_many(self, prompts: list, a: list[str], b: list[str]) -> list[float]:
        """p(a better) per prompt, each pair asked in both orders; identical responses are a tie unasked."""
        asks = [(i, render(self.template, p, x, y), render(self.template, p, y, x))
                for i, (p, x, y) in enumerate(zip(prompts, a, b)) if x != y]
        replies = self.endpoint.complete_many([t for _, first, second in asks for t in (first, second)])
        probs = [0.5] * len(prompts)
        for n, (i, first_text, second_text) in enumerate(asks):
            first, second = replies[2 * n], replies[2 * n + 1]
            v1, v2 = parse_verdict(first), parse_verdict(second)
            probs[i] = both_orders(v1, v2)
            self.transcript.append({"index": i, "judge_prompt_ab": first_text, "reply_ab": first, "verdict_ab": v1,
                                    "judge_prompt_ba": second_text, "reply_ba": second, "verdict_ba": v2,
                                    "p_a_better": probs[i]})
        return probs

    def take_transcript(self) -> list[dict]:
        """The asks since the last call (the exact prompts, replies and verdicts), and forget them."""
        rows, self.transcript = self.transcript, []
        return rows


def position_stats(transcript: list[dict]) -> tuple[float, float]:
    """(share of readable A/B verdicts that chose the first-shown response, share of replies with no verdict)."""
    verdicts = [row[k] for row in transcript for k in ("verdict_ab", "verdict_ba")]
    positional = [v for v in verdicts if v in ("A", "B")]
    first = sum(v == "A" for v in positional) / len(positional) if positional else float("nan")
    unread = sum(v is None for v in verdicts) / len(verdicts) if verdicts else 0.0
    return first, unread
