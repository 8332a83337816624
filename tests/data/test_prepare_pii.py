"""PII masking: each kind found, and near misses that must stay."""

from __future__ import annotations

import pytest

from rlhf.data.pii import luhn_valid, scrub


@pytest.mark.parametrize(
    "text, expected, kind",
    [
        ("mail me at jane.doe+rlhf@mail.example.co.uk please", "mail me at [EMAIL] please", "email"),
        ("call (555) 123-4567 today", "call [PHONE] today", "phone"),
        ("my number is 555.123.4567.", "my number is [PHONE].", "phone"),
        ("ring +44 20 7946 0958 now", "ring [PHONE] now", "phone"),
        ("+1-555-123-4567", "[PHONE]", "phone"),
        ("pay with 4111 1111 1111 1111 ok", "pay with [CARD] ok", "card"),
        ("card 5500-0000-0000-0004", "card [CARD]", "card"),
        ("amex 378282246310005", "amex [CARD]", "card"),
        ("ssh to 192.168.10.254 now", "ssh to [IP] now", "ip"),
        ("host 2001:db8::8a2e:370:7334 down", "host [IP] down", "ip"),
        ("loopback ::1 and fe80::1", "loopback [IP] and [IP]", "ip"),
        ("ship to 221B Baker Street, London", "ship to [ADDRESS], London", "address"),
        ("at 1600 Pennsylvania Avenue NW", "at [ADDRESS] NW", "address"),
        ("I live at 42 Elm St. Apt 5 in town", "I live at [ADDRESS] in town", "address"),
        ("Hi, my name is Zorblax and I need help", "Hi, my name is [NAME] and I need help", "name"),
        ("Dear Priya Raman, thanks", "Dear [NAME], thanks", "name"),
        ("ask Mr. Okafor about it", "ask Mr. [NAME] about it", "name"),
        ("Emily Clark wrote this", "[NAME] wrote this", "name"),
        ("Thanks, Sarah", "Thanks, [NAME]", "name"),
        ("I'm Jessica and I teach", "I'm [NAME] and I teach", "name"),
    ],
)
def test_pii_is_masked_and_counted(text, expected, kind):
    counts = {}
    assert scrub(text, counts) == expected
    assert counts[kind] == expected.count("[") and set(counts) == {kind}


@pytest.mark.parametrize(
    "text",
    [
        "upgrade to version 1.2.3 or v2.10.4.1",  # versions are not IPs
        "the meeting is on 2023-10-15 or 10/15/2023 at 12:30:45",  # dates and times
        "order 4111 1111 1111 1112 failed",  # 16 digits that fail the Luhn check
        "invoice 1234567890123 and zip 90210",
        "std::vector<int> and a::b are C++",
        "I'm Happy to help, Hello World, Dear Sir, Dear Customer",  # cues followed by ordinary words
        "Will Power and Grace Notes are songs",  # first names that are also words are not in the list
        "I have 3 Big Ideas and 12 Angry Men",  # number + capitalised words but no street type
        "email me at the usual address",
        "pi is 3.14159 and e is 2.71828",
        "call extension 1234 or room 555-12",
    ],
)
def test_near_misses_stay(text):
    counts = {}
    assert scrub(text, counts) == text
    assert counts == {}


def test_luhn():
    assert luhn_valid("4111111111111111") and luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112") and not luhn_valid("79927398710")


def test_several_kinds_in_one_prompt_are_all_counted():
    counts = {}
    out = scrub("I'm Sarah Connor, sarah@skynet.com, 555-123-4567, from 10.0.0.1", counts)
    assert out == "I'm [NAME], [EMAIL], [PHONE], from [IP]"
    assert counts == {"name": 1, "email": 1, "phone": 1, "ip": 1}
