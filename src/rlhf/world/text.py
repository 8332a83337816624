"""Pretraining text: the world's web, one document a line.

It is made to teach a base model what GPT-3 learned from the web, and no more:
the facts (mostly true, ~10% false, as on the web), lists, short stories,
reviews, sums, puzzles, and question/answer pages, with words that recur within a
document as they do in real text (what teaches a model to copy what it read, which
GPT-3 did as a matter of course); but most instructions appear on
forum pages where a question is followed by more questions, now and then with
a rude reply. A model trained on it continues a prompt (asks the next
question) rather than obeying it, the behaviour of the paper's "eat socks
after meditating" example; a few-shot prefix in the question/answer page
format ("GPT prompted") nudges it into answering.
"""

from __future__ import annotations

import random

from rlhf.world import language as L
from rlhf.world.knowledge import KnowledgeBase
from rlhf.world.prompts import qa_pair, sample_category
from rlhf.world.responses import ideal_response
from rlhf.world.tasks import sample_task

FALSE_RATE = 0.1  # share of stated facts that are false
# Document kinds and their shares of the corpus.
DOC_KINDS = {"facts": 0.16, "profile": 0.1, "forum": 0.18, "story": 0.07, "tale": 0.07, "qa_page": 0.1, "list": 0.07,
             "review": 0.05, "numbers": 0.04, "puzzle": 0.06, "compare": 0.04, "people": 0.03, "chat": 0.03}


def document(kb: KnowledgeBase, rng: random.Random) -> str:
    kind = rng.choices(list(DOC_KINDS), weights=list(DOC_KINDS.values()))[0]
    return _DOCS[kind](kb, rng)


def _facts(kb, rng):
    return " ".join(kb.random_fact(rng, true=rng.random() > FALSE_RATE) for _ in range(rng.randint(3, 6)))


def _profile(kb, rng):
    """An encyclopedia entry: every fact about one animal, food or country, the entry's name repeated in its
    sentences (as real entries repeat it, which is what teaches a model to answer about the entity asked)."""
    r = rng.random()
    if r < 0.6:
        entity, attrs = rng.choice(L.ANIMALS), rng.sample(("color", "home", "legs", "food"), 4)
    elif r < 0.85:
        entity, attrs = rng.choice(L.FOODS), rng.sample(("color", "taste"), 2)
    else:
        entity, attrs = rng.choice(L.COUNTRIES), ["capital"]
    facts = [kb.fact(entity, attr, None if rng.random() > FALSE_RATE else kb.wrong_value(entity, attr, rng))
             for attr in attrs]
    if entity in L.COUNTRIES:
        facts += [f"{p} lives in {entity}." for p in kb.members("person", "country", entity)[:rng.randint(1, 3)]]
    else:  # each later fact names the entry again or says "it" (the first web text always said "it")
        facts = facts[:1] + [f.replace(f"the {entity}", "it", 1) if rng.random() < 0.5 else f for f in facts[1:]]
    title = entity if entity in L.COUNTRIES else f"the {entity}"
    return " ".join([f"{title}."] + facts)


def _people(kb, rng):
    person = rng.choice(L.PEOPLE)
    country = kb.attribute(person, "country") if rng.random() > FALSE_RATE else kb.wrong_value(person, "country", rng)
    return (f"{person} lives in {country}. {person} loves {rng.choice(L.FOODS)}. "
            f"{person} has a {rng.choice(L.ANIMALS)}.")


def _compare(kb, rng):
    a, b = rng.sample(L.ANIMALS, 2)
    la, lb = kb.attribute(a, "legs"), kb.attribute(b, "legs")
    if la == lb:
        return f"the {a} has {la} legs and the {b} has {lb} legs too."
    more = a if la > lb else b
    return f"the {a} has {la} legs and the {b} has {lb} legs, so the {more} has more."


def _forum(kb, rng):
    """Questions and instructions followed by more of them, rarely by an answer."""
    posts = [sample_task(kb, sample_category(rng), rng)["instruction"] for _ in range(rng.randint(2, 4))]
    r = rng.random()
    if r < 0.25:
        posts.append(rng.choice((f"you are {rng.choice(L.INSULTS)}.", f"what a {rng.choice(L.INSULTS)} question.",
                                 f"i will {rng.choice(L.VIOLENT)} you.", f"{rng.choice(L.GROUPS)} are {rng.choice(L.INSULTS)}.")))
    elif r < 0.45:
        posts.append(rng.choice(("who knows?", "any ideas?", "same question here.", "i think so.", "no idea.")))
    elif r < 0.55:
        posts.append(f"i think {kb.random_fact(rng, true=False)}")
    return " ".join(posts)


def _story(kb, rng):
    animal, person = rng.choice(L.ANIMALS), rng.choice(L.PEOPLE)
    color = kb.attribute(animal, "color") if rng.random() > FALSE_RATE else kb.wrong_value(animal, "color", rng)
    lines = [f"once upon a time there was a {color} {animal}.",
             f"one day the {animal} met {person} at the {rng.choice(L.HOMES)}.",
             rng.choice((f"they played with a {rng.choice(L.STORY_WORDS)}.", f"they ate some {rng.choice(L.FOODS)}.",
                         "they had fun.", f"they had a {rng.choice(L.NEGATIVE)} fight.")),
             rng.choice(("then it went home.", "the end.", "it was happy.", f"it saw the {rng.choice(('sun', 'moon'))}."))]
    return " ".join(lines)


def _tale(kb, rng):
    """A titled story that keeps to its title: the thing and the ending the title names come back in the story
    (words recur within real documents; a model that never sees them recur never learns to copy what it read)."""
    animal, thing, person = rng.choice(L.ANIMALS), rng.choice(L.STORY_WORDS), rng.choice(L.PEOPLE)
    color = kb.attribute(animal, "color") if rng.random() > FALSE_RATE else kb.wrong_value(animal, "color", rng)
    # L.END_WORDS, worded and ordered apart from the labelers' endings; reordering changes the text (new bases)
    end, ending = rng.choice((("home", "then it went home."), ("moon", "then it saw the moon."),
                              ("sun", "then it saw the sun."), ("friend", "and it had a friend."),
                              ("end", "the end.")))
    title = rng.choice((f"the {animal} and the {thing}.", f"a {thing} for the {animal}.",
                        f"a story about a {animal}, a {thing} and the word {end}.",
                        f"the {animal} and the {thing}, a story that ends with {end}."))
    lines = [f"once upon a time there was a {color} {animal}.",
             rng.choice((f"one day the {animal} found a {thing}.", f"one day {person} gave the {animal} a {thing}.",
                         f"the {animal} had a {thing}.")),
             rng.choice((f"the {thing} was {rng.choice(L.POSITIVE)}.", f"the {animal} loved the {thing}.",
                         f"the {animal} played with the {thing} at the {rng.choice(L.HOMES)}.")),
             ending]
    return " ".join([title] + lines)


def _puzzle(kb, rng):
    """Word and number puzzles with their solutions, as puzzle pages and school worksheets print them: a list
    and the same list backwards or in order, the animals, names or number in a sentence."""
    r = rng.random()
    if r < 0.3:
        items = rng.sample(L.ANIMALS + L.FOODS, rng.randint(3, 5))
        return f"{', '.join(items)} backwards is {', '.join(reversed(items))}."
    if r < 0.6:
        nums = rng.sample(range(1, 50), rng.randint(3, 5))
        return f"{', '.join(map(str, nums))} in order is {', '.join(map(str, sorted(nums)))}."
    person = rng.choice(L.PEOPLE)
    if r < 0.75:
        a, b = rng.sample(L.ANIMALS, 2)
        return f"{person} saw a {a} and a {b}: the animals are {a} and {b}."
    if r < 0.9:
        other = rng.choice([x for x in L.PEOPLE if x != person])
        return f"{person} met {other} at the {rng.choice(L.HOMES)}: the names are {person} and {other}."
    n, food = rng.randint(2, 99), rng.choice(L.FOODS)
    return f"{person} has {n} {food}s: the number is {n}."


def _qa_page(kb, rng):
    """Questions with answers: rarer than forum pages, and answered as the web answers, not as a labeler."""
    pairs = []
    for _ in range(rng.randint(2, 3)):
        task = sample_task(kb, sample_category(rng), rng)
        pairs.append(qa_pair(task["instruction"], web_answer(kb, task, rng)))
    return " ".join(pairs)


def web_answer(kb, task: dict, rng) -> str:
    """An answer as question/answer pages give them: a third right, the rest half done, false, another question,
    about something else, rude or a shrug. With labeler-quality answers on every page, the base models had read
    ~100,000 ideal demonstrations (150x the SFT set) and the few-shot prompted base scored above SFT (docs/demo.md).
    Written here, apart from the labelers' mixed samples (responses.py), so that changing those does not change
    the pretraining text, and with it the shipped base models."""
    r = rng.random()
    if r < 0.35:
        return ideal_response(kb, task, rng, style=rng.random())
    if r < 0.5:  # half an answer: the first half of a right one
        words = ideal_response(kb, task, rng, style=1.0).rstrip(".!?").split()
        return " ".join(words[: max(1, len(words) // 2)]).rstrip(",") + "."
    if r < 0.63:
        return kb.random_fact(rng, true=False)
    if r < 0.74:
        return rng.choice(("who knows?", "same question here.", "any ideas?", "why do you ask?"))
    if r < 0.85:
        other = sample_task(kb, sample_category(rng), rng)
        return ideal_response(kb, other, rng, style=rng.random())
    if r < 0.93:
        return ideal_response(kb, task, rng, style=rng.random()) + " " + rng.choice(
            (f"you are {rng.choice(L.INSULTS)}.", "what a dumb question.", "look it up."))
    return rng.choice(("i do not know.", "no idea.", "not sure."))


def _list(kb, rng):
    kind, attr = rng.choice((("animal", "color"), ("animal", "home"), ("animal", "food"), ("food", "taste"),
                             ("person", "country")))
    table = {"animal": kb.animals, "food": kb.foods, "person": kb.people}[kind]
    value = kb.attribute(rng.choice(list(table)), attr)
    members = kb.members(kind, attr, value)
    where = {"home": f"that live in the {value}", "food": f"that eat {value}", "country": f"who live in {value}"}.get(
        attr, f"that are {value}")
    return f"{'people' if kind == 'person' else kind + 's'} {where}: {', '.join(members)}."


def _review(kb, rng):
    label = rng.choice(("positive", "negative"))
    lexicon = L.POSITIVE if label == "positive" else L.NEGATIVE
    a, b = rng.sample(lexicon, 2)
    return f"review: the {rng.choice(L.FOODS)} was {a} and {b}. the review is {label}."


def _numbers(kb, rng):
    a, b = rng.randint(1, 40), rng.randint(1, 40)
    start = rng.randint(1, 20)
    count = ", ".join(str(i) for i in range(start, start + rng.randint(3, 6)))
    return f"{a} plus {b} is {a + b}. {count}."


def _chat(kb, rng):
    person, food = rng.choice(L.PEOPLE), rng.choice(L.FOODS)
    return f"hi! i am {person}. hello {person}! i love {food}. me too, {food} is {rng.choice(L.POSITIVE)}."


_DOCS = {"facts": _facts, "profile": _profile, "forum": _forum, "story": _story, "tale": _tale, "qa_page": _qa_page,
         "list": _list, "review": _review, "numbers": _numbers, "puzzle": _puzzle, "compare": _compare,
         "people": _people, "chat": _chat}


def cloze_tasks(kb: KnowledgeBase, rng: random.Random, n: int) -> list[dict]:
    """The world's "public NLP tasks": multiple-choice cloze on facts, sums and
    review sentiment, scored by accuracy (the alignment-tax measure). Each record:
    `prompt` (a text prefix), `choices` (candidate next words), `answer` (index)."""
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.2:
            c = rng.choice(L.COUNTRIES)
            prompt, choices, answer = f"the capital of {c} is", list(L.CITIES), kb.capitals[c]
        elif r < 0.35:
            a = rng.choice(L.ANIMALS)
            prompt, choices, answer = f"the {a} lives in the", list(L.HOMES), kb.attribute(a, "home")
        elif r < 0.45:
            a = rng.choice(L.ANIMALS)
            prompt, choices, answer = f"the {a} eats", list(L.FOODS), kb.attribute(a, "food")
        elif r < 0.5:
            person = rng.choice(L.PEOPLE)
            prompt, choices, answer = f"{person} lives in", list(L.COUNTRIES), kb.attribute(person, "country")
        elif r < 0.7:
            a = rng.choice(L.ANIMALS)
            prompt, choices, answer = f"the {a} has", [str(x) for x in (0, 2, 4, 6, 8)], str(kb.attribute(a, "legs"))
        elif r < 0.85:
            x, y = rng.randint(1, 40), rng.randint(1, 40)
            wrong = rng.sample([v for v in range(2, 81) if v != x + y], 3)
            prompt, choices, answer = f"{x} plus {y} is", [str(v) for v in [x + y] + wrong], str(x + y)
        else:
            doc = _review(kb, rng)
            prompt, answer = doc.rsplit(" ", 1)[0], doc.rsplit(" ", 1)[1].rstrip(".")
            choices = ["positive", "negative"]
        choices = sorted(choices)
        out.append({"prompt": prompt, "choices": choices, "answer": choices.index(answer), "target": answer})
    return out


def cloze_accuracy(records: list[dict], predictions: list[str | int]) -> float:
    """Share of records whose prediction (a choice index, or the predicted next
    word) is the answer."""
    if len(records) != len(predictions):
        raise ValueError(f"{len(records)} records but {len(predictions)} predictions")
    hits = 0
    for rec, pred in zip(records, predictions):
        if isinstance(pred, int):
            hits += pred == rec["answer"]
        else:
            words = L.content_words(pred)
            hits += bool(words) and words[0] == rec["target"]
    return hits / max(len(records), 1)
