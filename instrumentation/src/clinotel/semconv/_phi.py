"""PHI patterns and pseudonyms: one definition, rendered to Python here and to SQL for the collector.

Every pattern is written in the common subset of Python's `re` (ASCII mode) and RE2, the engine
ClickHouse uses, so the library and the collector redact exactly the same text: no look-around,
no back-references, explicit whitespace classes.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DASHES",
    "INVISIBLE",
    "LOOKALIKES",
    "MAX_TEXT",
    "MIN_KEY_BYTES",
    "PHI_PATTERN",
    "PHI_PATTERNS",
    "PHI_REGEX",
    "REDACTED",
    "TEXT_FOLD_BOUND",
    "TEXT_WINDOW",
    "PhiPattern",
    "Pseudonymizer",
    "ascii_folds",
    "contains_phi",
    "phi_kinds",
    "pseudonymize",
    "scrub",
]

REDACTED: Final = "[REDACTED]"
MAX_TEXT: Final = 4096
"""The characters of one text `scrub` keeps: the patterns' time grows faster than the text (one
run of 16,384 address-like characters took 0.16 s, 131,072 took 8 s), and an exception message
or a span name can be as long as a caller makes it."""
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
INVISIBLE: Final = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x2800, 0x2800),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
"""Unicode's default-ignorable code points (DerivedCoreProperties, `Default_Ignorable_Code_Point`):
characters that show nothing (soft hyphen, zero-width spaces and joiners, bidirectional marks,
variation selectors, fillers, tags, the byte order mark), and the braille blank (U+2800), which
shows nothing either. Read past when looking for PHI, here and in the collector's SQL."""
DASHES: Final = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63"
"""Dashes and the minus sign, which NFKD leaves as they are and a word processor puts between the
groups of a number (`123–45–6789`): read as `-` when looking for PHI, here and in the SQL."""
SEPARATORS: Final = ("\u2044\u2215\u29f8\u3001\uff64\u060c\u00b7\u3002\u2236\u2223\u01c0\u1680", "///,,,..:|| ")
"""Slashes, commas, dots, colons, bars and a space of other scripts that NFKD leaves as they are
(`555\u2215867\u22155309`, `555\u00b7867\u00b75309`): read as their ASCII kin between a number's
groups, here and in the SQL."""
LOOKALIKES: Final = (
    "\u0410\u0412\u0421\u0415\u041d\u0406\u0408\u041a\u041c\u041e\u0420\u0405\u0422\u0425\u0423"
    "\u0430\u0441\u0435\u043e\u0440\u0445\u0443\u0456\u0458\u0455\u0501"
    "\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7"
    "\u03bf\u03bd",
    "ABCEHIJKMOPSTXYaceopxyijsdABEZHIKMNOPTYXov",
)
"""Cyrillic and Greek letters drawn like Latin ones (`МRN` with a Cyrillic М, `Мrs.` …), and the
Latin letters they stand for: read as those when looking for PHI, here and in the SQL. Labels
and titles are Latin words; a homoglyph in one hid the identifier after it."""


@functools.cache
def ascii_folds() -> tuple[str, str]:
    """(from, to): the characters read as ASCII when looking for PHI, one for one: the dashes (as
    `-`), every decimal digit of another script that NFKD leaves as it is (Arabic-Indic,
    Devanagari, Thai …: `MRN ١٢٣٤٥٦٧٨`), and `LOOKALIKES`. Built on first use from this
    interpreter's Unicode tables (digits past U+1FFFF are NFKD-folded already)."""
    digits = [
        ch
        for cp in range(0x80, 0x20000)
        if unicodedata.category(ch := chr(cp)) == "Nd" and unicodedata.normalize("NFKD", ch) == ch
    ]
    source = DASHES + "".join(digits) + LOOKALIKES[0] + SEPARATORS[0]
    target = "-" * len(DASHES) + "".join(str(unicodedata.digit(ch)) for ch in digits) + LOOKALIKES[1] + SEPARATORS[1]
    return source, target


@functools.cache
def _as_ascii() -> dict[int, int]:
    source, target = ascii_folds()
    return str.maketrans(source, target)


_LOOKAHEAD: Final = 256
"""How far past `MAX_TEXT` a long text is read, so that a match crossing the cut is seen whole."""
_WINDOW: Final = MAX_TEXT + _LOOKAHEAD
TEXT_WINDOW: Final = _WINDOW
"""The characters of a long text that `scrub` reads (`MAX_TEXT` and a lookahead), of its folded
form when that is the form read; the collector reads a text any SDK sent the same way."""
_FOLD_BOUND: Final = 2 * _WINDOW
TEXT_FOLD_BOUND: Final = _FOLD_BOUND
"""The characters of a non-ASCII text folded (NFKD, marks and invisible characters dropped) before
it is cut: folding can shorten a text (invisible characters, marks) or lengthen it (NFKD, up to 18
times)."""


@functools.cache
def _hidden() -> re.Pattern[str]:
    """The characters the fold drops: the invisible ones and every combining mark (Unicode's
    category M: accents, `123̲-45-6789`'s low line, `555⃝`'s enclosing circle), which
    NFKD separates from their letters. Built on first use from this interpreter's Unicode tables
    (about 20 ms; marks past U+1FFFF are variation selectors, already invisible)."""
    category = unicodedata.category
    marks: list[tuple[int, int]] = []
    for cp in range(0x300, 0x20000):
        if category(chr(cp))[0] == "M":
            if marks and marks[-1][1] == cp - 1:
                marks[-1] = (marks[-1][0], cp)
            else:
                marks.append((cp, cp))
    return re.compile("[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in (*INVISIBLE, *marks)) + "]")


MIN_KEY_BYTES: Final = 16

_WS = r"[ \t\r\n]"
_MONTH = (
    r"(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)


@dataclass(frozen=True, slots=True)
class PhiPattern:
    """A named PHI pattern, with examples it must catch (the tests feed them to both engines)."""

    name: str
    regex: str
    description: str
    examples: tuple[str, ...]


_GROUP_SEP = r"(?:[ \t\r\n]*[.,/:;|_-]{1,3}[ \t\r\n]*|[ \t\r\n]+)"
"""What stands between the groups of a social security or telephone number: blanks or line breaks,
or one to three separators with or without them (`123::45::6789`, `123 -- 45 -- 6789`)."""
_LABEL = (
    r"(?i:mrn|mr#|csn|ssn|nhs|hcn|encounter|account|acct|patient[ _-]?id|appointment|appt"
    r"|member[ _-]?id|dob|birth[ _-]?date|date[ _-]of[ _-]birth)(?:[ _-]?(?i:id|no|num|number|nbr))?"
)
_NAME = r"[A-Za-z][A-Za-z'-]+(?:" + _WS + r"+[A-Z][A-Za-z'-]+)?"
_NAME_LABEL = r"(?i:first|last|given|family|middle|full|patient|pt)[ _-]?(?i:name)"
"""A label whose value is a person's name (`first_name`, `Patient Name`)."""

PHI_PATTERNS: Final[tuple[PhiPattern, ...]] = (
    PhiPattern(
        "labelled_identifier",
        # what leads to an identifier's first digit at most 64 characters: unbounded, the search
        # read to the end of the text from every label (`-mrn` repeated: 37 ms a 4.4 KB scrub)
        r"(?:\b|_)" + _LABEL + r"\b[ \t:#=_\"'()|,;]*[A-Za-z0-9/.-]{0,64}[0-9](?:[A-Za-z0-9/.-]|[ ][0-9]"
        r"|[ \t]*[,;:|_][ \t]*[0-9])*"
        r"|(?:\b|_)" + _LABEL + r"_[0-9][A-Za-z0-9/.-]*"
        r"|(?:\b|_)(?i:mrn|csn|ssn|nhs|hcn)[0-9]{4,}[A-Za-z0-9/.-]*"
        # Postgres's `Key (mrn, site)=(98765, 3)`: every value of a key one of whose columns (at
        # most eight either side: the search stays linear) is an identifier's or a name's
        r"|\((?:[A-Za-z0-9_\"]+,[ ]*){0,8}\"?(?:" + _LABEL + "|" + _NAME_LABEL + r")\"?"
        r"(?:,[ ]*[A-Za-z0-9_\"]+){0,8}\)=\([^)]{0,200}\)"
        r"|\b(?i:patients?)/[A-Za-z0-9.-]{0,64}[0-9](?:[A-Za-z0-9.-]|[ /][0-9]|[ \t]*[,;:|_][ \t]*[0-9])*",
        "an identifier introduced by its label: MRN 12345, appt=A17, DOB 1985, MRN_12345 (an underscore"
        ' and then a digit: encounter_p99 passes), encounter_id=9, {"mrn":"4711"}, MRN (98765), MRN4711 (four'
        " digits or more run into the label), Postgres's Key (mrn)=(98765), a FHIR Patient/123 reference or a"
        " /patients/123 path",
        (
            "MRN 12345",
            "mrn:A1234",
            "encounter #7781",
            "DOB: 1985",
            "dob 12.03.1984",
            "patient_id=P77",
            "NHS 943 476 5919",
            "MRN_12345",
            "acct_4471",
            "Patient_ID_77",
            "encounter_id=9",
            "MRN (98765",
            "MRN|98765",
            "MRN4711",
            "Patient/98765",
            "(mrn)=(98765)",
            "(mrn, site)=(98765, 3)",
            "(last_name, first_name)=(Okafor, Adaeze)",
            "patients/98765",
        ),
    ),
    PhiPattern(
        "email",
        # the local part at most 64 characters (RFC 5321's bound): unbounded, a backtracking engine
        # tried every start of a long run of its characters to its end, quadratic (a 4 KB token in
        # an exception's message took 130-180 ms a scrub, holding the GIL: a 2026-12-07 review)
        r"[A-Za-z0-9._%+-]{1,64}(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
        "an e-mail address, percent-encoded in a URL too (of a local part past 64 characters, the"
        " last 64 and the domain)",
        ("jane.doe@example.org", "j+triage@mail.example.com", "jane.doe%40example.org"),
    ),
    PhiPattern(
        "ssn",
        r"(?:\b|_)[0-9]{3}" + _GROUP_SEP + r"[0-9]{2}" + _GROUP_SEP + r"[0-9]{4}(?:\b|_)",
        "a US social security number, its groups apart by blanks or line breaks, or by one to three dots,"
        " commas, slashes, colons, semicolons, bars, underscores or hyphens with or without them",
        (
            "123-45-6789",
            "123 45 6789",
            "123.45.6789",
            "123_45_6789",
            "123\t45\t6789",
            "123,45,6789",
            "123/45/6789",
            "123 / 45 / 6789",
            "123;45;6789",
            "123|45|6789",
            "123::45::6789",
            "123 -- 45 -- 6789",
            "123\n45\n6789",
            "123,\r\n45,\r\n6789",
        ),
    ),
    PhiPattern(
        "phone",
        r"(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{3}\)"
        + _WS
        + r"?|(?:\b|_)[0-9]{3}"
        + _GROUP_SEP
        + r")[0-9]{3}"
        + _GROUP_SEP
        + r"[0-9]{4}(?:\b|_)"
        r"|\+[0-9][0-9 .-]{6,}[0-9]"
        r"|\+[0-9]{1,3}" + _WS + r"?\(0\)" + _WS + r"?[0-9][0-9 .-]{5,}[0-9]"
        r"|(?:\b|_)(?i:phone|tel|telephone|fax|mobile|pager)(?:\b|_)[ \t:#=_]*[0-9]{3,4}" + _GROUP_SEP + r"[0-9]{4}"
        r"(?:\b|_)",
        "a telephone number, North American or international (+44 (0)20 ... too), or a local one after its"
        " label (phone, tel, fax, mobile, pager)",
        (
            "(555) 123-4567",
            "555-123-4567",
            "555.123.4567",
            "555/867/5309",
            "555,867,5309",
            "555\t867\t5309",
            "+1 555 123 4567",
            "+44 20 7946 0958",
            "+44 (0)20 7946 0958",
            "phone 867-5309",
            "phone: 7946 0958",
            "phone 867/5309",
            "tel 867\t5309",
            "555 / 867 / 5309",
            "555..867..5309",
            "555\n867\n5309",
            "phone 867--5309",
        ),
    ),
    PhiPattern(
        "date",
        r"(?:\b|_)[0-9]{4}[-/][0-9]{1,2}[-/][0-9]{1,2}"
        r"|(?:\b|_)[0-9]{1,2}[-/][0-9]{1,2}[-/][0-9]{2,4}(?:\b|_)"
        r"|(?:\b|_)[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{4}(?:\b|_)"
        r"|\b" + _MONTH + r"\.?" + _WS + r"+[0-9]{1,4}(?:st|nd|rd|th)?\b(?:," + _WS + r"*[0-9]{4})?"
        r"|\b[0-9]{1,2}(?:st|nd|rd|th)?" + _WS + r"+" + _MONTH + r"\b\.?(?:,?" + _WS + r"+[0-9]{4})?"
        r"|(?:\b|_)[0-9]{1,2}[-/.]" + _MONTH + r"[-/.][0-9]{2,4}(?:\b|_)"
        r"|(?:\b|_)[0-9]{1,2}" + _MONTH + r"(?:19|20)[0-9]{2}(?:\b|_)"
        r"|\b" + _MONTH + r"[-/.][0-9]{1,2}[-/.,][0-9]{4}(?:\b|_)",
        "a date more precise than a year: 1984-03-12, 3/12/84, 12.03.1984, March 12, March 1984,"
        " 12-Mar-1984, 12Mar1984, Mar-12-1984 (dotted dates need a four-digit year last, so version numbers"
        " such as 1.10.12 and 2024.03.12 pass; a month run into digits needs a four-digit year: 1dec234 passes)",
        (
            "1984-03-12",
            "03/12/1984",
            "3/12/84",
            "12.03.1984",
            "March 12, 1984",
            "12 Mar 1984",
            "Sept 3rd",
            "12-Mar-1984",
            "12Mar1984",
            "Mar-12-1984",
        ),
    ),
    PhiPattern(
        "titled_name",
        r"\b(?:M[Rr]|M[Rr][Ss]|M[Ss]|Miss|MISS|M[Xx]|D[Rr]|Prof|PROF|Doctor|Nurse|Sister)\.?"
        + _WS
        + r"+"
        + _NAME
        + r"|\b(?:Patient|patient|Pt|pt)(?:\.|"
        + _WS
        + r"*[:=])?"
        + _WS
        + r"+[A-Z][a-z'-]+(?:"
        + _WS
        + r"+[A-Z][A-Za-z'-]+)?"
        r"|\b(?i:name)" + _WS + r"*[:=]" + _WS + r"*[A-Za-z][A-Za-z'-]*(?:" + _WS + r"+[A-Z][A-Za-z'-]+)?"
        # a person's name label, its value quoted or not (JSON, a Python dict in a driver's error,
        # a list); FHIR's `family` and `given` as search parameters (with a modifier) or JSON keys
        r"|(?:(?:\b|_)" + _NAME_LABEL + r"|(?:[?&;](?i:family|given|name)|[\"'](?i:family|given)|\b(?i:given))"
        r"(?::[A-Za-z-]+|%3[Aa][A-Za-z-]+)?)"
        r"[\"']?" + _WS + r"*(?:[:=]|%3[Dd])" + _WS + r"*(?:\[" + _WS + r"*)?"
        r"(?:\"[^\"\r\n]{1,64}\"?|'[^'\r\n]{1,64}'?|\(*[A-Za-z][A-Za-z'-]*(?:" + _WS + r"+[A-Z][A-Za-z'-]+)?)"
        # a bare `family` (not CSS's `font-family`) before a capitalised name
        r"|(?:^|[^-A-Za-z0-9_])(?i:family)[ \t]*[:=][ \t]*[A-Z][A-Za-z'-]+",
        "a name after a title or label, the label's value quoted or not: Dr Smith, Mrs. Jane Doe, patient"
        " Alice, Pt: John Smith, name=Bob, first_name=Jane, {'last_name': 'Okafor'}, FHIR's family= and given=",
        (
            "Dr Smith",
            "Dr. Adaeze Okafor",
            "Mrs. Jane Doe",
            "Mr O'Brien",
            "patient Alice",
            "name: Bob",
            "Pt: John Smith",
            "first_name=Jane",
            'first_name": "Jane Q Doe"',
            "last_name': 'Okafor'",
            "?family=Okafor",
            "&given:contains=Ada",
            '"given": ["Adaeze"',
            "&family=Okafor",
        ),
    ),
    PhiPattern(
        "long_number",
        r"(?:\b|_)(?:[A-Za-z]{1,3}[0-9]{5,}|[0-9]{6,})(?:\b|_)",
        "a standalone run of six or more digits, or a short prefix and five or more digits (MRN-like);"
        " digits inside a longer hex or alphanumeric token (trace ids) are left alone",
        ("12345678", "E1234567", "MR00123456"),
    ),
)

PHI_REGEX: Final = "|".join(f"(?:{p.regex})" for p in PHI_PATTERNS)
"""All patterns as one alternation, in priority order; the collector renders it into SQL."""

PHI_PATTERN: Final = re.compile(PHI_REGEX, re.ASCII)
UUID_PATTERN: Final = "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
"""A value that is one whole UUID is random, never PHI, and is not scrubbed: a UUID group such as
`e1234567` or `12345678` would otherwise read as an MRN (about one UUID in twenty)."""
_IS_UUID: Final = re.compile(UUID_PATTERN).fullmatch
_NAMED: Final = [(p.name, re.compile(p.regex, re.ASCII)) for p in PHI_PATTERNS]


def scrub(text: str) -> str:
    """`text` with every PHI match replaced by `[REDACTED]`, ready to export: its first
    `MAX_TEXT` characters, a lone surrogate (a file name decoded with `surrogateescape`, which
    protobuf refuses to encode) replaced by U+FFFD; a whole UUID is kept as it is."""
    if len(text) == 36 and _IS_UUID(text):
        return text
    end = MAX_TEXT
    if text.isascii():
        text = text[:_WINDOW]  # nothing past it is read: the patterns' time grows faster than the text
    else:
        text, end = _unhidden(text)
    out = PHI_PATTERN.sub(REDACTED, text) if len(text) <= end else _scrubbed_head(text, end)
    return out if out.isascii() else _SURROGATE.sub("\ufffd", out)


def _unhidden(text: str) -> tuple[str, int]:
    """A non-ASCII `text` as the patterns should read it, and where it is cut: NFKD-folded
    (full-width digits, a no-break space), without combining marks (an accent or a low line
    inside an address or a number) or invisible characters (a zero-width space inside an MRN) and
    with dashes read as hyphens, when that form differs and shows PHI; else
    `text` as it is, so text without hidden PHI leaves unchanged. A text past
    `_FOLD_BOUND` is folded that far, and its folded form cut `_LOOKAHEAD` before its end at the
    latest, so no identifier cut by the bound is kept in part."""
    bounded = len(text) > _FOLD_BOUND
    head = text[:_FOLD_BOUND]
    folded = _hidden().sub("", unicodedata.normalize("NFKD", head)).translate(_as_ascii())
    end = max(0, min(MAX_TEXT, len(folded) - _LOOKAHEAD)) if bounded else MAX_TEXT
    # PHI anywhere in the folded form, not only in its window: what the written window holds may
    # sit past the folded form's window when the text before it grew (U+FDFA is 18 characters:
    # 300 of them put a zero-width-spaced SSN past it, and the written window was kept with the
    # SSN: a review). The folded window is kept then, and nothing past it.
    if folded != head and PHI_PATTERN.search(folded) is not None:
        return folded[: end + _LOOKAHEAD], end
    return head[:_WINDOW], MAX_TEXT


def _scrubbed_head(text: str, end: int = MAX_TEXT) -> str:
    """The first `end` characters of a longer `text`, scrubbed as part of the whole: read
    `_LOOKAHEAD` characters further, so a match that starts before the cut and ends after it is
    redacted whole (cutting first left `123-45-678` of an SSN, `jane.doe@example.o` of an
    address: fragments no pattern matches)."""
    window = text[: end + _LOOKAHEAD]
    parts: list[str] = []
    kept = 0
    for match in PHI_PATTERN.finditer(window):
        start = match.start()
        if start >= end:
            break
        parts += (window[kept:start], REDACTED)
        kept = match.end()
    if kept < end:
        parts.append(window[kept:end])
    return "".join(parts)


def contains_phi(text: str) -> bool:
    """True when `text` matches any PHI pattern."""
    return PHI_PATTERN.search(text) is not None


def phi_kinds(text: str) -> list[str]:
    """The names of the patterns `text` matches, for error messages that must not repeat it."""
    return [name for name, rx in _NAMED if rx.search(text)]


_DOMAIN: Final = b"clinotel.workflow.v1\x1f"
_BLOCK: Final = 64  # SHA-256's block size


class Pseudonymizer:
    """HMAC-SHA256 (RFC 2104) with the key schedule done once: a third of `hmac.digest`'s cost
    per identifier, which matters on a hot clinical path. Same output as `hmac.digest`."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the pseudonym key must be at least {MIN_KEY_BYTES} bytes")
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._inner.update(_DOMAIN)  # every message starts with it
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def __repr__(self) -> str:
        return "Pseudonymizer(<key redacted>)"

    def __call__(self, identifier: str | int) -> str:
        """The pseudonymous workflow id of `identifier` (see `pseudonymize`): text, or a whole
        number (an MRN read from an integer column is the same identifier as its digits)."""
        if type(identifier) is int:
            identifier = str(identifier)
        elif not isinstance(identifier, str):
            raise ValueError(f"an identifier is text or a whole number, not {type(identifier).__name__}")
        ident = identifier.strip()
        if not ident:
            raise ValueError("an empty identifier has no pseudonym")
        inner = self._inner.copy()
        inner.update(ident.encode("utf-8"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()[:32]


def pseudonymize(identifier: str | int, key: bytes) -> str:
    """The pseudonymous workflow id of a raw identifier (MRN, encounter or appointment id).

    HMAC-SHA256 keyed with the tenant's secret, truncated to 128 bits (32 hex digits). The same key
    and identifier give the same pseudonym in any process, so late outcomes join their workflow;
    without the key the identifier cannot be recovered or confirmed by guessing.
    """
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the pseudonym key must be at least {MIN_KEY_BYTES} bytes")
    if type(identifier) is int:
        identifier = str(identifier)
    elif not isinstance(identifier, str):
        raise ValueError(f"an identifier is text or a whole number, not {type(identifier).__name__}")
    ident = identifier.strip()
    if not ident:
        raise ValueError("an empty identifier has no pseudonym")
    return hmac.digest(key, _DOMAIN + ident.encode("utf-8"), "sha256")[:16].hex()
