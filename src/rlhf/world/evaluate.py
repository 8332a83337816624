"""The world's judgments of responses, as the paper's section 4 makes them but with programs in
place of people: held-out labelers' preferences, the gold standard's score and metadata flags,
truthfulness and toxicity. Text in, numbers out: no model code (that is `rlhf.demo.measure`).
"""
from __future__ import annotations

from functools import lru_cache

from rlhf.data.rankings import ranking_pairs
from rlhf.world import language as L

PROMPTED_STOP = " question:"  # the few-shot format's next question: the baseline's stop sequence


def cut_at_stop(text: str, stop: str = PROMPTED_STOP) -> str:
    """A few-shot prompted base model goes on to write the next question and answer; an API
    user would set a stop sequence, so the baseline gets one (it can only help it)."""
    cut = (" " + text).find(stop)
    return text if cut < 0 else text[: max(cut - 1, 0)].strip()


def preferences(world, records: list[dict], texts_a: list[str], texts_b: list[str]) -> list[float]:
    """p(a preferred to b) per prompt, each prompt judged by one held-out labeler in turn, as
    each of the paper's comparisons was made by one labeler. Identical responses tie at 0.5."""
    judges = world.heldout_labelers
    return [0.5 if a == b else judges[i % len(judges)].judge(r, a, b)
            for i, (r, a, b) in enumerate(zip(records, texts_a, texts_b))]


def flag_rates(world, records: list[dict], texts: list[str], flags: tuple[str, ...]) -> dict[str, float]:
    """Figure 4's metadata rates under the gold standard. follows_constraints is a rate over the
    prompts that have explicit constraints only (the others do not set it)."""
    grades = [world.gold.grade(r, t) for r, t in zip(records, texts)]
    out = {}
    for flag in flags:
        values = [g.flags[flag] for g in grades if flag in g.flags]
        out[flag] = sum(values) / len(values) if values else float("nan")
    return out


def gold_scores(world, records: list[dict], texts: list[str]) -> list[float]:
    return [world.gold.grade(r, t).score for r, t in zip(records, texts)]


def gold_reward(records: list[dict], responses: list[str], seed: int = 0) -> list[float]:
    """gold_scores as `rlhf ppo reward_fn=rlhf.world.evaluate:gold_reward`: a perfect reward model, for the
    diagnostic of docs/demo.md (item 16). Records are the world's prompt records (seed 0 unless given), as the
    demo's prompt files hold them, `task` included."""
    for r in records:
        if "task" not in r:
            raise ValueError(f"prompt {r.get('id', '?')!r} has no 'task' field: gold_reward scores the embedded "
                             "world's prompt files only (data/ppo_train_prompts.jsonl of an `rlhf demo` run)")
    return gold_scores(_world(seed), records, responses)


@lru_cache(maxsize=4)
def _world(seed: int):
    from rlhf.world import World

    return World(seed)


def truthfulness(world, records: list[dict], texts: list[str]) -> dict[str, float]:
    """On false-premise and misconception questions (TruthfulQA's spirit): truthful = no claim
    that contradicts the facts or goes along with the premise; informative = also does the task."""
    grades = [world.gold.grade(r, t) for r, t in zip(records, texts)]
    truthful = [not g.flags["hallucination"] for g in grades]
    informative = [t and not g.flags["fails_instruction"] for t, g in zip(truthful, grades)]
    return {"truthful": _share(truthful), "truthful_informative": _share(informative)}


def is_toxic(world, record: dict, text: str) -> bool:
    """Insults, violence, sexual words or denigration of a group (RealToxicityPrompts' sense of toxic)."""
    flags = world.gold.grade(record, text).flags
    return bool(flags["violent"] or flags["sexual"] or flags["denigrates_protected_class"]
                or set(L.content_words(text)) & set(L.INSULTS))


def toxicity(world, records: list[dict], texts: list[str]) -> float:
    return _share([is_toxic(world, r, t) for r, t in zip(records, texts)])


def _share(values: list[bool]) -> float:
    return sum(values) / len(values) if values else float("nan")


def gold_accuracy(world, records_by_id: dict[str, dict], comparisons: list[dict]) -> float:
    """The same pairwise accuracy for the noise-free gold standard: the most any reward model
    can expect against these noisy labelers (two equally useless samples tie and count half)."""
    scores = [gold_scores(world, [records_by_id[c["prompt_id"]]] * len(c["responses"]), c["responses"])
              for c in comparisons]
    return pair_accuracy(comparisons, scores)


def pair_accuracy(comparisons: list[dict], scores: list[list[float]]) -> float:
    """Share of the rankings' (better, worse) pairs that `scores` (one list per ranking) order the same
    way; a tie of the scores counts half."""
    hits, pairs = 0.0, 0
    for c, s in zip(comparisons, scores):
        for better, worse in ranking_pairs([g if isinstance(g, list) else [g] for g in c["ranking"]]):
            hits += 1.0 if s[better] > s[worse] else 0.5 if s[better] == s[worse] else 0.0
            pairs += 1
    return hits / max(pairs, 1)
