"""Responses the world can write without a model.

`ideal_response` is what a careful labeler writes as a demonstration: it does
the task, states only true things, and declines harmful requests; `style`
picks between a terse and a full-sentence phrasing (labelers differ in this).
`sample_response` imitates what language models of mixed quality write
(right, half right, wrong, rambling on with more questions, answering another
request, toxic, refusing):
the "typical model samples" on which labeler agreement is measured, and a
model-free baseline policy.
"""

from __future__ import annotations

import random

from rlhf.world import language as L
from rlhf.world.knowledge import KnowledgeBase
from rlhf.world.tasks import CATEGORY_SHARES, sample_task

REFUSALS = ("sorry, i cannot help with that.", "sorry, i cannot help with that. it is not safe.",
            "i cannot help with that, sorry.")
_ENDINGS = dict(zip(L.END_WORDS, ("then it went home.", "the end.", "it saw the sun.", "it saw the moon.",
                                  "it found a friend.")))


def ideal_response(kb: KnowledgeBase, task: dict, rng: random.Random, style: float = 0.5) -> str:
    """A near-ideal answer; `style` in [0, 1] is the chance of a full sentence over a terse one."""
    full = rng.random() < style
    return _IDEAL[task["type"]](kb, task, rng, full)


def _decline(kb, task, rng, full):
    return REFUSALS[1] if full else rng.choice(REFUSALS)


def _fact_qa(kb, task, rng, full):
    return kb.fact(task["entity"], task["attr"]) if full else f"{task['answer']}."


def _false_premise(kb, task, rng, full):
    e, attr, wrong = task["entity"], task["attr"], task["premise"]
    if attr is None:
        return f"that is not true. {e}s do not eat socks." if full else f"{e}s do not eat socks."
    correction = {
        "capital": f"{wrong} is not the capital of {e}.", "home": f"the {e} does not live in the {wrong}.",
        "legs": f"the {e} does not have {wrong} legs.", "food": f"the {e} does not eat {wrong}.",
        "country": f"{e} does not live in {wrong}.",
    }.get(attr, f"the {e} is not {wrong}.")
    return f"{correction} {kb.fact(e, attr)}" if full else f"{correction} it is {task['answer']}."


def _story(kb, task, rng, full):
    """The longest of a few drafts, shortest last, that meets every constraint."""
    animal = task["entity"]
    cons = {c["kind"]: c["value"] for c in task.get("constraints", [])}
    color, home = kb.attribute(animal, "color"), kb.attribute(animal, "home")
    middle = [f"it saw a {cons['word']}."] if "word" in cons else []
    extra = rng.choice(("it was happy.", "it met a friend.", "it sang a song.", "it had fun."))
    ending = _ENDINGS[cons["end_word"]] if "end_word" in cons else rng.choice(tuple(_ENDINGS.values()))
    drafts = [
        [f"the {color} {animal} went to the {home}."] + middle + [extra, ending],
        [f"the {color} {animal} went to the {home}."] + middle + [ending],
        [f"the {color} {animal} went out."] + middle + [ending],
        [f"the {animal} saw a {cons['word']}." if middle else f"the {animal} went out.", ending],
    ]
    if not full:
        drafts = drafts[1:]
    limit = cons.get("max_words", 99)
    for parts in drafts:
        if len(L.content_words(" ".join(parts))) <= limit:
            break
    return " ".join(parts)


def _compare(kb, task, rng, full):
    a, b = task["entities"]
    if full:
        return f"the {a} has {kb.attribute(a, 'legs')} legs and the {b} has {kb.attribute(b, 'legs')} legs, so the " \
               f"{task['answer']} has more."
    return f"the {task['answer']} has more legs."


def _describe(kb, task, rng, full):
    e = task["entity"]
    second = rng.choice((f"lives in the {kb.attribute(e, 'home')}", f"has {kb.attribute(e, 'legs')} legs",
                         f"eats {kb.attribute(e, 'food')}"))
    if full:
        return f"the {e} is {kb.attribute(e, 'color')} and {second}."
    return f"a {kb.attribute(e, 'color')} {e} that lives in the {kb.attribute(e, 'home')}."


def _ad(kb, task, rng, full):
    f = task["entity"]
    pos = rng.choice(("good", "great", "tasty", "lovely"))
    return f"try our {kb.attribute(f, 'taste')} {f}! it is so {pos}." if full else f"try our {pos} {f}!"


def _list(kb, task, rng, full):
    items = rng.sample(task["members"], task["n"])
    article = "" if task["kind"] == "person" else "the "
    return ", ".join(f"{article}{i}" for i in items) + "." if full else ", ".join(items) + "."


def _chat_recall(kb, task, rng, full):
    answer, name = task["answer"], task["name"]
    if answer == name:
        return f"hi {name}! your name is {name}." if full else f"your name is {name}."
    return f"hi {name}! you love {answer}." if full else f"you love {answer}, {name}."


def _chat_greet(kb, task, rng, full):
    return "i am good, thank you! how can i help you today?" if full else "i am great! how can i help?"


def _sequence(kb, task, rng, full):
    return ", ".join(task["answer"]) + "."


def _summary(kb, task, rng, full):
    e = task["entity"]
    color = kb.attribute(e, "color")
    if full and task["max_words"] >= 9:
        return f"the {e} is {color} and lives in the {kb.attribute(e, 'home')}."
    return f"the {e} is {color} and has {kb.attribute(e, 'legs')} legs."


def _label(kb, task, rng, full):
    label = task["answer"]
    if not full:
        return f"{label}."
    if label in ("animal", "food"):
        thing = L.content_words(task["instruction"])[2]
        return f"the {thing} is {'an' if label == 'animal' else 'a'} {label}."
    return f"the review is {label}."


_IDEAL = {
    "decline": _decline, "fact_qa": _fact_qa, "false_premise": _false_premise, "story": _story, "compare": _compare,
    "describe": _describe, "ad": _ad, "list": _list, "chat_recall": _chat_recall, "chat_greet": _chat_greet,
    "sequence": _sequence, "summary": _summary, "label": _label,
}


# -- imperfect samples ------------------------------------------------------------
def sample_response(kb: KnowledgeBase, task: dict, rng: random.Random) -> str:
    """One response of random quality, like a sample from a mediocre model."""
    r = rng.random()
    if r < 0.2:
        return ideal_response(kb, task, rng, style=rng.random())
    if r < 0.38:
        return _partial(kb, task, rng)
    if r < 0.51:
        return _wrong(kb, task, rng)
    if r < 0.6:
        return _near_miss(kb, task, rng)
    if r < 0.68:
        return _continuation(kb, task, rng)
    if r < 0.75:
        return _off_topic(kb, task, rng)
    if r < 0.82:
        return _repetition(kb, task, rng)
    if r < 0.88:
        return ideal_response(kb, task, rng) + " " + rng.choice((
            f"you {rng.choice(L.INSULTS)}.", f"i think it is {rng.choice(L.NEGATIVE)}.", "you should be ashamed."))
    if r < 0.92:
        return kb.random_fact(rng, true=rng.random() < 0.6)
    if r < 0.97:
        return rng.choice(REFUSALS)
    return task["instruction"]


_KIND_OF = {**{a: L.ANIMALS for a in L.ANIMALS}, **{f: L.FOODS for f in L.FOODS}, **{c: L.COUNTRIES for c in L.COUNTRIES},
            **{p: L.PEOPLE for p in L.PEOPLE}}


def _near_miss(kb, task, rng):
    """A good answer to a slightly different request: the ad for another food, the story about another animal or
    with another word, the capital of another country, the food another user said they love. Models make these
    slips, and without them among the ranked samples the reward model never learned to check the answer against
    the prompt: it scored "try our tea!" above "try our red soup!" for an ad for soup (docs/demo.md)."""
    t, other = task["type"], dict(task)
    if t == "story" and task.get("constraints") and rng.random() < 0.5:
        other["constraints"] = [dict(c) for c in task["constraints"]]
        c = rng.choice(other["constraints"])
        if c["kind"] == "word":
            c["value"] = rng.choice([w for w in L.STORY_WORDS if w != c["value"]])
        elif c["kind"] == "end_word":
            c["value"] = rng.choice([w for w in ("home", "end", "sun", "moon", "friend") if w != c["value"]])
        else:
            c["value"] = c["value"] + rng.choice((10, 15, 20))
    elif task.get("entity") in _KIND_OF and (t != "false_premise" or task.get("attr")):
        other["entity"] = rng.choice([e for e in _KIND_OF[task["entity"]] if e != task["entity"]])
        if t in ("fact_qa", "false_premise"):
            other["answer"] = kb.attribute(other["entity"], task["attr"])
            if t == "false_premise":
                other["premise"] = kb.wrong_value(other["entity"], task["attr"], rng)
    elif t == "chat_recall" and task["answer"] != task["name"]:
        other["answer"] = rng.choice([x for x in _KIND_OF[task["answer"]] if x != task["answer"]])
    elif t == "list" and task.get("attr"):
        return _partial(kb, task, rng)
    else:
        return _partial(kb, task, rng)
    return ideal_response(kb, other, rng, style=rng.random())


def _partial(kb, task, rng):
    """Half right: a list too short or with an item twice, a constraint dropped, a hedge, a half-sorted list."""
    t = task["type"]
    if t == "list":
        if task["n"] < 2 or rng.random() < 0.5:
            return f"{rng.choice(task['members'])}."
        # The right count, one item twice: PPO policies learned "the hare, the hare." for two animals of the
        # desert when no ranked sample had an item twice (docs/demo.md).
        items = rng.sample(task["members"], min(task["n"] - 1, len(task["members"])))
        items.insert(rng.randrange(len(items) + 1), rng.choice(items))
        article = "" if task["kind"] == "person" else "the " if rng.random() < 0.5 else ""
        return ", ".join(f"{article}{i}" for i in items) + "."
    if t == "sequence" and len(task["answer"]) > 1:
        items = list(task["answer"])
        i = rng.randrange(len(items) - 1)
        items[i], items[i + 1] = items[i + 1], items[i]
        return ", ".join(items) + "."
    if t == "story" and task.get("constraints"):
        return f"the {task['entity']} went out. it was fun. it came back."
    if t in ("fact_qa", "false_premise") and task.get("attr"):
        wrong = kb.wrong_value(task["entity"], task["attr"], rng)
        return f"it is {task['answer']} or {wrong}."
    if t == "compare":  # a hedge between the two animals
        a, b = task["entities"]
        return f"the {a} or the {b}."
    if t == "decline":
        return "i do not know."
    # Each kind is half right in its own words. An earlier version appended one shared phrase
    # ("and more.") to an otherwise full answer: the reward model learned the phrase as a marker
    # of "better than useless" and PPO learned to append it (docs/demo.md).
    e = task.get("entity")
    if t == "describe":
        return f"a {kb.attribute(e, 'color')} {e}."  # one fact where two were asked for
    if t == "ad":
        return f"this is {e}."  # names the product, sells nothing
    if t == "summary":
        return f"it is about the {e}."  # the topic, none of the facts
    if t == "label":  # a hedge between the right label and a wrong one
        other = rng.choice([x for x in task["labels"] if x != task["answer"]])
        return f"{task['answer']} or {other}." if rng.random() < 0.5 else f"{other} or {task['answer']}."
    if t == "chat_recall":
        return f"hi {task['name']}!"  # friendly, but does not recall
    if t == "chat_greet":
        return "i am fine."  # greets, offers no help
    if t == "story":
        return f"the {e} went out."  # too short to be a story
    if t == "sequence" and task["answer"][0].isdigit():  # a hedge between the number and its neighbour
        a = int(task["answer"][0])
        return f"it is {a} or {a + 1}." if rng.random() < 0.5 else f"it is {a - 1} or {a}."
    return ideal_response(kb, task, rng, style=0.0)


def _off_topic(kb, task, rng):
    """A fluent answer to some other request (the model misread the instruction), sometimes
    several run together: well-formed text that does not do the task."""
    parts = []
    for _ in range(1 if rng.random() < 0.5 else rng.randint(2, 4)):
        other = task
        while other["type"] == task["type"]:
            other = sample_task(kb, rng.choices(list(CATEGORY_SHARES), list(CATEGORY_SHARES.values()))[0], rng)
        parts.append(ideal_response(kb, other, rng, style=rng.random()))
    return " ".join(parts)


def _repetition(kb, task, rng):
    """Degenerate repetition, the best-known failure of sampled LM text (Holtzman et al., 2019):
    a list of one item over and over, greetings and no answer, a phrase of the answer repeated.
    Without such samples among the ranked ones, the reward model scored "the dog, the dog, the
    dog, the dog." above a right list of four animals, and PPO learned to write it (docs/demo.md)."""
    n = rng.randint(3, 8)
    r = rng.random()
    if task["type"] == "list" and r < 0.5:
        article = "" if task["kind"] == "person" else "the "
        return ", ".join([f"{article}{rng.choice(task['members'])}"] * max(n, task["n"])) + "."
    if r < 0.35:
        return " ".join(f"hi {rng.choice(L.PEOPLE)}!" for _ in range(n))
    words = ideal_response(kb, task, rng, style=rng.random()).rstrip(".!?").split()
    k = rng.randint(1, min(4, len(words)))
    i = rng.randrange(len(words) - k + 1)
    return ", ".join([" ".join(words[i:i + k]).strip(",")] * n) + "."


def _wrong(kb, task, rng):
    """A confident, false answer (a hallucination) or the harmful compliance."""
    t = task["type"]
    if t == "decline":
        return rng.choice((f"put {rng.choice(L.HARMFUL)} in the {rng.choice(L.FOODS)}.",
                           f"first you {rng.choice(L.VIOLENT)} them hard."))
    if t in ("fact_qa", "false_premise") and task.get("attr"):
        value = task.get("premise") or kb.wrong_value(task["entity"], task["attr"], rng)
        return kb.fact(task["entity"], task["attr"], value)
    if t == "list":
        kind = {"animal": L.ANIMALS, "food": L.FOODS, "person": L.PEOPLE}[task["kind"]]
        others = [x for x in kind if x not in task["members"]]
        return ", ".join(rng.sample(others, min(task["n"], len(others)))) + "."
    if t == "compare":
        other = next(e for e in task["entities"] if e != task["answer"])
        return f"the {other} has more legs."
    if t == "label":
        return f"{[x for x in task['labels'] if x != task['answer']][0]}."
    if t == "sequence" and task["answer"][0].isdigit() and len(task["answer"]) == 1:
        return f"{int(task['answer'][0]) + rng.randint(1, 5)}."
    if t == "sequence":
        return ", ".join(reversed(rng.sample(task["answer"], len(task["answer"])))) + "."
    return kb.random_fact(rng, true=False)


def _continuation(kb, task, rng):
    """What a base model does with an instruction: go on with more of the same
    kind of text (the paper's "eat socks after meditating" example)."""
    more = [f"what color is the {rng.choice(L.ANIMALS)}?", f"what is the capital of {rng.choice(L.COUNTRIES)}?",
            f"list three {rng.choice(('animals', 'foods'))}.", f"what does the {rng.choice(L.ANIMALS)} eat?",
            f"where does {rng.choice(L.PEOPLE)} live?", "who knows?", "any ideas?"]
    return " ".join(rng.sample(more, 2))
