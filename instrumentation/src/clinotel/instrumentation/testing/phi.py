"""PHI-like values that must never leave a process: identifiers, contact details, dates, names.

Each entry is (kind, value); `needle` is the part whose presence in exported bytes is a leak.
Every value is made up. Feed them to your own service and assert that `leaks(value)` appears
nowhere in what `capture()` saw; clinotel's tests do the same for the library and the collector.
"""

from __future__ import annotations

__all__ = ["LABELS", "PHI_CORPUS", "leaks", "needle"]

PHI_CORPUS: list[tuple[str, str]] = [
    # medical record numbers and other identifiers
    ("mrn", "MRN 00123456"),
    ("mrn", "MRN: 7781234"),
    ("mrn", "mrn=A99817263"),
    ("mrn", "E1234567"),
    ("mrn", "MR00998877"),
    ("mrn", "4455667788"),
    ("mrn", "encounter #88172635"),
    ("mrn", "CSN 55512341"),
    ("mrn", "patient_id=P7781923"),
    ("mrn", "appt 99120034"),
    ("mrn", "account 000912345"),
    ("mrn", "NHS 943 476 5919"),
    ("mrn", "MRN \uff10\uff10\uff11\uff12\uff13\uff14\uff15\uff16"),  # full-width digits
    ("mrn", "MRN 0012\u200b3456"),  # a zero-width space inside the number
    ("mrn", "MRN 0077\u034f1234"),  # a combining grapheme joiner
    ("mrn", "MRN_20417733"),  # an underscore after the label (a word character: no \\b)
    ("mrn", "acct_44719023"),
    ("mrn", "Patient_ID_7781923"),
    ("mrn", "encounter_id=918273645"),
    ("mrn", '{"mrn":"47118830"}'),  # a label in JSON
    ("mrn", "#MRN47118830"),  # a short label run into its number
    ("mrn", "MRN (98765)"),
    ("mrn", "/fhir/Patient/98765"),
    ("mrn", "MRN \u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668"),  # Arabic-Indic digits
    ("mrn", "\u041cRN 20418855"),  # a Cyrillic M in the label
    # social security numbers
    ("ssn", "123-45-6789"),
    ("ssn", "987-65-4321"),
    ("ssn", "078 05 1120"),
    ("ssn", "SSN 219-09-9999"),
    ("ssn", "ssn: 457-55-5462"),
    ("ssn", "ssn_321-54-9876"),
    ("ssn", "123\u00ad-45-6789"),  # a soft hyphen
    ("ssn", "219\u201309\u20139999"),  # en dashes
    ("ssn", "123\u0332-45-6789"),  # a combining low line
    ("ssn", "123\u2800-45-6789"),  # a braille blank
    ("ssn", "123.45.6789"),
    ("ssn", "123_45_6789"),
    ("ssn", "\u0661\u0662\u0663-\u0664\u0665-\u0666\u0667\u0668\u0669"),  # Arabic-Indic digits
    # phone numbers
    ("phone", "(555) 123-4567"),
    ("phone", "555-867-5309"),
    ("phone", "555.201.7788"),
    ("phone", "+1 555 010 9999"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "+33 1 42 68 53 00"),
    ("phone", "617-555-0142"),
    ("phone", "tel_555-310-7788"),
    ("phone", "555\u00a0867\u00a02309"),  # no-break spaces
    ("phone", "555\u20dd-867-5309"),  # a combining enclosing circle
    ("phone", "+44 (0)20 7946 0958"),
    ("phone", "phone 867-5309"),
    ("phone", "\u096b\u096b\u096b-\u096e\u096c\u096d-\u096b\u0969\u0966\u096f"),  # Devanagari digits
    # e-mail addresses
    ("email", "jane.doe@example.org"),
    ("email", "j.smith+er@hospital.example.com"),
    ("email", "PATIENT_77@mail.example.net"),
    ("email", "a.okafor@clinic.example.co.uk"),
    ("email", "guardian-of-child@example.com"),
    ("email", "jane.doe\u0301@example.org"),  # a combining acute accent
    ("email", "?email=jane.doe%40example.org"),  # percent-encoded in a URL
    # dates of birth and other full dates
    ("dob", "1984-03-12"),
    ("dob", "03/12/1984"),
    ("dob", "3/12/84"),
    ("dob", "12.03.1984"),
    ("dob", "March 12, 1984"),
    ("dob", "12 Mar 1984"),
    ("dob", "Sept 3rd"),
    ("dob", "DOB: 1971"),
    ("dob", "date of birth 2/29/2000"),
    ("dob", "2019/07/04"),
    ("dob", "born July 1990"),
    ("dob", "dob_1979-11-23"),
    ("dob", "born 12-Mar-1984"),
    ("dob", "12Mar1984"),
    ("dob", "Mar-12-1984"),
    ("dob", "DOB \u0967\u096f\u096e\u096a-\u0966\u0969-\u0967\u0968"),  # Devanagari digits
    # names after titles and labels
    ("name", "Dr Smith"),
    ("name", "Dr. Adaeze Okafor"),
    ("name", "Mrs. Jane Doe"),
    ("name", "Mr O'Brien"),
    ("name", "Ms Garcia"),
    ("name", "Miss Patel"),
    ("name", "Prof Nakamura"),
    ("name", "patient Alice Johnson"),
    ("name", "Patient Bob"),
    ("name", "name: Carlos Mendez"),
    ("name", "Nurse Ratched"),
    ("name", "MR JONES"),
    ("name", "Mrs.\u0301 Jane Doe"),  # a combining accent after the title
    ("name", "Pt: John Smith"),
    ("name", "patient_name=Jane Doe"),
    ("name", "first_name=Jane"),
    ("name", "\u041crs. Jane Doe"),  # a Cyrillic M in the title
]

# What would identify the person if it appeared in exported bytes: the value minus its label.
LABELS = (
    "MRN", "mrn=", "MRN:", "encounter #", "CSN", "patient_id=", "appt", "account", "NHS", "SSN", "ssn:", "ssn_",
    "tel_", "dob_", "MRN_", "acct_", "Patient_ID_", "encounter_id=", "#MRN", "patient_name=", "first_name=",
)  # fmt: skip


def needle(value: str) -> str:
    """The identifying core of a corpus value (label words dropped, e.g. 'MRN 00123456' -> '00123456')."""
    core = value
    for label in ("date of birth ", "born ", "DOB: ", "DOB ", "name: ", "patient ", "Patient ", "phone ", "Pt: "):
        core = core.removeprefix(label)
    for label in sorted(LABELS, key=len, reverse=True):
        core = core.removeprefix(label).strip()
    for title in ("Dr. ", "Dr ", "Mrs. ", "Mr ", "Ms ", "Miss ", "Prof ", "Nurse ", "MR ", "Mrs.", "Dr."):
        core = core.removeprefix(title)
    return core.strip()


def leaks(value: str) -> list[str]:
    """The pieces of `value` that must not appear in any exported string: its identifying core
    and every piece of that core four characters or longer."""
    core = needle(value)
    return [core, *(p.strip(",") for p in core.split() if len(p.strip(",")) >= 4)]
