"""Masking personal information in prompts with rules, no downloaded model.

The paper removed personally identifiable information from customer prompts
before training (section 3.2) without saying how. We mask what rules find with
few false alarms: emails, IP addresses, card numbers (Luhn-checked, so order and
invoice numbers stay), phone numbers, street addresses, and names where a cue
gives them away ("my name is X", "Dear X", "Mr. X", or a known first name
followed by a capitalised surname). Rules miss names with no cue; a model-based
recogniser would find more and is left to whoever can ship one.

Each finding becomes a placeholder such as [EMAIL] and is counted by kind.
"""

from __future__ import annotations

import ipaddress
import re

PLACEHOLDERS = {
    "email": "[EMAIL]", "ip": "[IP]", "card": "[CARD]", "phone": "[PHONE]", "address": "[ADDRESS]", "name": "[NAME]",
}
KINDS = tuple(PLACEHOLDERS)

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# Not part of a longer dotted run ("1.2.3.4.5") and not after a letter ("v1.2.3.4" is a version).
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)")
_IPV6_CANDIDATE = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# 13 to 19 digits, optionally grouped by spaces or dashes; the Luhn check decides.
_CARD_CANDIDATE = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"(?:\+?1[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}"  # North American: (555) 123-4567, 555.123.4567
    r"|\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}"  # international, which must start with "+": +44 20 7946 0958
    r")(?![\w-])"
)
_STREET = (
    r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Square|Sq"
    r"|Parkway|Pkwy|Highway|Hwy|Close|Crescent"
)
_ADDRESS = re.compile(
    rf"\b\d{{1,5}}[A-Za-z]?\s+(?:[A-Z][A-Za-z'-]*\.?\s+){{1,4}}(?:{_STREET})\b\.?"
    r"(?:,?\s+(?:Apt|Apartment|Suite|Unit|Flat|#)\.?\s*[\w-]+)?"
)
# Cues after which a capitalised word is a name. "I'm"/"Hi" are too often followed by
# other capitalised words ("I'm Happy to...", "Hi All"), so they count only with a known first name.
_STRONG_CUE = re.compile(
    r"\b(?:[Mm]y name is|[Mm]y name's|[Cc]all me|[Dd]ear|(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof)\.?)\s+"
    r"([A-Z][a-z]+(?:[ -][A-Z][a-z]+)?)"
)

# Common first names that are rarely ordinary words: "Will", "May", "Grace", "Bill",
# "Mark", "Rose" and the like are left out on purpose.
FIRST_NAMES = frozenset("""
James John Robert Michael David William Richard Joseph Thomas Charles Christopher Daniel Matthew Anthony Donald
Steven Paul Andrew Joshua Kenneth Kevin Brian George Timothy Ronald Edward Jason Jeffrey Ryan Jacob Gary Nicholas
Eric Jonathan Stephen Larry Justin Scott Brandon Benjamin Samuel Gregory Alexander Patrick Jack Dennis Jerry Tyler
Aaron Jose Adam Nathan Henry Zachary Douglas Peter Kyle Noah Ethan Jeremy Walter Christian Keith Roger Terry Austin
Sean Gerald Carl Harold Dylan Arthur Lawrence Jordan Jesse Bryan Billy Bruce Gabriel Logan Alan Juan Albert Willie
Elijah Randy Wayne Vincent Liam Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa Nancy
Betty Sandra Margaret Ashley Kimberly Emily Donna Michelle Carol Amanda Melissa Deborah Stephanie Dorothy Rebecca
Sharon Laura Cynthia Amy Kathleen Angela Shirley Brenda Emma Anna Pamela Nicole Samantha Katherine Christine Helen
Debra Rachel Carolyn Janet Maria Catherine Heather Diane Olivia Julie Joyce Victoria Ruth Virginia Lauren Kelly
Christina Joan Evelyn Judith Andrea Hannah Megan Cheryl Jacqueline Martha Madison Teresa Gloria Sara Janice Ann
Kathryn Abigail Sophia Frances Jean Alice Judy Isabella Julia Beverly Denise Marilyn Amber Danielle Brittany Diana
Natalie Sophie Alexis Lori Kayla Jane Alice Ahmed Mohammed Muhammad Fatima Aisha Wei Yuki Hiroshi Priya Raj Rahul
Carlos Luis Miguel Sofia Lucia Pierre Marie Hans Klaus Ingrid Olga Ivan Dmitri Sergei Elena Giovanni Francesca
Alessandro Chiara Lars Sven Astrid Kenji Akira Mei Jin Min Anil Sunita Arjun Chloe Zoe Mia Ava Charlotte Amelia Harper
Lucas Mason Oliver Elliot Oscar Leo Theo Felix Hugo Max Ben Tom Tim Jim Joe Bob Mike Dave Steve Chris Nick Tony Sam
""".split())
# Capitalised words that follow cues or first names without being names.
_NOT_NAMES = frozenset("""
Sir Madam Madame Team All Everyone Customer Customers Friend Friends Hiring Manager Sirs Colleagues Reader Readers
Valued User Users Support Admin Diary Santa God Lord The A An And Or But In On At To For Of With From By Street Avenue
Road University College School Company Inc Corp Ltd Day Street Monday Tuesday Wednesday Thursday Friday Saturday
Sunday January February March April June July August September October November December Is Was Are
""".split())
_DIGIT = re.compile(r"\d")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def scrub(text: str, counts: dict[str, int] | None = None) -> str:
    """`text` with personal information replaced by placeholders; `counts[kind]` += findings."""
    counts = {} if counts is None else counts

    def sub(kind: str, pattern: re.Pattern, s: str, keep=None) -> str:
        def replace(m: re.Match) -> str:
            if keep is not None and keep(m):
                return m.group(0)
            counts[kind] = counts.get(kind, 0) + 1
            return PLACEHOLDERS[kind]

        return pattern.sub(replace, s)

    # Cheap membership tests skip the regexes that cannot match: most prompts have no "@" or digits.
    if "@" in text:
        text = sub("email", _EMAIL, text)
    if ":" in text:
        text = sub("ip", _IPV6_CANDIDATE, text, keep=lambda m: not _is_ipv6(m.group(0)))
    if _DIGIT.search(text):
        text = sub("ip", _IPV4, text)
        text = sub("card", _CARD_CANDIDATE, text, keep=lambda m: not luhn_valid(re.sub(r"\D", "", m.group(0))))
        text = sub("phone", _PHONE, text, keep=lambda m: not 7 <= len(re.sub(r"\D", "", m.group(0))) <= 15)
        text = sub("address", _ADDRESS, text)
    return _scrub_names(text, counts)


def _is_ipv6(candidate: str) -> bool:
    # Times ("12:30:45") fail to parse; a real address has "::" or 8 groups, and a
    # digit, which keeps C++ scopes such as "a::b" out.
    if ("::" not in candidate and candidate.count(":") != 7) or not _DIGIT.search(candidate):
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def _scrub_names(text: str, counts: dict[str, int]) -> str:
    def cued(m: re.Match) -> str:
        if m.group(1).split()[0] in _NOT_NAMES:
            return m.group(0)
        counts["name"] = counts.get("name", 0) + 1
        return m.group(0)[: m.start(1) - m.start(0)] + PLACEHOLDERS["name"]

    text = _STRONG_CUE.sub(cued, text)
    return _scrub_first_names(text, counts)


def _scrub_first_names(text: str, counts: dict[str, int]) -> str:
    """A known first name followed by a capitalised surname, or alone right after a greeting or "I'm"."""
    words = list(_CAPITALISED_WORD.finditer(text))
    pieces, pos, i = [], 0, 0
    while i < len(words):
        m = words[i]
        if m.group(0) not in FIRST_NAMES:
            i += 1
            continue
        nxt = words[i + 1] if i + 1 < len(words) else None
        if nxt is not None and nxt.group(0) not in _NOT_NAMES and text[m.end():nxt.start()].isspace():
            end, i = nxt.end(), i + 2  # "John Smith"
        elif _SOFT_CUE.search(text, max(0, m.start() - 16), m.start()):
            end, i = m.end(), i + 1  # "Hi John", "I'm Priya"
        else:
            i += 1
            continue
        pieces += [text[pos:m.start()], PLACEHOLDERS["name"]]
        pos = end
        counts["name"] = counts.get("name", 0) + 1
    return "".join(pieces) + text[pos:] if pieces else text


_CAPITALISED_WORD = re.compile(r"\b[A-Z][a-z]+(?:-[A-Z][a-z]+)?\b")
_SOFT_CUE = re.compile(r"\b(?:I'm|I am|[Tt]his is|[Hh]i|[Hh]ello|[Hh]ey|[Tt]hanks|[Rr]egards|[Ss]incerely|[Cc]heers),?\s+$")
