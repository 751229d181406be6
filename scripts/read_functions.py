"""Writes the read port's function allowlist (collector/src/clinotel/collector/readport/functions.txt).

The list is data a person reviews: run this after upgrading chDB, read the diff, commit it. A
function the engine gains is refused to readers until it is in the committed list. Selection:
whole categories of pure computation, plus the named harmless functions of the catch-all
categories; aliases are resolved by the engine at check time, so only canonical names are listed.

    .venv/bin/python scripts/read_functions.py > collector/src/clinotel/collector/readport/functions.txt
"""

from __future__ import annotations

import tempfile

import chdb

CATEGORIES = {
    "Aggregate Functions", "Arithmetic", "Arrays", "Bit", "Bitmap", "Comparison", "Conditional", "Dates and Times",
    "Distance", "Encoding", "Financial", "Geo", "Geo Polygon", "Hash", "IP Address", "JSON", "Logical", "Map",
    "Mathematical", "Null", "Random Number", "Rounding", "String", "String Replacement", "String Search",
    "String Splitting", "Time Series", "Time Window", "Tuple", "Type Conversion", "URL", "UUID",
}  # fmt: skip
"""Categories whose functions compute on their arguments only."""

NAMED = {
    "bar", "byteSize", "countDigits", "currentDatabase", "defaultValueOfArgumentType", "defaultValueOfTypeName",
    "errorCodeToName", "finalizeAggregation", "formatReadableDecimalSize", "formatReadableQuantity",
    "formatReadableSize", "formatReadableTimeDelta", "getSetting", "getSettingOrDefault", "getSizeOfEnumType",
    "identity", "ignore", "initializeAggregation", "isConstant", "isDecimalOverflow", "materialize", "neighbor",
    "parseReadableSize", "parseReadableSizeOrNull", "parseReadableSizeOrZero", "parseTimeDelta",
    "parseISO8601Duration", "runningAccumulate", "runningDifference", "runningDifferenceStartingWithFirstValue",
    "toColumnTypeName", "toTypeName", "transform", "variantElement", "variantType", "version", "visibleWidth",
    "MACNumToString", "MACStringToNum", "MACStringToOUI", "serverTimeZone", "timeZone", "timeZoneOf",
    "timeZoneOffset", "toTimeZone", "width_bucket", "sparkBar", "lttb", "scalarProduct", "levenshteinDistance",
    "levenshteinDistanceUTF8", "byteSlice", "caseWithExpr", "caseWithoutExpr", "caseWithoutExpression",
    "displayName", "revision",  # clickhouse-go asks for both when it connects (Grafana)
}  # fmt: skip
"""Functions of the catch-all categories ('Other' and none) that compute on their arguments only."""

EXCLUDED = {
    "aggThrow",  # throws by design: an oracle
    "generateSerialID",  # writes a counter
    "fuzzBits",
    "formatRow",  # formats that read schema files
    "formatRowNoNewline",
}
"""Functions of the allowed categories that a reader still may not call."""


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        session = chdb.connect(scratch)
        rows = (
            session.query("SELECT name, categories, alias_to FROM system.functions ORDER BY name", "TSVRaw")
            .bytes()
            .decode()
        )
        version = session.query("SELECT version()", "TSVRaw").bytes().decode().strip()
        session.close()
    allowed = []
    for line in rows.splitlines():
        name, category, alias_to = line.split("\t")
        if alias_to or name.startswith("_") or name in EXCLUDED:
            continue
        if category in CATEGORIES or name in NAMED:
            allowed.append(name)
    print(f"# Functions a reader may call through the read port (engine {version}), one per line.")
    print("# Written by scripts/read_functions.py; review the diff after each engine upgrade.")
    print("\n".join(allowed))


if __name__ == "__main__":
    main()
