"""Exact match and F1 as the official SQuAD and DROP evaluation scripts compute them.

SQuAD: `evaluate-v2.0.py` (Rajpurkar et al. 2018): lowercase, drop punctuation, drop the
articles a/an/the, collapse whitespace; F1 over the multiset of tokens; an empty gold answer
(unanswerable) matches only an empty prediction; the best score over the gold answers.
DROP: `drop_eval.py` (Dua et al. 2019): answers are bags of spans; tokens split on spaces and
hyphens, numbers normalised (`2.0` == `2`), punctuation kept inside numbers; exact match
compares the sets of normalised spans; F1 aligns predicted and gold spans one to one for the
best total, a span pair scoring 0 when the gold span has numbers and the predicted one shares
none; F1 is rounded to 2 decimals as the script does; the best score over the gold answers.
Scores are fractions in [0, 1] (the scripts print them x100).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from itertools import permutations

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


# --- SQuAD -------------------------------------------------------------------------------

def squad_normalize(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_exact(gold: str, pred: str) -> float:
    return float(squad_normalize(gold) == squad_normalize(pred))


def squad_f1(gold: str, pred: str) -> float:
    gold_toks, pred_toks = squad_normalize(gold).split(), squad_normalize(pred).split()
    if not gold_toks or not pred_toks:  # unanswerable: right only when both are empty
        return float(gold_toks == pred_toks)
    same = sum((Counter(gold_toks) & Counter(pred_toks)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_toks), same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def squad_scores(golds: list[str], pred: str) -> tuple[float, float]:
    """(exact match, F1), each the best over the gold answers; no answer text at all counts as ''."""
    golds = [g for g in golds if squad_normalize(g)] or [""]
    return max(squad_exact(g, pred) for g in golds), max(squad_f1(g, pred) for g in golds)


# --- DROP --------------------------------------------------------------------------------

def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _drop_token(token: str) -> str:
    token = token.lower()
    if not _is_number(token):
        token = "".join(ch for ch in token if ch not in _PUNCTUATION)
    token = str(float(token)) if _is_number(token) else token
    return " ".join(_ARTICLES.sub(" ", token).split())


def drop_normalize(span: str) -> str:
    return " ".join(t for t in (_drop_token(t) for t in re.split(" |-", span)) if t.strip()).strip()


def _bags(answer: str | list[str]) -> tuple[list[str], list[set[str]]]:
    spans = [drop_normalize(s) for s in ([answer] if isinstance(answer, str) else answer)]
    return spans, [set(s.split()) for s in spans]


def _bag_f1(pred: set[str], gold: set[str]) -> float:
    same = len(gold & pred)
    precision = same / len(pred) if pred else 1.0
    recall = same / len(gold) if gold else 1.0
    return 0.0 if precision == 0.0 and recall == 0.0 else 2 * precision * recall / (precision + recall)


def _numbers_match(gold: set[str], pred: set[str]) -> bool:
    gold_numbers = {w for w in gold if _is_number(w)}
    return not gold_numbers or bool(gold_numbers & {w for w in pred if _is_number(w)})


def _aligned_f1(pred: list[set[str]], gold: list[set[str]]) -> float:
    """Mean over max(#gold, #pred) of the span F1s under the best one-to-one alignment. The script
    uses scipy's linear_sum_assignment; every optimal alignment has the same total, so trying all
    alignments gives the same number (answers have a handful of spans)."""
    scores = [[_bag_f1(p, g) if _numbers_match(g, p) else 0.0 for p in pred] for g in gold]  # (G, P)
    n = max(len(gold), len(pred))
    if len(gold) <= len(pred):
        best = max(sum(scores[g][p] for g, p in enumerate(chosen)) for chosen in permutations(range(len(pred)), len(gold)))
    else:
        best = max(sum(scores[g][p] for p, g in enumerate(chosen)) for chosen in permutations(range(len(gold)), len(pred)))
    return best / n


def drop_scores(golds: list[str | list[str]], pred: str | list[str]) -> tuple[float, float]:
    """(exact match, F1), each the best over the gold answers (a gold answer: a span or a list of spans)."""
    pred_spans, pred_bags = _bags(pred)
    best_em = best_f1 = 0.0
    for gold in golds:
        raw = [gold] if isinstance(gold, str) else gold
        if not raw or not raw[0].strip():
            continue  # the script skips empty gold answers
        gold_spans, gold_bags = _bags(raw)
        em = float(set(pred_spans) == set(gold_spans) and len(pred_spans) == len(gold_spans))
        f1 = round(_aligned_f1(pred_bags, gold_bags), 2)
        best_em, best_f1 = max(best_em, em), max(best_f1, f1)
    return best_em, best_f1
