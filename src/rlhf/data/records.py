"""The records of shared/formats.md: validation and normalisation.

Each `normalize_<kind>(raw)` takes one decoded record and returns the canonical
dict every stage uses, or raises FieldError naming the field. Readers add the
file and line. Unknown extra fields are kept.

Canonical shapes:
  prompt        {"prompt": str | [messages], ...}
  demonstration {"prompt": str | [messages], "response": str, ...}
  comparison    {"prompt": str | [messages], "responses": [str]*K,
                 "ranking": [[i, ...], ...] (groups best first; ties share a group), ...}
  pretrain      {"text": str}
  sample        {"prompt": str | [messages], "response": str, ...}
"""

from __future__ import annotations

import re
from typing import Any

RECORD_KINDS = ("prompt", "demonstration", "comparison", "pretrain", "sample")
CATEGORIES = (
    "generation", "open_qa", "brainstorming", "chat", "rewrite",
    "summarization", "classification", "closed_qa", "extract", "other",
)
SOURCES = ("labeler", "customer")
FLAGS = (
    "fails_instruction", "inappropriate_for_assistant", "hallucination", "sexual",
    "violent", "harmful_advice", "denigrates_protected_class", "expresses_opinion",
    "expresses_moral_judgment", "follows_constraints",
)
ROLES = ("system", "user", "assistant")


class FieldError(ValueError):
    """A record is invalid; `field` names where (dotted, with list indices)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"field '{field}': {message}")
        self.field = field
        self.message = message


class RecordError(ValueError):
    """A record in a file is invalid: names the file, line and field."""

    def __init__(self, source: str, line: int, field: str, message: str):
        super().__init__(f"{source}:{line}: field '{field}': {message}")
        self.source, self.line, self.field, self.message = source, line, field, message


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_unicode(value: Any, field: str = "") -> None:
    """Raise FieldError naming the first string (keys included) that is not valid Unicode text.

    A lone surrogate comes from a JSON escape such as "\\ud800", or from a byte that was not
    UTF-8 (decoded with surrogateescape, as U+DC80..U+DCFF). It cannot be written back as UTF-8
    or tokenized, so it fails here, with its field, instead of in a writer or a tokenizer."""
    if isinstance(value, str):
        bad = _SURROGATE.search(value)
        if bad is not None:
            code = ord(bad.group())
            what = f"byte 0x{code - 0xDC00:02x} is not UTF-8" if 0xDC80 <= code <= 0xDCFF else \
                f"the lone surrogate \\u{code:04x} is not a character"
            raise FieldError(field or "<record>", f"not valid Unicode text: {what} (character {bad.start() + 1})")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_unicode(key, f"{field}.<key>" if field else "<key>")
            check_unicode(item, f"{field}.{key}" if field else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_unicode(item, f"{field}[{i}]")


def _require_str(record: dict, key: str, allow_empty: bool = False) -> str:
    if key not in record or record[key] is None:
        raise FieldError(key, "is required")
    value = record[key]
    if not isinstance(value, str):
        raise FieldError(key, f"must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise FieldError(key, "must not be empty")
    return value


def check_messages(messages: Any, field: str, last_role: str | None = "user") -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise FieldError(field, "a conversation must be a non-empty list of messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise FieldError(f"{field}[{i}]", "each message must be an object with 'role' and 'content'")
        if m.get("role") not in ROLES:
            raise FieldError(f"{field}[{i}].role", f"must be one of {list(ROLES)}, got {m.get('role')!r}")
        if not isinstance(m.get("content"), str):
            raise FieldError(f"{field}[{i}].content", "must be a string")
        out.append(dict(m))
    if last_role and out[-1]["role"] != last_role:
        raise FieldError(f"{field}[{len(out) - 1}].role", f"the last message must be from the {last_role}")
    return out


def check_prompt(value: Any, field: str = "prompt") -> str | list[dict]:
    if value is None:
        raise FieldError(field, "is required")
    if isinstance(value, str):
        if not value.strip():
            raise FieldError(field, "must not be empty")
        return value
    if isinstance(value, list):
        return check_messages(value, field)
    raise FieldError(field, f"must be a string or a list of messages, got {type(value).__name__}")


def _check_optional(record: dict) -> None:
    for key in ("id", "user_id", "labeler_id", "prompt_id"):
        if key in record and record[key] is not None and not isinstance(record[key], (str, int)):
            raise FieldError(key, "must be a string")
    if record.get("source") is not None and record["source"] not in SOURCES:
        raise FieldError("source", f"must be one of {list(SOURCES)}, got {record['source']!r}")
    if record.get("category") is not None and record["category"] not in CATEGORIES:
        raise FieldError("category", f"must be one of {list(CATEGORIES)}, got {record['category']!r}")


def normalize_prompt(record: dict) -> dict:
    out = dict(record)
    out["prompt"] = check_prompt(record.get("prompt"))
    _check_optional(out)
    return out


def normalize_demonstration(record: dict) -> dict:
    out = dict(record)
    if "messages" in record and "prompt" not in record:
        messages = check_messages(record["messages"], "messages", last_role="assistant")
        if len(messages) < 2:
            raise FieldError("messages", "needs at least one user message before the assistant's")
        out["prompt"] = check_messages(messages[:-1], "messages")
        out["response"] = messages[-1]["content"]
        del out["messages"]
    else:
        out["prompt"] = check_prompt(record.get("prompt"))
        out["response"] = _require_str(record, "response")
    _check_optional(out)
    return out


def normalize_ranking(ranking: Any, k: int, field: str = "ranking") -> list[list[int]]:
    """Flat `[2, 0, 3, 1]` or grouped `[[2], [0, 3], [1]]` -> groups, best first.

    Must cover each index of 0..k-1 exactly once."""
    if not isinstance(ranking, list) or not ranking:
        raise FieldError(field, "must be a non-empty list of indices (best first)")
    groups = []
    for i, item in enumerate(ranking):
        group = item if isinstance(item, list) else [item]
        if not group:
            raise FieldError(f"{field}[{i}]", "a tie group must not be empty")
        for j, idx in enumerate(group):
            if isinstance(idx, bool) or not isinstance(idx, int):
                raise FieldError(f"{field}[{i}]", f"indices must be integers, got {idx!r}")
            if not 0 <= idx < k:
                raise FieldError(f"{field}[{i}]", f"index {idx} is out of range for {k} responses")
        groups.append([int(x) for x in group])
    seen = [idx for g in groups for idx in g]
    if sorted(seen) != list(range(k)):
        dup = sorted({x for x in seen if seen.count(x) > 1})
        missing = sorted(set(range(k)) - set(seen))
        detail = f"repeated {dup}" if dup else f"missing {missing}"
        raise FieldError(field, f"must cover each of the {k} responses exactly once ({detail})")
    return groups


def _split_pair_without_prompt(chosen: Any, rejected: Any) -> tuple[Any, str, str]:
    """Public pairwise data with no prompt: the prompt is the longest common prefix,
    cut back to the last turn boundary (formats.md)."""
    if isinstance(chosen, list) and isinstance(rejected, list):
        c = check_messages(chosen, "chosen", last_role="assistant")
        r = check_messages(rejected, "rejected", last_role="assistant")
        n = 0
        while n < min(len(c), len(r)) - 1 and c[n] == r[n]:
            n += 1
        if n == 0 or c[:n] != r[:n] or n != len(c) - 1 or n != len(r) - 1:
            raise FieldError("chosen", "chosen and rejected conversations must share every turn but the last")
        return c[:n], c[-1]["content"], r[-1]["content"]
    if isinstance(chosen, str) and isinstance(rejected, str):
        n = 0
        limit = min(len(chosen), len(rejected))
        while n < limit and chosen[n] == rejected[n]:
            n += 1
        prefix = chosen[:n]
        # Turn boundary: the end of the last "Assistant:" marker (Anthropic HH style),
        # else the last newline, else the last space.
        cut = -1
        for marker in ("Assistant:", "assistant:", "\n", " "):
            pos = prefix.rfind(marker)
            if pos >= 0:
                cut = pos + len(marker)
                break
        if cut <= 0:
            raise FieldError("chosen", "chosen and rejected share no prompt; give a 'prompt' field")
        return chosen[:cut], chosen[cut:], rejected[cut:]
    raise FieldError("chosen", "chosen and rejected must both be strings or both be conversations")


def normalize_comparison(record: dict) -> dict:
    out = dict(record)
    if "responses" not in record and "chosen" in record and "rejected" in record:
        if "prompt" in record:
            prompt = check_prompt(record["prompt"])
            chosen, rejected = record["chosen"], record["rejected"]
            if isinstance(chosen, list):  # conversational chosen/rejected with a prompt
                chosen = check_messages(chosen, "chosen", last_role="assistant")[-1]["content"]
            if isinstance(rejected, list):
                rejected = check_messages(rejected, "rejected", last_role="assistant")[-1]["content"]
        else:
            prompt, chosen, rejected = _split_pair_without_prompt(record["chosen"], record["rejected"])
        for key, value in (("chosen", chosen), ("rejected", rejected)):
            if not isinstance(value, str):
                raise FieldError(key, "must be a string")
        out.pop("chosen", None)
        out.pop("rejected", None)
        out.update(prompt=prompt, responses=[chosen, rejected], ranking=[[0], [1]])
        _check_optional(out)
        return out
    out["prompt"] = check_prompt(record.get("prompt"))
    responses = record.get("responses")
    if not isinstance(responses, list):
        raise FieldError("responses", "is required: a list of K >= 2 response strings")
    if len(responses) < 2:
        raise FieldError("responses", f"needs K >= 2 responses, got {len(responses)}")
    for i, r in enumerate(responses):
        if not isinstance(r, str):
            raise FieldError(f"responses[{i}]", "must be a string")
    k = len(responses)
    if "ranking" not in record:
        raise FieldError("ranking", "is required: indices into responses, best first")
    out["ranking"] = normalize_ranking(record["ranking"], k)
    if record.get("likert") is not None:
        likert = record["likert"]
        if not isinstance(likert, list) or len(likert) != k:
            raise FieldError("likert", f"must be a list of {k} scores")
        for i, s in enumerate(likert):
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not 1 <= s <= 7:
                raise FieldError(f"likert[{i}]", f"must be a number from 1 to 7, got {s!r}")
    if record.get("flags") is not None:
        flags = record["flags"]
        if not isinstance(flags, list) or len(flags) != k:
            raise FieldError("flags", f"must be a list of {k} objects")
        for i, f in enumerate(flags):
            if not isinstance(f, dict):
                raise FieldError(f"flags[{i}]", "must be an object of flag -> boolean")
            for name, v in f.items():
                if name not in FLAGS:
                    raise FieldError(f"flags[{i}].{name}", f"unknown flag; known flags: {', '.join(FLAGS)}")
                if not isinstance(v, bool):
                    raise FieldError(f"flags[{i}].{name}", "must be true or false")
    _check_optional(out)
    return out


def normalize_pretrain(record: dict) -> dict:
    out = dict(record)
    out["text"] = _require_str(record, "text")
    return out


def normalize_sample(record: dict) -> dict:
    out = dict(record)
    out["prompt"] = check_prompt(record.get("prompt"))
    out["response"] = _require_str(record, "response", allow_empty=True)
    for key in ("reward", "logprob"):
        if out.get(key) is not None and (isinstance(out[key], bool) or not isinstance(out[key], (int, float))):
            raise FieldError(key, "must be a number")
    return out


NORMALIZERS = {
    "prompt": normalize_prompt,
    "demonstration": normalize_demonstration,
    "comparison": normalize_comparison,
    "pretrain": normalize_pretrain,
    "sample": normalize_sample,
}
