"""Masking personal information and secrets in prompts with rules, no downloaded model.

The paper removed personally identifiable information from customer prompts
before training (section 3.2) without saying how. We mask what rules find with
few false alarms. The kinds Microsoft Presidio's recognisers and Yelp's
detect-secrets look for are the reference for coverage; both ship more
(national ids of other countries, crypto wallets, dozens of vendor tokens):
  secret       API keys by their prefix (sk-, AKIA, ghp_, hf_, ...), JSON web tokens, private
               key blocks, the value after "password:" or "api_key=", passwords in URLs
  email, ip    addresses that parse
  iban         the country's length and the mod-97 checksum
  card         13 to 19 digits passing the Luhn check, so order and invoice numbers stay
  national_id  US social security and taxpayer numbers, UK National Insurance numbers
  phone        North American, UK, and international numbers written with "+"
  address      a house number, capitalised words and a street type
  name         where a cue gives it away ("my name is X", "Dear Mr. X", "Dr. X"), or a known
               first name followed by a capitalised surname
Rules miss names with no cue; a model-based recogniser would find more and is
left to whoever can ship one.

Every rule takes time linear in the text: a repetition is either bounded or can
start only where the run it scans begins (a lookbehind excludes the run's own
characters), so no stretch of text is rescanned from many start positions.
tests/data/test_pii_scaling.py holds hostile inputs for each rule. Each finding
becomes a placeholder such as [EMAIL] and is counted by kind.
"""

from __future__ import annotations

import ipaddress
import re
from itertools import islice

PLACEHOLDERS = {
    "secret": "[SECRET]", "email": "[EMAIL]", "ip": "[IP]", "iban": "[IBAN]", "card": "[CARD]",
    "national_id": "[NATIONAL_ID]", "phone": "[PHONE]", "address": "[ADDRESS]", "name": "[NAME]",
}
KINDS = tuple(PLACEHOLDERS)
_PLACEHOLDER_TEXTS = frozenset(PLACEHOLDERS.values())

# --- secrets (detect-secrets' plugins are the reference) ---------------------------------------
# Tokens recognised by their prefix. The lookbehind lets a token start only where its run of
# token characters starts: "sk-sk-sk-..." is one candidate, not one per "sk-".
_SECRET_TOKEN = re.compile(
    r"(?<![A-Za-z0-9_-])(?:"
    r"sk-[A-Za-z0-9_-]{20,}"  # OpenAI, Anthropic (sk-proj-..., sk-ant-...)
    r"|(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"  # GitHub
    r"|glpat-[A-Za-z0-9_-]{20,}"  # GitLab
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|[rs]k_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe
    r"|AIza[A-Za-z0-9_-]{35}"  # Google API key
    r"|hf_[A-Za-z0-9]{30,}"  # Hugging Face
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JSON web token
    r")(?![A-Za-z0-9_-])"
)
# The value after a secret-sounding key: "password: hunter2", "API_KEY=abc", '"passwd": "x y"'.
# Bare "pass", "token" and "secret" are left out: "the secret: practice" is prose.
_SECRET_KEYWORD = re.compile(
    r"(?i:passw(?:or)?d|passphrase|passcode|\bpwd|api[_ -]?key|access[_ -]?key|secret[_ -]?key|private[_ -]?key"
    r"|client[_ -]?secret|(?:auth|access|api|refresh)[_ -]?token)"
    r"(?:_[A-Za-z0-9]{1,20})?[\"']?[ \t]{0,5}[:=][ \t]{0,5}"
    r"(?P<pii>\"[^\"\n]{1,200}\"|'[^'\n]{1,200}'|[^\s\"',;]{1,200})"
)
_BEARER = re.compile(r"\bBearer[ \t]{1,5}(?P<pii>[A-Za-z0-9._~+/-]{16,}=*)")
_URL_PASSWORD = re.compile(r"://[^\s/:@]{1,64}:(?P<pii>[^\s/@]{1,128})@")
# The base64 lines of a PEM block; a short last line counts only right before the END line, so
# prose after a key with no END line is not swallowed.
_PRIVATE_KEY = re.compile(
    r"-----BEGIN[A-Z ]{0,20} PRIVATE KEY-----(?:\s{0,4}[A-Za-z0-9+/=]{16,}){0,400}"
    r"(?:\s{0,4}[A-Za-z0-9+/=]{1,15}(?=\s{0,4}-----END))?(?:\s{0,4}-----END[A-Z ]{0,20} PRIVATE KEY-----)?"
)

# --- contact details and numbers (Presidio's recognisers are the reference) ---------------------
# Email is matched around each "@" (see _scrub_emails): a pattern that starts at every local-part
# character rescans the run for each start, quadratic on "a%a%...a%@".
_EMAIL_LOCAL_RUN = re.compile(r"[A-Za-z0-9._%+-]*")
# DNS bounds labels to 63 characters and names to 253: bounded repeats keep the regex engine's
# per-repeat bookkeeping constant ("a@b.b.b.b..." took 64 bytes a character unbounded).
_EMAIL_DOMAIN = re.compile(r"[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,126}\.[A-Za-z]{2,63}\b")
_AFTER_PERCENT = re.compile(r"%[A-Za-z0-9]")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# Not part of a longer dotted run ("1.2.3.4.5") and not after a letter ("v1.2.3.4" is a version).
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)")
_IPV6_CANDIDATE = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# Country code, check digits, then up to 30 letters and digits, optionally in groups; the
# country's length and the checksum decide how much of it is the IBAN (_iban_length).
_IBAN_CANDIDATE = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}")
# Total lengths from the SWIFT IBAN registry.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "BY": 28,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24,
    "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24,
    "XK": 20,
}
# 13 to 19 digits, optionally grouped by spaces or dashes; the Luhn check decides.
_CARD_CANDIDATE = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
# US social security (and taxpayer) numbers: 3-2-4 digits with one kind of separator; bare nine
# digits only after "SSN" or "social security". _valid_us_id rejects numbers never issued.
_US_ID = re.compile(r"(?<![\d-])(?P<pii>\d{3}([- .])\d{2}\2\d{4})(?![\d-])")
_US_ID_CUED = re.compile(r"(?i:\bssn|\bsocial security(?: number| no\.?)?)[\s:#.-]{0,5}(?P<pii>\d{9})(?!\d)")
# UK National Insurance number: HMRC's letter rules (no D, F, I, Q, U, V; O not second; some prefixes unused).
_UK_NINO = re.compile(
    r"(?<![A-Za-z0-9])(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]"
    r"(?![A-Za-z0-9])"
)
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"(?:\+?1[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}"  # North American: (555) 123-4567, 555.123.4567
    r"|\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}"  # international, which must start with "+": +44 20 7946 0958
    r")(?![\w-])"
)
# UK numbers written nationally, with the leading 0: 020 7946 0958, (0161) 496 0000, 07700 900123.
_UK_PHONE = re.compile(r"(?<![\w+])(?:\(0\d{2,4}\)|0\d{2,4})(?:[ .-]?\d{3,4}){1,2}(?![\w-])")
_STREET = (
    r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Square|Sq"
    r"|Parkway|Pkwy|Highway|Hwy|Close|Crescent"
)
_ADDRESS = re.compile(
    rf"\b\d{{1,5}}[A-Za-z]?\s+(?:[A-Z][A-Za-z'-]*\.?\s+){{1,4}}(?:{_STREET})\b\.?"
    r"(?:,?\s+(?:Apt|Apartment|Suite|Unit|Flat|#)\.?\s*[\w-]+)?"
)

# --- names ------------------------------------------------------------------------------------
_TITLE = r"(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof)\.?"
_NAME_WORD = r"[A-Z](?:[a-z]+|'[A-Z][a-z]+)(?:[A-Z][a-z]+)?"  # Smith, O'Brien, McDonald
# Cues after which a capitalised word is a name; a title may follow the cue ("Dear Mr. Smith").
# "I'm"/"Hi" are too often followed by other capitalised words ("I'm Happy to...", "Hi All"),
# so they count only with a known first name.
_STRONG_CUE = re.compile(
    rf"\b(?:(?:[Mm]y name is|[Mm]y name's|[Cc]all me|[Dd]ear)\s+(?:{_TITLE}\s+)?|{_TITLE}\s+)"
    rf"({_NAME_WORD}(?:[ -]{_NAME_WORD})?)"
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
Mr Mrs Ms Mx Miss Dr Prof
""".split())
_DIGIT = re.compile(r"\d")
_NON_DIGIT = re.compile(r"\D")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_checksum_valid(iban: str) -> bool:
    """ISO 13616: the country code and check digits moved to the end, letters as 10..35, mod 97 is 1."""
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def scrub(text: str, counts: dict[str, int] | None = None) -> str:
    """`text` with personal information replaced by placeholders; `counts[kind]` += findings."""
    counts = {} if counts is None else counts
    # Secrets first: a key's digits could otherwise pass for a card or phone number and leave the rest.
    # Cheap membership tests skip the rules that cannot match: most prompts have no "@", ":" or digits.
    if "-----BEGIN" in text:
        text = _sub("secret", _PRIVATE_KEY, text, counts)
    text = _sub("secret", _SECRET_TOKEN, text, counts, keep=_is_prose_like_sk)
    if ":" in text or "=" in text:
        text = _sub("secret", _SECRET_KEYWORD, text, counts, keep=_is_placeholder)
        text = _sub("secret", _URL_PASSWORD, text, counts)
    if "Bearer" in text:
        text = _sub("secret", _BEARER, text, counts)
    if "@" in text:
        text = _scrub_emails(text, counts)
    if ":" in text:
        text = _sub("ip", _IPV6_CANDIDATE, text, counts, keep=lambda m: not _is_ipv6(m.group(0)))
    # Each numeric rule needs at least this many digits in the prompt; most prompts have a few or none.
    digits = sum(1 for _ in islice(_DIGIT.finditer(text), 13))  # counting stops where the last gate is passed
    if digits >= 4 and "." in text:
        text = _sub("ip", _IPV4, text, counts)
    if digits >= 2:
        text = _scrub_ibans(text, counts)
    if digits >= 13:
        text = _sub("card", _CARD_CANDIDATE, text, counts, keep=lambda m: not luhn_valid(_NON_DIGIT.sub("", m[0])))
    if digits >= 9:
        text = _sub("national_id", _US_ID, text, counts, keep=lambda m: not _valid_us_id(m["pii"]))
        text = _sub("national_id", _US_ID_CUED, text, counts, keep=lambda m: not _valid_us_id(m["pii"]))
    if digits >= 6:
        text = _sub("national_id", _UK_NINO, text, counts)
    if digits >= 7:
        text = _sub("phone", _PHONE, text, counts, keep=lambda m: not 7 <= len(_NON_DIGIT.sub("", m[0])) <= 15)
    if digits >= 10:
        text = _sub("phone", _UK_PHONE, text, counts, keep=lambda m: not _valid_uk_phone(m[0]))
    if digits:
        text = _sub("address", _ADDRESS, text, counts)
    return _scrub_names(text, counts)


def _sub(kind: str, pattern: re.Pattern, text: str, counts: dict[str, int], keep=None) -> str:
    """Replace each match (or its group `pii` where the pattern has one) unless `keep(match)`."""
    if pattern.search(text) is None:  # the common case, without the generator's overhead
        return text
    group = "pii" if "pii" in pattern.groupindex else 0

    def edits():
        for m in pattern.finditer(text):
            if keep is None or not keep(m):
                counts[kind] = counts.get(kind, 0) + 1
                yield m.start(group), m.end(group), PLACEHOLDERS[kind]

    return _rewrite(text, edits())


def _rewrite(text: str, edits) -> str:
    """`text` with each (start, end, new) edit applied; edits come in order and do not overlap.

    Pieces are joined every 1024 edits: a prompt dense with findings would otherwise hold two
    string objects (about 100 bytes) per finding until the end."""
    chunks, pieces, pos = [], [], 0
    for start, end, new in edits:
        pieces += (text[pos:start], new)
        pos = end
        if len(pieces) >= 1024:
            chunks.append("".join(pieces))
            pieces.clear()
    if not chunks and not pieces:
        return text
    chunks.append("".join(pieces) + text[pos:])
    return "".join(chunks)


def _is_placeholder(m: re.Match) -> bool:
    return m["pii"] in _PLACEHOLDER_TEXTS  # "private key: [SECRET]" was found by an earlier rule


def _is_prose_like_sk(m: re.Match) -> bool:
    # A random key of 20+ characters has a digit; "sk-learn-compatible-estimator" has none.
    return m[0].startswith("sk-") and not _DIGIT.search(m[0])


def _scrub_emails(text: str, counts: dict[str, int]) -> str:
    """Each "@" with a domain after it and a local part before it becomes [EMAIL].

    The same matches as the pattern
        (?<![\\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@<domain>
    found left to right, in linear time: the local part is measured once per "@" (backwards,
    never past the previous "@"), and its leftmost valid start is either the start of that run or
    just after a "%" (the one local-part character the lookbehind allows before a start)."""

    def edits():
        pos, prev_at = 0, -1
        at = text.find("@")
        while at >= 0:
            domain = _EMAIL_DOMAIN.match(text, at + 1)
            if domain is not None:
                floor = max(pos, prev_at + 1)
                run = _EMAIL_LOCAL_RUN.match(text[floor:at][::-1])  # the local part, read backwards from "@"
                start = _email_start(text, at - run.end(), at)
                if start is not None:
                    counts["email"] = counts.get("email", 0) + 1
                    yield start, domain.end(), PLACEHOLDERS["email"]
                    pos = domain.end()
            prev_at = at
            at = text.find("@", max(at + 1, pos))

    return _rewrite(text, edits())


def _email_start(text: str, run_start: int, at: int) -> int | None:
    """The leftmost position in text[run_start:at] where an email may start, or None."""
    if run_start < at and text[run_start].isascii() and text[run_start].isalnum():
        before = text[run_start - 1] if run_start else " "
        if not (before.isalnum() or before in "_.+-"):  # the pattern's (?<![\w.+-])
            return run_start
    m = _AFTER_PERCENT.search(text, run_start, at)
    return m.start() + 1 if m else None


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


def _scrub_ibans(text: str, counts: dict[str, int]) -> str:
    if _IBAN_CANDIDATE.search(text) is None:
        return text

    def edits():
        for m in _IBAN_CANDIDATE.finditer(text):
            length = _iban_length(m[0], text, m.start())
            if length is not None:  # what follows the IBAN in the candidate is left for the other rules
                counts["iban"] = counts.get("iban", 0) + 1
                yield m.start(), m.start() + length, PLACEHOLDERS["iban"]

    return _rewrite(text, edits())


def _iban_length(candidate: str, text: str, offset: int) -> int | None:
    """How many characters of `candidate` are an IBAN (spaces included), or None."""
    want = IBAN_LENGTHS.get(candidate[:2])
    if want is None:
        return None
    compact = candidate.replace(" ", "")[:want]
    if len(compact) < want:
        return None
    end, seen = 0, 0
    while seen < want:  # the position in `candidate` just after the want-th non-space character
        seen += candidate[end] != " "
        end += 1
    after = text[offset + end: offset + end + 1]
    if after.isalnum():  # it runs on: a longer code, not an IBAN
        return None
    return end if iban_checksum_valid(compact) else None


def _valid_us_id(number: str) -> bool:
    """A social security number that could have been issued, or a taxpayer number (ITIN)."""
    digits = _NON_DIGIT.sub("", number)
    area, group, serial = int(digits[:3]), int(digits[3:5]), int(digits[5:])
    if group == 0 or serial == 0:
        return False
    if area >= 900:  # ITINs: 9xx with these group ranges (IRS)
        return 50 <= group <= 65 or 70 <= group <= 88 or 90 <= group <= 92 or 94 <= group <= 99
    return area not in (0, 666)


def _valid_uk_phone(number: str) -> bool:
    digits = _NON_DIGIT.sub("", number)
    if not 10 <= len(digits) <= 11 or digits[1] not in "1235789":  # 00 is the international prefix
        return False
    # A bare run of digits is a phone number only at the usual 11 digits: "0306406152" is an ISBN.
    return len(digits) == 11 or len(digits) != len(number)


def _scrub_names(text: str, counts: dict[str, int]) -> str:
    def cued():
        for m in _STRONG_CUE.finditer(text):
            if m[1].split()[0] not in _NOT_NAMES:
                counts["name"] = counts.get("name", 0) + 1
                yield m.start(1), m.end(1), PLACEHOLDERS["name"]

    text = _rewrite(text, cued())
    return _rewrite(text, _first_names(text, counts))


def _first_names(text: str, counts: dict[str, int]):
    """Edits for a known first name followed by a capitalised surname, or alone right after a
    greeting or "I'm".

    The capitalised words are read one ahead from a lazy iterator: a list of every match held
    ten MB of text as 470 MB of match objects."""
    words = _CAPITALISED_WORD.finditer(text)
    m = next(words, None)
    while m is not None:
        nxt = next(words, None)
        if m[0] not in FIRST_NAMES:
            m = nxt
            continue
        if nxt is not None and nxt[0] not in _NOT_NAMES and text[m.end():nxt.start()].isspace():
            end, nxt = nxt.end(), next(words, None)  # "John Smith"
        elif _SOFT_CUE.search(text, max(0, m.start() - 16), m.start()):
            end = m.end()  # "Hi John", "I'm Priya"
        else:
            m = nxt
            continue
        counts["name"] = counts.get("name", 0) + 1
        yield m.start(), end, PLACEHOLDERS["name"]
        m = nxt


_CAPITALISED_WORD = re.compile(r"\b[A-Z][a-z]+(?:-[A-Z][a-z]+)?\b")
_SOFT_CUE = re.compile(r"\b(?:I'm|I am|[Tt]his is|[Hh]i|[Hh]ello|[Hh]ey|[Tt]hanks|[Rr]egards|[Ss]incerely|[Cc]heers),?\s+$")
