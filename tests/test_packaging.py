"""The layout rules of the design: what each distribution may depend on, and its public names."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution

from packaging.requirements import Requirement

import clinotel.instrumentation
import clinotel.semconv
from tests.conftest import REPO

HEAVY = {"chdb", "chdb-core", "clickhouse-connect", "grafanalib"}


def _name(req: str) -> str:
    return re.sub(r"[-_.]+", "-", Requirement(req).name).lower()


def test_instrumentation_declares_no_heavy_dependency() -> None:
    project = tomllib.loads((REPO / "instrumentation" / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    for extra in project.get("optional-dependencies", {}).values():
        declared |= {_name(r) for r in extra}
    assert declared & HEAVY == set()


def test_instrumentation_pulls_no_heavy_dependency_transitively() -> None:
    seen: set[str] = set()
    todo = ["clinotel-instrumentation"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        for raw in requires:
            req = Requirement(raw)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue  # an extra's requirement, not installed by default
            todo.append(_name(raw))
    assert "opentelemetry-sdk" in seen, "the walk found the real dependency tree"
    assert seen & HEAVY == set(), f"clinotel-instrumentation pulls {seen & HEAVY}"


def test_importing_the_library_loads_no_heavy_module_and_configures_nothing() -> None:
    code = (
        "import sys, clinotel.instrumentation, clinotel.semconv\n"
        "from opentelemetry import trace\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('chdb', 'clickhouse_connect', 'grafanalib', 'grpc')]\n"
        "print(heavy, type(trace.get_tracer_provider()).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[] ProxyTracerProvider"


def test_clinotel_is_a_namespace_package() -> None:
    for top in ("instrumentation/src", "src"):
        assert not (REPO / top / "clinotel" / "__init__.py").exists()


INSTRUMENTATION_API = {
    "Action", "ActionStatus", "ActorRole", "Acuity", "AgeBand", "ClinotelError", "Cohort", "ConfigurationError",
    "Decision", "DecisionSource", "Dequeued", "FlagEvaluation", "IngestSource", "Mode", "Outcome", "OutcomeStatus",
    "PayerClass", "RaceEthnicity", "Review", "ReviewAction", "Risk", "RolloutCohort", "RolloutMode",
    "SanitizingSpanExporter", "Sex", "Stage", "StageHandle", "Telemetry", "TelemetryValidationError",
    "WorkflowContext", "WorkflowHandle", "configure", "current_stage", "current_workflow", "dequeue", "enqueue",
    "otlp_exporter",
    "pseudonymize", "record_action", "record_decision", "record_flag", "record_outcome", "record_review",
    "record_shadow", "set_attribute", "stage", "workflow",
}  # fmt: skip


def test_public_names_are_pinned() -> None:
    """Adding or removing a public name is an API change: update this list on purpose."""
    assert set(clinotel.instrumentation.__all__) == INSTRUMENTATION_API
    for module in (clinotel.instrumentation, clinotel.semconv):
        missing = [n for n in module.__all__ if not hasattr(module, n)]
        assert missing == [], f"{module.__name__}.__all__ names what it lacks"


def _imports(folder: str) -> dict[str, set[str]]:
    """Module -> every `clinotel.*` module it imports (at any depth of its code)."""
    import ast

    found: dict[str, set[str]] = {}
    for path in (REPO / folder).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        found[str(path.relative_to(REPO))] = {n for n in names if n.startswith("clinotel.")}
    return found


def test_the_model_dashboards_and_alerts_do_not_depend_on_the_collector() -> None:
    """The dashboards and the alerts share the model, a light distribution; only reading a data
    directory (the collector's read-only path, lazily, in `clinotel.model.store`) reaches it."""
    for folder in ("dashboards", "alerts"):
        project = tomllib.loads((REPO / folder / "pyproject.toml").read_text())["project"]
        assert "clinotel-collector" not in {_name(r) for r in project["dependencies"]}, folder
    model = tomllib.loads((REPO / "model" / "pyproject.toml").read_text())["project"]
    assert {_name(r) for r in model["dependencies"]} & {"chdb", "chdb-core", "grafanalib", "grpcio"} == set()
    allowed = {("model/src/clinotel/model/store.py", "clinotel.collector.readport.client")}
    for folder in ("model/src", "dashboards/src", "alerts/src"):
        for module, names in _imports(folder).items():
            for name in names:
                if name.startswith("clinotel.collector"):
                    assert (module, name) in allowed, f"{module} imports {name}"
