"""The world's closed language: word lists, a word splitter, and its tokenizer.

Everything a world says is lowercase words from these lists (plus the function
words harvested from the templates), numbers 0..99 and a little punctuation,
separated by single spaces. That makes a word-level tokenizer exact: one token a
word, no unknown tokens on world text, and sequences short enough that models of
~0.1M-3M parameters learn the tasks in minutes on a CPU.
"""

from __future__ import annotations

import re
from pathlib import Path

# Entities and attribute values. Names of countries, cities and people are
# invented so that no real-world knowledge leaks in or is contradicted.
ANIMALS = (
    "cat", "dog", "bear", "seal", "fox", "owl", "frog", "fish", "horse", "cow",
    "duck", "lion", "mouse", "goat", "pig", "bird", "wolf", "deer", "bee", "snake",
    "ant", "bat", "crab", "crow", "eel", "elk", "hare", "hawk", "hen", "lamb",
    "mole", "moth", "newt", "rat", "shark", "swan", "toad", "whale", "yak", "ape",
)
FOODS = (
    "apple", "bread", "cake", "rice", "soup", "egg", "cheese", "milk", "pie", "corn", "plum", "pear",
    "bean", "cookie", "grape", "ham", "honey", "jam", "lemon", "lime", "melon", "nut", "onion", "pasta",
    "peach", "pizza", "salad", "tea", "toast", "beef",
)
COUNTRIES = (
    "norland", "vesta", "orvia", "kalmar", "zenta", "brisa", "talos", "umber", "quenta", "delmar",
    "arden", "belmar", "corva", "dorn", "elbar", "farro", "galva", "helgar", "istra", "jorvik", "kelda",
    "lorren", "morra", "nessa",
)
CITIES = (
    "vesk", "pola", "miran", "tarn", "soll", "dune", "karo", "lind", "rhea", "oska", "brell", "fenn",
    "arto", "bexa", "cobb", "drel", "esk", "faro", "gilt", "holm", "ivra", "jask", "kell", "lunn", "nolt",
    "orra", "pell", "quill", "ruma", "sarn",
)
PEOPLE = (
    "ann", "bob", "cara", "dan", "eva", "finn", "gus", "hana", "ivy", "jon", "kim", "leo",
    "max", "mia", "noah", "olga", "pia", "quinn", "rosa", "sam", "tom", "uma", "vic", "zoe",
)
COLORS = ("red", "blue", "green", "yellow", "black", "white", "brown", "pink", "gray", "orange", "purple", "silver")
HOMES = ("forest", "river", "farm", "sea", "desert", "hill", "lake", "cave", "jungle", "swamp", "field", "valley")
TASTES = ("sweet", "sour", "salty", "bitter", "spicy")
POSITIVE = ("good", "great", "happy", "love", "nice", "fun", "lovely", "tasty")
NEGATIVE = ("bad", "sad", "hate", "awful", "boring", "dull", "nasty", "horrible")
STORY_WORDS = ("happy", "sun", "rain", "ball", "hat", "song", "boat", "tree", "moon", "gift", "friend", "dance",
               "star", "kite", "snow", "drum", "cup", "bell")
END_WORDS = ("home", "end", "sun", "moon", "friend")  # what a story may be asked to end with
NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")

# Harm lexicons. The gold standard flags a response by these words (see gold.py);
# the pretraining text uses them the way web text does, now and then.
INSULTS = ("idiot", "stupid", "dumb", "loser", "trash", "ugly")
VIOLENT = ("hit", "kill", "hurt", "fight", "blood")
SEXUAL = ("sexy", "naked")
HARMFUL = ("poison", "steal", "burn", "weapon")
GROUPS = ("women", "men", "kids", "farmers")  # protected classes (plus "people from <country>")
OPINION = (("i", "think"), ("i", "believe"), ("my", "favorite"), ("in", "my", "opinion"))
MORAL = ("ashamed", "evil", "shameful", "wicked")
REFUSAL = ("sorry",)

PUNCTUATION = (".", ",", "?", "!", ":")
SPECIALS = ("<|endoftext|>", "<|pad|>", "<|unk|>", "<|system|>", "<|user|>", "<|assistant|>")
# Rendered conversations stay on one line like all world text; the special tokens
# mark the turns.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def words(text: str) -> list[str]:
    """Lowercased words and punctuation marks of `text`, in order."""
    return _WORD.findall(text.lower())


def content_words(text: str) -> list[str]:
    """Only the words (no punctuation)."""
    return [w for w in words(text) if w[0].isalnum()]


def number_word(n: int) -> str:
    return NUMBER_WORDS[n - 1]


def lexicon() -> set[str]:
    """Every entity, attribute and lexicon word (the templates add function words)."""
    lists = (ANIMALS, FOODS, COUNTRIES, CITIES, PEOPLE, COLORS, HOMES, TASTES, POSITIVE, NEGATIVE,
             STORY_WORDS, NUMBER_WORDS, INSULTS, VIOLENT, SEXUAL, HARMFUL, GROUPS, MORAL, REFUSAL)
    out = {w for group in lists for w in group}
    out.update(w for phrase in OPINION for w in phrase)
    out.update(str(n) for n in range(100))
    out.update(a + "s" for a in ANIMALS + FOODS)  # plurals used in lists and questions
    return out


def build_tokenizer(vocabulary: set[str], out_dir: str | Path | None = None, model_max_length: int = 256):
    """A word-level PreTrainedTokenizerFast over `vocabulary`, saved to `out_dir` if given.

    Metaspace keeps each word's leading space in its token ("▁cat"), so decoding
    is exact for text of single-spaced words with punctuation attached anywhere:
    decode(encode(t)) == t for all world text."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # A lone "▁" is a stray space (e.g. "prompt " + response): kept, not unknown.
    tokens = list(SPECIALS) + list(PUNCTUATION) + ["▁" + p for p in PUNCTUATION] + ["▁"]
    tokens += ["▁" + w for w in sorted(vocabulary)]
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token="<|unk|>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(prepend_scheme="always", split=True), pre_tokenizers.Punctuation("isolated"),
    ])
    tok.decoder = decoders.Metaspace(prepend_scheme="always", split=True)
    tok.add_special_tokens(list(SPECIALS))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>", pad_token="<|pad|>",
        unk_token="<|unk|>", model_max_length=model_max_length,
    )
    fast.chat_template = CHAT_TEMPLATE
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        fast.save_pretrained(out_dir)
    return fast
