"""The embedded default world: a small language, its facts, users, labelers and a
gold standard of preference, all deterministic from one seed (docs/world.md).

    from rlhf.world import World
    w = World(seed=0)
    tok = w.tokenizer("out/tokenizer")
    docs = w.pretraining_text(2000)
    prompts = w.prompts(300, split="train")
    demos = w.demonstrations(prompts)
    score, flags = w.gold(prompts[0], "the bear is brown.")
    comparison = w.rank(prompts[0], ["...", "...", "...", "..."], w.train_labelers[0])
"""

from __future__ import annotations

import random
from functools import cached_property

from rlhf.world import language as L
from rlhf.world.gold import GoldStandard, Grade
from rlhf.world.knowledge import KnowledgeBase
from rlhf.world.labelers import HeldOutLabelerError, Labeler, agreement, make_labelers
from rlhf.world.prompts import few_shot, make_prompts
from rlhf.world.responses import ideal_response, sample_response
from rlhf.world.tasks import CATEGORY_SHARES, sample_task
from rlhf.world.text import cloze_accuracy, cloze_tasks, document

__all__ = ["World", "Grade", "Labeler", "HeldOutLabelerError", "CATEGORY_SHARES", "cloze_accuracy"]


class World:
    def __init__(self, seed: int = 0):
        self.seed = seed
        self.kb = KnowledgeBase.sample(self._rng("kb"))
        self.gold = GoldStandard(self.kb)
        self.labelers = make_labelers(self.gold, seed)

    def _rng(self, *purpose) -> random.Random:
        # A separate, named stream per purpose: adding one dataset never shifts another.
        return random.Random("/".join(map(str, (self.seed, *purpose))))

    @property
    def train_labelers(self) -> list[Labeler]:
        return [lab for lab in self.labelers if not lab.held_out]

    @property
    def heldout_labelers(self) -> list[Labeler]:
        return [lab for lab in self.labelers if lab.held_out]

    def labeler(self, labeler_id: str) -> Labeler:
        return next(lab for lab in self.labelers if lab.id == labeler_id)

    # -- language ---------------------------------------------------------------------
    def tokenizer(self, out_dir=None):
        """The word-level tokenizer (saved to `out_dir` if given). The same for
        every seed: the vocabulary depends on the language, not on the facts."""
        return L.build_tokenizer(vocabulary(), out_dir)

    def pretraining_text(self, n: int, split: str = "train") -> list[str]:
        """`n` documents (one line each); split "heldout" is an independent stream."""
        rng = self._rng("pretrain", split)
        return [document(self.kb, rng) for _ in range(n)]

    # -- prompts and answers --------------------------------------------------------------
    def prompts(self, n: int, split: str = "train", source: str | None = None,
                exclude: set[str] | None = None, stream: str = "") -> list[dict]:
        """`n` distinct prompt records of users in `split` (train, valid, test)."""
        rng = self._rng("prompts", split, source, stream)
        ids = [lab.id for lab in self.train_labelers]
        return make_prompts(self.kb, rng, n, split, ids, source=source, exclude=exclude,
                            id_prefix=f"p{stream}" if stream else "p")

    def demonstrations(self, prompts: list[dict], labeler: Labeler | None = None) -> list[dict]:
        """Demonstration records; each prompt goes to `labeler` or, if None, to the
        training labelers in turn. Held-out labelers raise HeldOutLabelerError."""
        rng = self._rng("demos", labeler.id if labeler else "all", len(prompts))
        out = []
        for i, record in enumerate(prompts):
            lab = labeler or self.train_labelers[i % len(self.train_labelers)]
            out.append({
                "prompt": record["prompt"], "response": lab.demonstrate(record, rng), "labeler_id": lab.id,
                "prompt_id": record.get("id"), "category": record.get("category"), "task": record["task"],
            })
        return out

    def rank(self, prompt_record: dict, responses: list[str], labeler: Labeler, nonce: int = 0) -> dict:
        """A comparison record: `labeler` ranks the K responses (noise seeded by
        the prompt id, labeler and `nonce`, so the same call gives the same ranking)."""
        rng = self._rng("rank", labeler.id, prompt_record.get("id"), nonce, len(responses))
        return labeler.rank(prompt_record, responses, rng)

    def comparisons(self, prompts: list[dict], responses: list[list[str]], heldout: bool = False) -> list[dict]:
        """One comparison per prompt, ranked by training labelers in turn (or by
        held-out labelers, for evaluation only)."""
        pool = self.heldout_labelers if heldout else self.train_labelers
        return [self.rank(p, r, pool[i % len(pool)]) for i, (p, r) in enumerate(zip(prompts, responses))]

    def ideal(self, prompt_record: dict, style: float = 1.0) -> str:
        return ideal_response(self.kb, prompt_record["task"], self._rng("ideal", prompt_record.get("id")), style)

    def sample_responses(self, prompt_record: dict, k: int, nonce: int = 0) -> list[str]:
        """K responses of mixed quality, like samples from a mediocre model."""
        rng = self._rng("samples", prompt_record.get("id"), nonce)
        return [sample_response(self.kb, prompt_record["task"], rng) for _ in range(k)]

    def agreement(self, n_prompts: int = 400, k: int = 6) -> float:
        """Measured pairwise agreement of training labelers on typical samples."""
        return agreement(self.prompts(n_prompts, split="valid", stream="agree"), self.train_labelers, self.seed, k)

    # -- baselines and public tasks -------------------------------------------------------
    @cached_property
    def few_shot_examples(self) -> list[tuple[str, str]]:
        """Three worked examples from different categories for the GPT-prompted baseline."""
        rng = self._rng("few_shot")
        out = []
        for category in ("open_qa", "brainstorming", "generation"):
            task = sample_task(self.kb, category, rng)
            while task["type"] in ("decline", "false_premise"):
                task = sample_task(self.kb, category, rng)
            out.append((task["instruction"], ideal_response(self.kb, task, rng, 1.0)))
        return out

    def prompted(self, prompt: str | list) -> str:
        """`prompt` behind the few-shot prefix that puts a base model in
        instruction-following mode (the paper's "GPT prompted" baseline)."""
        if isinstance(prompt, list):
            prompt = prompt[-1]["content"]
        return few_shot(self.kb, prompt, self.few_shot_examples)

    def nlp_tasks(self, n: int, split: str = "test") -> list[dict]:
        return cloze_tasks(self.kb, self._rng("nlp", split), n)


def vocabulary() -> set[str]:
    """Every word world text can contain: the lexicon plus the words of a large
    fixed sample of everything the world writes (templates are not listed twice)."""
    global _VOCAB
    if _VOCAB is None:
        words = set(L.lexicon())
        for seed in range(3):
            w = World.__new__(World)
            w.seed, w.kb = seed, KnowledgeBase.sample(random.Random(f"vocab/{seed}"))
            rng = random.Random(f"vocab/{seed}/text")
            texts = [document(w.kb, rng) for _ in range(3000)]
            for record in make_prompts(w.kb, rng, 2000, "train", ["L01"]):
                texts.append(record["prompt"])
                texts.append(ideal_response(w.kb, record["task"], rng, rng.random()))
                texts += [sample_response(w.kb, record["task"], rng) for _ in range(3)]
            texts += [r["prompt"] for r in cloze_tasks(w.kb, rng, 200)]
            words.update(t for text in texts for t in L.content_words(text))
        _VOCAB = words
    return _VOCAB


_VOCAB: set[str] | None = None
