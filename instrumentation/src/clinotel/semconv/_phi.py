"""PHI patterns and pseudonyms: one definition, rendered to Python here and to SQL for the collector.

Every pattern is written in the common subset of Python's `re` (ASCII mode) and RE2, the engine
ClickHouse uses, so the library and the collector redact exactly the same text: no look-around,
no back-references, explicit whitespace classes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass
from typing import Final

__all__ = [
    "INVISIBLE",
    "MAX_TEXT",
    "MIN_KEY_BYTES",
    "PHI_PATTERN",
    "PHI_PATTERNS",
    "PHI_REGEX",
    "REDACTED",
    "PhiPattern",
    "Pseudonymizer",
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
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x2069),
    (0xFEFF, 0xFEFF),
)
"""Code point ranges of format characters that show nothing (the soft hyphen, zero-width spaces
and joiners, bidirectional marks, the byte order mark): read past when looking for PHI, here
and in the collector's SQL."""
_INVISIBLE: Final = re.compile("[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in INVISIBLE) + "]")
_LOOKAHEAD: Final = 256
"""How far past `MAX_TEXT` a long text is read, so that a match crossing the cut is seen whole."""
_WINDOW: Final = MAX_TEXT + _LOOKAHEAD
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


PHI_PATTERNS: Final[tuple[PhiPattern, ...]] = (
    PhiPattern(
        "labelled_identifier",
        r"\b(?i:mrn|mr#|csn|ssn|nhs|hcn|encounter|account|acct|patient[ _-]?id|appointment|appt"
        r"|member[ _-]?id|dob|birth[ _-]?date|date[ _-]of[ _-]birth)\b[ \t:#=]*[A-Za-z0-9/.-]*[0-9]"
        r"(?:[A-Za-z0-9/.-]|[ ][0-9])*",
        "an identifier introduced by its label: MRN 12345, appt=A17, DOB 1985",
        (
            "MRN 12345",
            "mrn:A1234",
            "encounter #7781",
            "DOB: 1985",
            "dob 12.03.1984",
            "patient_id=P77",
            "NHS 943 476 5919",
        ),
    ),
    PhiPattern(
        "email",
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
        "an e-mail address",
        ("jane.doe@example.org", "j+triage@mail.example.com"),
    ),
    PhiPattern(
        "ssn",
        r"(?:\b|_)[0-9]{3}[ -][0-9]{2}[ -][0-9]{4}(?:\b|_)",
        "a US social security number",
        ("123-45-6789", "123 45 6789"),
    ),
    PhiPattern(
        "phone",
        r"(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{3}\)" + _WS + r"?|(?:\b|_)[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}(?:\b|_)"
        r"|\+[0-9][0-9 .-]{6,}[0-9]",
        "a telephone number, North American or international",
        ("(555) 123-4567", "555-123-4567", "555.123.4567", "+1 555 123 4567", "+44 20 7946 0958"),
    ),
    PhiPattern(
        "date",
        r"(?:\b|_)[0-9]{4}[-/][0-9]{1,2}[-/][0-9]{1,2}"
        r"|(?:\b|_)[0-9]{1,2}[-/][0-9]{1,2}[-/][0-9]{2,4}(?:\b|_)"
        r"|(?:\b|_)[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{4}(?:\b|_)"
        r"|\b" + _MONTH + r"\.?" + _WS + r"+[0-9]{1,4}(?:st|nd|rd|th)?\b(?:," + _WS + r"*[0-9]{4})?"
        r"|\b[0-9]{1,2}(?:st|nd|rd|th)?" + _WS + r"+" + _MONTH + r"\b\.?(?:,?" + _WS + r"+[0-9]{4})?",
        "a date more precise than a year: 1984-03-12, 3/12/84, 12.03.1984, March 12, March 1984"
        " (dotted dates need a four-digit year, so version numbers such as 1.10.12 pass)",
        ("1984-03-12", "03/12/1984", "3/12/84", "12.03.1984", "March 12, 1984", "12 Mar 1984", "Sept 3rd"),
    ),
    PhiPattern(
        "titled_name",
        r"\b(?:M[Rr]|M[Rr][Ss]|M[Ss]|Miss|MISS|M[Xx]|D[Rr]|Prof|PROF|Doctor|Nurse|Sister)\.?"
        + _WS
        + r"+[A-Za-z][A-Za-z'-]+(?:"
        + _WS
        + r"+[A-Z][A-Za-z'-]+)?"
        r"|\b(?:Patient|patient|Pt|pt)\.?" + _WS + r"+[A-Z][a-z'-]+(?:" + _WS + r"+[A-Z][A-Za-z'-]+)?"
        r"|\b(?i:name)" + _WS + r"*[:=]" + _WS + r"*[A-Za-z][A-Za-z'-]*(?:" + _WS + r"+[A-Z][A-Za-z'-]+)?",
        "a name after a title or label: Dr Smith, Mrs. Jane Doe, patient Alice, name=Bob",
        ("Dr Smith", "Dr. Adaeze Okafor", "Mrs. Jane Doe", "Mr O'Brien", "patient Alice", "name: Bob"),
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
    text = text[:_WINDOW]  # nothing past it is read: the patterns' time grows faster than the text
    if not text.isascii():
        text = _unhidden(text)
    out = PHI_PATTERN.sub(REDACTED, text) if len(text) <= MAX_TEXT else _scrubbed_head(text)
    return out if out.isascii() else _SURROGATE.sub("\ufffd", out)


def _unhidden(text: str) -> str:
    """`text` as the patterns should read it when other characters hide what they look for:
    NFKC-folded (full-width digits, a no-break space) and without invisible format characters
    (a zero-width space inside an MRN), if that shows PHI the text as written does not; else
    `text` as it is, so text without hidden PHI leaves unchanged."""
    folded = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))[:_WINDOW]  # NFKC can lengthen it
    if folded == text or PHI_PATTERN.search(folded) is None:
        return text
    return folded


def _scrubbed_head(text: str) -> str:
    """The first `MAX_TEXT` characters of a longer `text`, scrubbed as part of the whole: read
    `_LOOKAHEAD` characters further, so a match that starts before the cut and ends after it is
    redacted whole (cutting first left `123-45-678` of an SSN, `jane.doe@example.o` of an
    address: fragments no pattern matches)."""
    window = text[:_WINDOW]
    parts: list[str] = []
    kept = 0
    for match in PHI_PATTERN.finditer(window):
        start = match.start()
        if start >= MAX_TEXT:
            break
        parts += (window[kept:start], REDACTED)
        kept = match.end()
    if kept < MAX_TEXT:
        parts.append(window[kept:MAX_TEXT])
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

    def __call__(self, identifier: str) -> str:
        """The pseudonymous workflow id of `identifier` (see `pseudonymize`)."""
        ident = identifier.strip()
        if not ident:
            raise ValueError("an empty identifier has no pseudonym")
        inner = self._inner.copy()
        inner.update(ident.encode("utf-8"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()[:32]


def pseudonymize(identifier: str, key: bytes) -> str:
    """The pseudonymous workflow id of a raw identifier (MRN, encounter or appointment id).

    HMAC-SHA256 keyed with the tenant's secret, truncated to 128 bits (32 hex digits). The same key
    and identifier give the same pseudonym in any process, so late outcomes join their workflow;
    without the key the identifier cannot be recovered or confirmed by guessing.
    """
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the pseudonym key must be at least {MIN_KEY_BYTES} bytes")
    ident = identifier.strip()
    if not ident:
        raise ValueError("an empty identifier has no pseudonym")
    return hmac.digest(key, _DOMAIN + ident.encode("utf-8"), "sha256")[:16].hex()
