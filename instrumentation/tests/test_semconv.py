"""The registry is the single source of truth: its rules, its docs, its PHI patterns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clinotel.instrumentation._internal.gate import RESOURCE_GATE
from clinotel.instrumentation.testing.phi import PHI_CORPUS, leaks
from clinotel.semconv import (
    MAX_TEXT,
    PHI_PATTERNS,
    REDACTED,
    REGISTRY,
    AttrType,
    InvalidAttributeError,
    PhiClass,
    Pseudonymizer,
    Scope,
    contains_phi,
    phi_kinds,
    pseudonymize,
    render_markdown,
    scrub,
)
from clinotel.semconv import attributes as A
from clinotel.semconv.attributes import GROUPS

REPO = Path(__file__).resolve().parents[2]


def test_docs_are_generated_from_the_registry() -> None:
    doc = REPO / "docs" / "semantic-conventions.md"
    assert doc.read_text(encoding="utf-8") == render_markdown(REGISTRY, GROUPS), (
        "docs/semantic-conventions.md is stale: run `make docs`"
    )


def test_every_design_attribute_is_registered() -> None:
    design = """clinical.workflow.kind clinical.workflow.id clinical.workflow.stage clinical.tenant.id
    clinical.site clinical.department clinical.service_line clinical.cohort.age_band clinical.cohort.sex
    clinical.cohort.language clinical.cohort.payer_class clinical.cohort.race_ethnicity clinical.cohort.acuity
    clinical.decision.source clinical.decision.value clinical.decision.confidence clinical.decision.risk
    clinical.decision.model.name clinical.decision.model.version clinical.decision.fallback_reason
    clinical.decision.shadow clinical.rollout.mode clinical.rollout.cohort feature_flag.key
    feature_flag.result.variant feature_flag.provider.name clinical.review.action clinical.review.actor_role
    clinical.review.reason clinical.review.final_value clinical.review.latency_ms clinical.outcome.status
    clinical.outcome.label clinical.outcome.adverse_event clinical.outcome.escalation_needed
    clinical.ingest.source clinical.queue.name service.name service.version deployment.environment.name"""
    missing = [k for k in design.split() if k not in REGISTRY]
    assert missing == []


def test_tenant_is_a_resource_attribute_and_workflow_id_a_pseudonym() -> None:
    assert A.TENANT_ID.scope == (Scope.RESOURCE,)
    assert A.WORKFLOW_ID.phi is PhiClass.PSEUDONYM
    assert all(d.phi is PhiClass.QUASI for d in A.COHORT)


@pytest.mark.parametrize(
    ("definition", "value"),
    [
        (A.DECISION_CONFIDENCE, 0.0),
        (A.DECISION_CONFIDENCE, 1),
        (A.DECISION_VALUE, "ESI-2"),
        (A.DECISION_MODEL_VERSION, "2024.10.1"),
        (A.DECISION_MODEL_VERSION, "1.10.12"),
        (A.WORKFLOW_STAGE, "eligibility_check"),
        (A.COHORT_LANGUAGE, "so"),
        (A.COHORT_AGE_BAND, "80+"),
        (A.QUEUE_DEPTH, 0),
        (A.QUEUE_DEPTH, 2**63 - 1),
        (A.DECISION_CONFIDENCE, 1.0),
        (A.DECISION_SHADOW, False),
        (A.WORKFLOW_ID, "0123456789abcdef0123456789abcdef"),
    ],
)
def test_valid_values_pass_unchanged(definition: object, value: object) -> None:
    assert definition.validator()(value) == value  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("definition", "value", "phi"),
    [
        (A.DECISION_CONFIDENCE, 1.5, False),
        (A.DECISION_CONFIDENCE, float("nan"), False),
        (A.DECISION_CONFIDENCE, True, False),
        (A.DECISION_CONFIDENCE, "0.5", False),
        (A.QUEUE_DEPTH, 2.5, False),
        (A.QUEUE_DEPTH, -1, False),
        (A.QUEUE_DEPTH, 2**63, False),  # OTLP's int64 cannot carry it
        pytest.param(A.QUEUE_DEPTH, 10**400, False, id="10**400"),  # nor this (it made the check raise OverflowError)
        (A.REVIEW_LATENCY_MS, 2**64, False),  # a double key given an int is encoded as an int
        (A.DECISION_RISK, "extreme", False),
        (A.DECISION_RISK, ["high"], False),
        (A.DECISION_VALUE, "ESI 2 per Dr Smith", True),
        (A.DECISION_VALUE, "MRN 00123456", True),
        (A.DECISION_VALUE, "", False),
        (A.COHORT_SEX, "female; born 1984-03-12", True),
        (A.WORKFLOW_STAGE, "Review By Nurse", False),
        (A.WORKFLOW_ID, "MRN00123456", True),
        (A.WORKFLOW_ID, "00123456", True),
        (A.DECISION_SHADOW, 1, False),
    ],
)
def test_invalid_values_are_refused(definition: object, value: object, phi: bool) -> None:
    with pytest.raises(InvalidAttributeError) as info:
        definition.validator()(value)  # type: ignore[attr-defined]
    assert info.value.looks_like_phi is phi
    if isinstance(value, str) and contains_phi(value):
        assert value not in str(info.value), "an error message repeated a PHI-like value"


def test_free_text_is_redacted_not_refused() -> None:
    validate = REGISTRY["exception.message"].validator()
    assert validate("timeout calling EHR for MRN 00123456") == f"timeout calling EHR for {REDACTED}"
    assert validate("plain message") == "plain message"


def test_every_pattern_catches_its_examples_and_scrub_keeps_the_rest() -> None:
    for p in PHI_PATTERNS:
        rx = re.compile(p.regex, re.ASCII)
        for example in p.examples:
            assert rx.search(example), f"{p.name} misses its own example {example!r}"
            assert scrub(f"before {example} after") == f"before {REDACTED} after"


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("ssn_123-45-6789", "[REDACTED]"),  # the label and its number (an identifier's label is read past `_`)
        ("key 123-45-6789_x", "key [REDACTED]x"),
        ("tel_555-123-4567", "tel[REDACTED]"),
        ("dob_1984-03-12", "[REDACTED]"),
        ("report_03/12/1984_final", "report[REDACTED]final"),
        ("seen_12.03.1984", "seen[REDACTED]"),
        ("build 1.10.12_rc1", "build 1.10.12_rc1"),
        ("span_0af7651916cd43dd", "span_0af7651916cd43dd"),
    ],
)
def test_an_underscore_joining_a_number_to_a_word_hides_nothing(text: str, scrubbed: str) -> None:
    """Snake-case keys and file names glue numbers to words with `_`, which is a word character
    to `\\b`: a social security number, phone number or date joined so is still found (as long
    numbers were), and version numbers and hex ids stay as they are (found by an attacker's
    review)."""
    assert scrub(text) == scrubbed


def test_the_corpus_is_fully_scrubbed() -> None:
    assert len(PHI_CORPUS) >= 50
    for kind, value in PHI_CORPUS:
        for sentence in (f"refused: {value}.", f"failed: {kind} {value}", f"{value}"):
            out = scrub(sentence)
            assert all(piece not in out for piece in leaks(value)), (kind, out)


@pytest.mark.parametrize(
    "text",
    [
        "workflow triage",
        "decide",
        "ESI-2",
        "model v3.1 took 35 ms waiting for queue triage_nurse",
        "HTTP 503 from scheduling-api",
        "triage-gbm 1.10.12",
        "retry 3 of 5",
        "ConnectionRefusedError: [Errno 111] Connection refused",
    ],
)
def test_ordinary_operational_text_is_left_alone(text: str) -> None:
    assert scrub(text) == text


def test_phi_kinds_names_the_patterns_without_repeating_the_text() -> None:
    assert phi_kinds("call 555-123-4567 or jane@example.org") == ["email", "phone"]


def test_patterns_stay_in_the_re2_subset() -> None:
    forbidden = ["(?=", "(?!", "(?<=", "(?<!", "\\1", "(?P=", "\\s", "\\S"]
    for p in PHI_PATTERNS:
        for token in forbidden:
            assert token not in p.regex, f"{p.name} uses {token}, which ClickHouse (RE2) would read differently"


def test_pseudonyms_are_keyed_stable_and_not_the_identifier() -> None:
    key = b"k" * 32
    a = pseudonymize("MRN00123456", key)
    assert a == pseudonymize(" MRN00123456 ", key)
    assert a != pseudonymize("MRN00123456", b"x" * 32)
    assert re.fullmatch(r"[0-9a-f]{32}", a)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        pseudonymize("MRN1", b"short")
    with pytest.raises(ValueError, match="empty"):
        pseudonymize("  ", key)


def test_pseudonym_values_are_pinned() -> None:
    # Late outcomes join their workflow across processes and releases: a pseudonym must never
    # change for a given key and identifier (values computed once, HMAC-SHA256 of RFC 2104).
    assert pseudonymize("MRN00123456", b"k" * 32) == "9bbb59a03f328bdde824f5c6007af4be"
    assert Pseudonymizer(b"0123456789abcdef")("ENC-0042") == "e49b8ec64857bc9f3c33717689b40207"


def test_the_fast_pseudonymizer_is_standard_hmac_sha256() -> None:
    for key in (b"k" * 16, b"0123456789abcdef" * 4, b"long-key" * 20):
        fast = Pseudonymizer(key)
        for ident in ("MRN1", " ENC-0042 ", "appointment/77", "ü-umlaut"):
            assert fast(ident) == pseudonymize(ident, key)
    assert "secret" not in repr(Pseudonymizer(b"secret-key-material"))


def test_registry_refuses_duplicates_and_types_are_consistent() -> None:
    with pytest.raises(ValueError, match="twice"):
        REGISTRY.add(A.SITE)
    for d in REGISTRY:
        if d.type in (AttrType.INT, AttrType.DOUBLE, AttrType.BOOLEAN):
            assert not d.values, d.key
            assert d.pattern is None, d.key
        assert d.group in GROUPS, d.key


def test_a_whole_uuid_is_kept_though_its_groups_look_like_an_mrn() -> None:
    # service.instance.id is a random UUID: about one in twenty has a group such as e1234567
    for value in ("e1234567-2498-45ec-bb1f-bda77a061be5", "12345678-2498-45ec-bb1f-bda77a123456"):
        assert scrub(value) == value
        assert RESOURCE_GATE.sanitize({"service.instance.id": value}, counts := {}) is None
        assert counts == {}
    assert scrub("MRN e1234567") == REDACTED
    assert scrub("12345678") == REDACTED


@pytest.mark.parametrize(
    ("definition", "value"),
    [
        (A.CHANGE_ACTOR, "Jane Smith"),  # a person's name matches no PHI regex, yet is one
        (A.COHORT_AGE_BAND, "jane smith"),
        (A.DECISION_MODEL_NAME, "Smith, Jane (DOB 03/12)"),
        (A.DECISION_CONFIDENCE, 4711235),  # a number out of range may be an identifier
    ],
)
def test_a_refused_value_is_never_repeated_in_its_error(definition: object, value: object) -> None:
    with pytest.raises(InvalidAttributeError) as info:
        definition.validator()(value)  # type: ignore[attr-defined]
    message = str(info.value)
    assert str(value) not in message
    assert "jane" not in message.lower()
    assert "4711235" not in message


@pytest.mark.parametrize(
    "value", ["jane.doe@example.org", "123-45-6789", "555-123-4567", "00123456789", "MRN 00123456"]
)
def test_a_long_text_is_cut_without_leaving_part_of_an_identifier(value: str) -> None:
    """Past `MAX_TEXT` characters a text is cut; an identifier that crosses the cut, wherever it
    falls in it, is redacted whole (cut first, `123-45-678` was left: no pattern matches it)."""
    for shift in range(len(value) + 2):
        text = "x" * (MAX_TEXT - shift) + " " + value + " and so on" * 100
        out = scrub(text)
        assert len(out) <= MAX_TEXT + len(REDACTED)
        assert not any(c.isdigit() or c == "@" for c in out), f"a piece of {value!r} was left at shift {shift}"


@pytest.mark.parametrize(
    "text",
    [
        "MRN 0012\u200b3456",  # a zero-width space inside the number (pasted from a chart viewer)
        "MRN 0012\u2060345\u200d6",  # word joiner, zero-width joiner
        "MRN \uff10\uff10\uff11\uff12\uff13\uff14\uff15\uff16",  # full-width digits
        "SSN 123\u00ad-45-6789",  # a soft hyphen
        "call 555\u00a0123\u00a04567",  # no-break spaces
        "born 1984\u200b-03-12",
        "MRN 0012\u034f3456",  # a combining grapheme joiner
        "record 123\U000e004145678",  # a tag character
        "SSN 123\u201345\u20136789",  # en dashes, as a word processor writes them
        "born 1984\u201303\u201312",
        "call 555\u2011867\u20112309",  # non-breaking hyphens
        "call 555\u2215867\u22155309",  # division slashes (2026-12-07 reviews)
        "call 555\u00b7867\u00b75309",  # middle dots
        "SSN 123\u300145\u30016789",  # ideographic commas
        "call 555\u2236867\u22365309",  # ratio colons
    ],
)
def test_characters_that_hide_an_identifier_do_not_hide_it(text: str) -> None:
    """Invisible format characters and full-width forms read as the characters they stand for:
    `MRN 0012\\u200b3456` kept `3456`, full-width digits passed whole."""
    out = scrub(text)
    assert REDACTED in out
    assert not any(c.isdigit() for c in out), out


@pytest.mark.parametrize(
    "text", ["Größe 12 cm", "café au lait", "\u200bplain", "ｆｕｌｌ width, no number", "naïve 42"]
)
def test_text_without_hidden_phi_leaves_as_written(text: str) -> None:
    assert scrub(text) == text


def test_a_long_text_is_read_no_further_than_past_the_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unfolding hidden characters reads only the part of a text that is kept (and the look past
    its cut): a megabyte of non-ASCII text was normalised and searched whole, where the patterns'
    time grows faster than the text."""
    from clinotel.semconv import _phi

    read: list[int] = []
    normalize = _phi.unicodedata.normalize

    def spy(form: str, text: str) -> str:
        read.append(len(text))
        return normalize(form, text)  # type: ignore[arg-type]

    monkeypatch.setattr(_phi.unicodedata, "normalize", spy)
    out = scrub("é MRN 0012\u200b3456 " + "A" * 1_000_000)
    assert out.startswith("e [REDACTED] ")  # a text with hidden PHI leaves in its folded form
    assert read
    assert max(read) <= 3 * MAX_TEXT


@pytest.mark.parametrize(
    "text",
    [
        "Dr Smith " + "\u00ad" * 300 + "x" * 4032 + " 123-45-6789 more",  # soft hyphens shorten the fold
        "\u200b" * 300 + "x" * 4030 + " jane.doe@example.org tail",
        "e\u0301" * 300 + "y" * 3700 + " 123-45-6789 more",  # decomposed accents (macOS file names)
        "\u200b" * 9000 + "MRN 00123456 " + "z" * 5000,  # past what is folded: nothing of it kept in part
    ],
)
def test_a_fold_that_shortens_a_long_text_keeps_no_part_of_an_identifier(text: str) -> None:
    """Folding drops invisible characters and composes accents, so a long text can come out
    shorter than the part that is kept: an identifier the first cut went through was kept in part
    (`123-45-678`) when the folded text was taken for the whole of it."""
    out = scrub(text)
    assert not any(c.isdigit() or c == "@" for c in out), out[-40:]


@pytest.mark.parametrize(
    "text",
    [
        "\ufdfa" * 300 + ("\u200b" * 100).join("987-65-4321") + " tail" * 2_000,
        "\ufdfa" * 240 + " MRN\u200b 0012\u200b3456 " + "x" * 3_000,
        "\u3316" * 900 + " ９８７-６５-４３２１ " + "y" * 4_000,  # a squared word is 6 characters in NFKD
    ],
)
def test_text_that_grows_when_folded_keeps_no_hidden_identifier_of_its_written_window(text: str) -> None:
    """Growth before a hidden identifier puts it past the folded form's window while the written
    window still holds it: the written window was kept, the SSN in it (a review). The folded form
    is read for PHI as far as the whole written window's form reaches."""
    out = scrub(text)
    assert not any(c.isdigit() or "\uff10" <= c <= "\uff19" for c in out), out[-60:]


DRIVER_AND_FHIR_TEXTS = [
    "(psycopg2.errors.UniqueViolation) [parameters: {'mrn': '98765', 'first_name': 'Adaeze', 'last_name': 'Okafor'}]",
    "DETAIL:  Key (mrn)=(98765) already exists.",
    '{"first_name": "Adaeze", "last_name": "Okafor", "mrn": "98765"}',
    "GET https://fhir.example/Patient?family=Okafor&given=Adaeze&_count=10",
    "retry for given=Adaeze family=Okafor",
    "GET /patients/98765/encounters",
    "status: key (mrn)=(98765)",
    "Key (mrn, site)=(98765, 3) already exists",
    "Key (last_name, first_name)=(Okafor, Adaeze) already exists",
    'Key ("MRN")=(98765) already exists',
    "Key (patient_mrn)=(98765) already exists",
    "Key (site2, mrn)=(3, 98765) already exists",
    'Key ("first_name", site)=(Adaeze, 3) already exists',
    "GET /patients/P98765/encounters",
    "GET /patients/abc-98765",
    '{"resourceType": "Patient", "name": [{"family": "Okafor", "given": ["Adaeze"]}]}',
    "GET /Patient?family:exact=Okafor&given:contains=Adaeze",
    "GET /Patient?name:exact=Okafor",
    '{"patient_name": "adaeze okafor"}',
]

ORDINARY_TEXTS = [
    '{"name": "sepsis-model", "version": "3.2.0"}',
    "{'name': 'triage_queue'}",
    "font-family: Helvetica",
    "address family=inet6",
    "Column family: cf_events",
    "GET /api/patient-lists/search",
]


@pytest.mark.parametrize("text", ORDINARY_TEXTS)
def test_names_of_things_are_not_taken_for_names_of_people(text: str) -> None:
    """A review of the patterns above found them redacting JSON `name` keys and CSS's and
    sockets' families: telemetry a person needs, with no PHI in it. (Still redacted, the price of
    the identifiers next to them: `/api/patients/v2`, `count(account) = 0`.)"""
    assert scrub(text) == text


@pytest.mark.parametrize("text", DRIVER_AND_FHIR_TEXTS)
def test_names_and_identifiers_as_drivers_and_fhir_write_them_are_redacted(text: str) -> None:
    """A database driver's parameters and constraint messages, JSON, FHIR search parameters and
    REST paths carried names and an MRN to the wire (a 2026-12-07 review)."""
    out = scrub(text)
    for piece in ("Adaeze", "Okafor", "98765"):
        assert piece not in out, out
