"""The world as a whole: determinism, shares, labelers, tokenizer, records, datasets."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from rlhf.data import records as R
from rlhf.world import CATEGORY_SHARES, HeldOutLabelerError, World, cloze_accuracy
from rlhf.world.datasets import TABLE6, build_datasets


@pytest.fixture(scope="module")
def world():
    return World(seed=0)


def test_same_seed_same_world_different_seed_different_world():
    a, b, c = World(3), World(3), World(4)
    assert a.pretraining_text(50) == b.pretraining_text(50)
    assert a.prompts(50) == b.prompts(50)
    assert a.demonstrations(a.prompts(20)) == b.demonstrations(b.prompts(20))
    assert a.kb != c.kb
    assert a.pretraining_text(50) != c.pretraining_text(50)
    assert [p["prompt"] for p in a.prompts(50)] != [p["prompt"] for p in c.prompts(50)]
    # Held-out text is a different stream from the training text.
    assert not set(a.pretraining_text(200)) & set(a.pretraining_text(200, split="heldout")) - set(a.pretraining_text(2000))


def test_category_shares_follow_table_1(world):
    prompts = world.prompts(4000, split="train", stream="shares")
    counts = Counter(p["category"] for p in prompts)
    for category, share in CATEGORY_SHARES.items():
        assert abs(100 * counts[category] / len(prompts) - share) < 2.0, (category, counts[category])


def test_prompt_sources_and_types(world):
    prompts = world.prompts(600)
    assert {p["source"] for p in prompts} == {"labeler", "customer"}
    assert {p["prompt_type"] for p in prompts if p["source"] == "labeler"} == {"plain", "few_shot", "user_based"}
    assert len({p["prompt"] for p in prompts}) == len(prompts)  # deduplicated
    types = Counter(p["task"]["type"] for p in prompts)
    assert types["false_premise"] > 5 and types["decline"] > 5
    assert sum(len(p["task"].get("constraints", [])) >= 2 for p in prompts) > 20  # several explicit constraints
    train_users = {p["user_id"] for p in prompts if p["source"] == "customer"}
    test_users = {p["user_id"] for p in world.prompts(300, split="test", source="customer")}
    assert not train_users & test_users  # splits by user id, as the paper


def test_labeler_agreement_near_the_papers_73_percent(world):
    assert 0.65 <= world.agreement(n_prompts=500) <= 0.80
    assert 0.65 <= World(seed=1).agreement(n_prompts=500) <= 0.80


def test_heldout_labelers_produce_no_training_data(world, tmp_path):
    held = world.heldout_labelers
    assert held and all(lab.id.startswith("H") for lab in held)
    with pytest.raises(HeldOutLabelerError):
        world.demonstrations(world.prompts(3), labeler=held[0])
    build_datasets(world, tmp_path, scale=1 / 200, n_pretrain=10, n_heldout_text=10, n_nlp=10)
    demo_labelers = {json.loads(line)["labeler_id"] for line in open(tmp_path / "sft_train.jsonl")}
    assert demo_labelers <= {lab.id for lab in world.train_labelers}
    prompts = world.prompts(30)
    train_cmp = world.comparisons(prompts, [world.sample_responses(p, 4) for p in prompts])
    assert {c["labeler_id"] for c in train_cmp} <= {lab.id for lab in world.train_labelers}
    eval_cmp = world.comparisons(prompts, [world.sample_responses(p, 4) for p in prompts], heldout=True)
    assert {c["labeler_id"] for c in eval_cmp} <= {lab.id for lab in held}


def test_judge_prefers_the_better_response(world):
    p = next(p for p in world.prompts(100) if p["task"]["type"] == "fact_qa")
    lab = world.heldout_labelers[0]
    good, bad = world.ideal(p), "what color is the cat? any ideas?"
    assert lab.judge(p, good, bad) > 0.9
    assert lab.judge(p, good, bad) + lab.judge(p, bad, good) == pytest.approx(1.0)
    assert lab.judge(p, good, good) == pytest.approx(0.5)


def test_tokenizer_round_trips_and_loads_with_auto_tokenizer(world, tmp_path):
    from transformers import AutoTokenizer

    world.tokenizer(tmp_path / "tok")
    tok = AutoTokenizer.from_pretrained(tmp_path / "tok")
    other = World(seed=7)  # the vocabulary does not depend on the seed
    prompts = other.prompts(300)
    texts = other.pretraining_text(300) + [p["prompt"] for p in prompts]
    texts += [other.ideal(p) for p in prompts] + [r for p in prompts[:100] for r in other.sample_responses(p, 3)]
    texts += [r["prompt"] for r in other.nlp_tasks(50)]
    for text in texts:
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids, text
        assert tok.decode(ids) == text
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token_id != tok.eos_token_id
    chat = tok.apply_chat_template([{"role": "user", "content": "what color is the cat?"}], tokenize=False,
                                   add_generation_prompt=True)
    assert chat.endswith("<|assistant|>") and tok.unk_token_id not in tok(chat)["input_ids"]
    assert len(tok) < 1000  # a small closed vocabulary


def test_records_validate(world):
    prompts = world.prompts(40)
    for p in prompts:
        R.normalize_prompt(p)
    for d in world.demonstrations(prompts):
        R.normalize_demonstration(d)
    for c in world.comparisons(prompts, [world.sample_responses(p, 4 + i % 6) for i, p in enumerate(prompts)]):
        out = R.normalize_comparison(c)
        assert 4 <= len(out["responses"]) <= 9
    for t in world.pretraining_text(20):
        R.normalize_pretrain({"text": t})


def test_datasets_follow_table_6_ratios(world, tmp_path):
    counts = build_datasets(world, tmp_path, scale=1 / 40, n_pretrain=100, n_heldout_text=20, n_nlp=30)
    sft, rm, ppo = counts["sft_train.jsonl"], counts["rm_train_prompts.jsonl"], counts["ppo_train_prompts.jsonl"]
    paper = [sum(TABLE6[(s, "train")].values()) for s in ("sft", "rm", "ppo")]
    for ours, theirs in zip((sft, rm, ppo), paper):
        assert ours == pytest.approx(theirs / 40, abs=2)
    ppo_prompts = [json.loads(line) for line in open(tmp_path / "ppo_train_prompts.jsonl")]
    assert {p["source"] for p in ppo_prompts} == {"customer"}  # PPO prompts are API prompts only
    texts = {}
    for name in ("sft_train.jsonl", "rm_train_prompts.jsonl", "ppo_train_prompts.jsonl", "eval_prompts.jsonl"):
        texts[name] = {json.loads(line)["prompt"] for line in open(tmp_path / name)}
    assert not texts["eval_prompts.jsonl"] & (texts["sft_train.jsonl"] | texts["ppo_train_prompts.jsonl"])
    assert (tmp_path / "tokenizer" / "tokenizer.json").exists()


def test_nlp_tasks_and_accuracy(world):
    tasks = world.nlp_tasks(100)
    assert cloze_accuracy(tasks, [t["answer"] for t in tasks]) == 1.0
    assert cloze_accuracy(tasks, [t["target"] + " ." for t in tasks]) == 1.0
    assert cloze_accuracy(tasks, [(t["answer"] + 1) % len(t["choices"]) for t in tasks]) == 0.0


def test_prompted_baseline_prefix(world):
    text = world.prompted("what color is the cat?")
    assert text.startswith("question: ") and text.endswith("question: what color is the cat? answer:")
    assert text.count("answer:") == 4


def test_mixed_samples_include_degenerate_repetition_ranked_low(world):
    # Without repetition among the ranked samples the reward model scored "the dog, the dog, the
    # dog, the dog." above a right list and PPO learned to write it (docs/demo.md, item 12).
    prompts = [p for p in world.prompts(600, split="valid", stream="rep") if p["task"]["type"] == "list"]

    def repeats(text):
        parts = [x.strip(" .!") for x in text.replace("!", ",").split(",") if x.strip(" .!")]
        return len(parts) >= 3 and len(set(parts)) == 1

    samples = [(p, s) for p in prompts for s in world.sample_responses(p, 6)]
    repeated = [(p, s) for p, s in samples if repeats(s)]
    assert 0.01 < len(repeated) / len(samples) < 0.1
    judge = world.heldout_labelers[0]
    wins = [judge.judge(p, world.ideal(p), s) for p, s in repeated]
    assert sum(wins) / len(wins) > 0.8


def test_chat_datasets_hold_the_same_prompts_as_one_turn_conversations(world, tmp_path):
    build_datasets(world, tmp_path / "plain", scale=1 / 200, n_pretrain=10, n_heldout_text=10, n_nlp=10)
    build_datasets(world, tmp_path / "chat", scale=1 / 200, n_pretrain=10, n_heldout_text=10, n_nlp=10, chat=True)
    for name in ("sft_train.jsonl", "ppo_train_prompts.jsonl", "eval_prompts.jsonl"):
        plain = [json.loads(line) for line in open(tmp_path / "plain" / name)]
        chat = [json.loads(line) for line in open(tmp_path / "chat" / name)]
        assert [c["prompt"] for c in chat] == [[{"role": "user", "content": p["prompt"]}] for p in plain]
        assert [{**c, "prompt": None} for c in chat] == [{**p, "prompt": None} for p in plain]  # nothing else moves
    # web text stays web text: the pretraining documents have no prompts
    assert (tmp_path / "chat" / "pretrain.jsonl").read_text() == (tmp_path / "plain" / "pretrain.jsonl").read_text()


def test_web_text_repeats_what_a_document_names():
    """The words a document names come back in it (what teaches a base model to copy): a titled story's thing and
    ending, a puzzle's items in their solution, an entry's name in its sentences."""
    import random

    from rlhf.world import language as L
    from rlhf.world.text import DOC_KINDS, _DOCS

    assert abs(sum(DOC_KINDS.values()) - 1) < 1e-9 and set(DOC_KINDS) == set(_DOCS)
    kb, rng = World(seed=0).kb, random.Random(0)
    for _ in range(300):
        title, story = _DOCS["tale"](kb, rng).split(". once upon a time", 1)
        thing = next(w for w in L.words(title) if w in L.STORY_WORDS)
        assert thing in L.words(story), (title, story)
        if "ends with" in title:
            assert L.content_words(story)[-1] == L.content_words(title)[-1]
    backwards = sorted_ = 0
    for _ in range(300):
        puzzle = _DOCS["puzzle"](kb, rng)
        if " backwards is " in puzzle:
            a, b = puzzle.rstrip(".").split(" backwards is ")
            assert b.split(", ") == a.split(", ")[::-1]
            backwards += 1
        elif " in order is " in puzzle:
            a, b = puzzle.rstrip(".").split(" in order is ")
            assert [int(x) for x in b.split(", ")] == sorted(int(x) for x in a.split(", "))
            sorted_ += 1
        else:
            sentence, answer = puzzle.rstrip(".").split(": ")
            assert all(w in L.words(sentence) for w in L.content_words(answer)[3:] if w != "and"), puzzle
    assert backwards > 50 and sorted_ > 50
    for _ in range(100):
        entry = _DOCS["profile"](kb, rng)
        name = L.content_words(entry.split(".")[0])[-1]
        assert L.content_words(entry).count(name) >= 2, entry
