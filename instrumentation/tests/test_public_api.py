"""The distribution's shape: its public names are pinned, its modules form no import cycle, and
no module reaches for another module's private names.

Public modules are those without an underscore in their path; each has `__all__`, and
`__init__.py` files only re-export. Adding or removing a public name is an API change: update
PUBLIC_API on purpose (as opentelemetry-python's public-symbols check asks reviewers to).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGES = ("clinotel.instrumentation", "clinotel.semconv")

PUBLIC_API: dict[str, set[str]] = {
    "clinotel.instrumentation": {
        "Action", "ActionStatus", "ActorRole", "Acuity", "AgeBand", "ClinotelError", "Cohort", "ConfigurationError",
        "Decision", "DecisionSource", "Dequeued", "FlagEvaluation", "IngestSource", "Mode", "Outcome",
        "OutcomeStatus", "PayerClass", "RaceEthnicity", "Review", "ReviewAction", "Risk", "RolloutCohort",
        "RolloutMode", "SanitizingSpanExporter", "Sex", "Stage", "StageHandle", "Telemetry",
        "TelemetryValidationError", "WorkflowContext", "WorkflowHandle", "configure", "current_stage",
        "current_workflow", "dequeue", "enqueue", "otlp_exporter", "pseudonymize", "record_action", "record_change",
        "record_decision", "record_flag", "record_outcome", "record_review", "record_shadow", "set_attribute",
        "stage", "workflow",
        # issue 17: inputs and data quality (drift), effort and rework (efficiency), feedback
        "ArrivalMode", "DataQuality", "Effort", "FeedbackCategory", "FeedbackSeverity", "Inputs", "ReworkKind",
        "VitalBand", "record_data_quality", "record_effort", "record_feedback", "record_inputs", "record_rework",
    },
    "clinotel.instrumentation.changes": {"ChangeSpec", "DEFAULT_SERVICE", "SendError", "send_changes"},
    "clinotel.instrumentation.errors": {"ClinotelError", "ConfigurationError", "TelemetryValidationError"},
    "clinotel.instrumentation.openfeature": {"ClinotelFlagHook"},
    "clinotel.instrumentation.testing": {
        "CapturedSpans", "FakeClock", "TEST_PSEUDONYM_KEY", "capture", "isolated", "span_to_dict",
    },
    "clinotel.instrumentation.testing.phi": {"LABELS", "PHI_CORPUS", "leaks", "needle"},
    "clinotel.instrumentation.testing.workflows": {"schedule", "triage"},
    "clinotel.semconv": {
        "ActionStatus", "ActorRole", "Acuity", "AgeBand", "AttrType", "AttributeDef", "AttributeValue",
        "CODE_PATTERN", "DASHES", "DecisionSource", "HEALTH_SPAN_NAME", "INVISIBLE", "IngestSource",
        "InvalidAttributeError", "LOOKALIKES", "ascii_folds",
        "LABEL_PATTERN", "Language", "MAX_TEXT", "MIN_KEY_BYTES", "OutcomeStatus", "PHI_PATTERN", "PHI_PATTERNS",
        "PHI_REGEX",
        "PSEUDONYM_PATTERN", "PayerClass", "PhiClass", "PhiPattern", "Pseudonymizer", "REDACTED", "REGISTRY",
        "TEXT_FOLD_BOUND",
        "TEXT_WINDOW",
        "RaceEthnicity", "Registry", "ReviewAction", "Risk", "RolloutCohort", "RolloutMode", "Scope", "Sex",
        "Stage", "UUID_PATTERN", "attributes", "contains_phi", "phi_kinds", "preview", "pseudonymize",
        "render_markdown", "scrub",
        "ArrivalMode", "FeedbackCategory", "FeedbackSeverity", "ReworkKind", "VitalBand",
    },
}  # fmt: skip
# The registry's definitions, one constant per attribute: their keys are pinned by
# docs/semantic-conventions.md, which test_semconv checks is generated from them.
UNPINNED = {"clinotel.semconv.attributes"}


def _modules() -> dict[str, Path]:
    """Every module of the distribution, by dotted name."""
    out: dict[str, Path] = {}
    for package in PACKAGES:
        root = SRC.joinpath(*package.split("."))
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(SRC).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _public(module: str) -> bool:
    return not any(part.startswith("_") for part in module.split("."))


def test_every_public_module_is_pinned() -> None:
    public = {m for m in MODULES if _public(m)}
    assert public - UNPINNED == set(PUBLIC_API), "a public module appeared or went: pin its names"


@pytest.mark.parametrize("module", sorted(PUBLIC_API))
def test_public_names_are_pinned(module: str) -> None:
    mod = importlib.import_module(module)
    assert set(mod.__all__) == PUBLIC_API[module]
    missing = [n for n in mod.__all__ if getattr(mod, n, None) is None]
    assert missing == [], f"{module}.__all__ names what it lacks"


def test_package_inits_only_re_export() -> None:
    """`__init__.py` files hold imports, `__all__` and (for the SDK-backed names) `__getattr__`."""
    for module, path in MODULES.items():
        if path.name != "__init__.py":
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            allowed = (ast.Import, ast.ImportFrom, ast.If, ast.Try, ast.Expr)
            if isinstance(node, ast.Assign):
                assert [t.id for t in node.targets if isinstance(t, ast.Name)] == ["__all__"], module
            elif isinstance(node, ast.FunctionDef):
                assert node.name == "__getattr__", module
            else:
                assert isinstance(node, allowed), f"{module}: {ast.dump(node)[:80]}"


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path) -> list[tuple[ast.ImportFrom | ast.Import, bool]]:
    """Every import statement of a module, function-level ones included, with whether it runs
    (False under `if TYPE_CHECKING:`)."""
    out: list[tuple[ast.ImportFrom | ast.Import, bool]] = []

    def visit(node: ast.AST, runs: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                out.append((child, runs))
            visit(child, runs and not _type_checking(child))

    visit(ast.parse(path.read_text(encoding="utf-8")), True)
    return out


def _graph() -> dict[str, set[str]]:
    """module -> the distribution's modules it imports when it runs."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for node, runs in _imports(path):
            if not runs:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
            graph[module] |= {t for t in targets if t in MODULES and t != module}
    return graph


def test_the_modules_form_no_import_cycle() -> None:
    graph = _graph()
    assert graph["clinotel.instrumentation"], "the graph sees the imports"
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> None:
        if module in path:
            cycle = [*path[path.index(module) :], module]
            raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
        if module in done:
            return
        path.append(module)
        for target in sorted(graph[module]):
            visit(target)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_no_module_imports_another_modules_private_names() -> None:
    offenders = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases: set[str] = set()
        for node, _ in _imports(path):
            if isinstance(node, ast.ImportFrom):
                for a in node.names:
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        offenders.append(f"{module}: from {node.module} import {a.name}")
                    if f"{node.module}.{a.name}" in MODULES:
                        aliases.add(a.asname or a.name)
            else:
                aliases |= {a.asname or a.name.split(".")[0] for a in node.names}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                offenders.append(f"{module}:{node.lineno} {node.value.id}.{node.attr}")
    assert offenders == []


def test_only_the_sdk_modules_import_the_sdk() -> None:
    """The workflow calls run on the OpenTelemetry API alone; the SDK is imported by the modules
    behind the `sdk` extra (and the test support built on them)."""
    sdk_side = {
        "clinotel.instrumentation._internal.sdk",
        "clinotel.instrumentation._internal.export",
        "clinotel.instrumentation.testing._capture",
        "clinotel.instrumentation.changes",  # a tool's module (sending change events), behind `sdk`
    }
    for module, path in MODULES.items():
        for node, runs in _imports(path):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if runs and any(n.startswith(("opentelemetry.sdk", "opentelemetry.exporter")) for n in names):
                assert module in sdk_side, f"{module} imports the SDK"
