"""A keyword tagger for the paper's use-case categories (Table 1), for prompts that have none.

The paper's categories were assigned by labelers. Rules on the first words of a
prompt agree with them on clear cases ("Summarize ...", "Rewrite ...") and guess
on the rest; they exist so that `stats.md` can show a Table 1 for data that came
without categories, and are labelled as keyword-tagged there.
"""

from __future__ import annotations

import re

# Checked in order; the first rule that matches wins. Ordered from the most
# specific cue to the most generic, so "summarize this story" is summarization,
# not generation.
_RULES: list[tuple[str, re.Pattern]] = [
    ("summarization", re.compile(r"\b(summari[sz]e|summary|tl;?dr|in one sentence|key points)\b")),
    ("rewrite", re.compile(r"\b(rewrite|rephrase|paraphrase|translate|reword|proofread|fix the grammar|"
                           r"correct the grammar|make (this|it) (more|less|sound))\b")),
    ("extract", re.compile(r"\b(extract|pull out|find all|list all the|which (names|dates|numbers) (are|appear))\b")),
    ("classification", re.compile(r"\b(classify|categori[sz]e|sentiment|is this (email|review|tweet|text) "
                                  r"|label (this|the following)|positive or negative|spam or not)\b")),
    ("closed_qa", re.compile(r"\b(based on the (text|passage|article|paragraph)|according to the "
                             r"(text|passage|article)|from the (text|passage) above|answer the question using)\b")),
    ("brainstorming", re.compile(r"\b(brainstorm|ideas?|suggest(ions)?|list (\w+ )?(ways|things|reasons|tips))\b")),
    ("generation", re.compile(r"^(please )?(write|generate|create|compose|draft|tell me a (story|joke)|"
                              r"make up|come up with)\b|\b(story|poem|essay|haiku|song|lyrics|blog post|tweet)\b")),
    ("chat", re.compile(r"\b(let's chat|pretend (you are|to be)|you are an? |role-?play|act as)\b")),
    ("open_qa", re.compile(r"^(who|what|when|where|why|how|which|is|are|can|could|does|do|should|explain)\b|\?\s*$")),
]


def tag_category(prompt: str | list[dict]) -> str:
    """One of records.CATEGORIES for a plain prompt or a conversation."""
    if isinstance(prompt, list):
        if sum(m["role"] == "user" for m in prompt) > 1:
            return "chat"  # a multi-turn conversation is chat whatever its last request
        prompt = prompt[-1]["content"]
    text = prompt.strip().lower()[:500]
    for category, pattern in _RULES:
        if pattern.search(text):
            return category
    return "other"
