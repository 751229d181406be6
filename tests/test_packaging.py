"""The layout rules of the design: what each distribution may depend on, and its public names."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution, entry_points
from pathlib import Path

import pytest
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


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function (relative imports resolved
    against its package), and every name it hands to importlib.import_module or __import__."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    top = len(path.parts) - 1 - path.parts[::-1].index("clinotel")
    package = list(path.parts[top:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            callee = ast.unparse(node.func)
            if callee in ("importlib.import_module", "import_module", "__import__"):
                found.add(str(node.args[0].value))
    return found


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("collector", ("clinotel.alerts", "clinotel.dashboards", "clinotel.demo", "clinotel.cli")),
        ("alerts", ("clinotel.dashboards", "grafanalib")),
    ],
)
def test_a_distribution_imports_none_of_the_ones_above_it(folder: str, forbidden: tuple[str, ...]) -> None:
    """The collector knows nothing of alerts or dashboards (`clinotel serve --rules` is the
    umbrella's); alerts never pull grafanalib."""
    files = sorted((REPO / folder / "src").rglob("*.py"))
    assert len(files) > 5, "the walk found the sources"
    found = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in files
        for name in sorted(_imports(path))
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]
    assert found == []
    project = tomllib.loads((REPO / folder / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    assert declared & {f.replace(".", "-") for f in forbidden} == set()


def test_the_import_scan_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "src" / "clinotel" / "collector" / "x.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "def f():\n    from clinotel.alerts.runner import beside_collector\n"
        "    import importlib\n    importlib.import_module('clinotel.dashboards')\n"
        "from ..alerts import wiring\n",
        encoding="utf-8",
    )
    found = _imports(module)
    assert {"clinotel.alerts.runner", "clinotel.dashboards", "clinotel.alerts.wiring"} <= found


def test_serve_is_registered_once_by_the_umbrella() -> None:
    serves = [ep for ep in entry_points(group="clinotel.commands") if ep.name == "serve"]
    assert [ep.value for ep in serves] == ["clinotel.cli._serve:serve"]


ONE_HOME = {
    '"clinotel-clickhouse"': "model/src/clinotel/model/grafana.py",
    '"grafana-clickhouse-datasource"': "model/src/clinotel/model/grafana.py",
    '"4.20.0"': "model/src/clinotel/model/grafana.py",
    "github.com/clinotel/clinotel/blob/": "alerts/src/clinotel/alerts/rules.py",
}


@pytest.mark.parametrize("literal", ONE_HOME)
def test_the_grafana_datasource_and_runbook_base_are_spelled_once(literal: str) -> None:
    """The datasource's uid, the plugin and its version, and the runbook base URL: one home each,
    which the dashboards and the alert export import."""
    folders = ("instrumentation", "model", "collector", "dashboards", "alerts")
    roots = [REPO / d / "src" for d in folders] + [REPO / "src"]
    homes = [
        str(path.relative_to(REPO))
        for root in roots
        for path in sorted(root.rglob("*.py"))
        if literal in path.read_text(encoding="utf-8")
    ]
    assert homes == [ONE_HOME[literal]]


def test_the_model_dashboards_and_alerts_do_not_depend_on_the_collector() -> None:
    """The dashboards and the alerts share the model, a light distribution; only reading a data
    directory (the collector's read-only path, lazily, in `clinotel.model.store`) reaches it."""
    for folder in ("dashboards", "alerts"):
        project = tomllib.loads((REPO / folder / "pyproject.toml").read_text())["project"]
        assert "clinotel-collector" not in {_name(r) for r in project["dependencies"]}, folder
    model = tomllib.loads((REPO / "model" / "pyproject.toml").read_text())["project"]
    assert {_name(r) for r in model["dependencies"]} & {"chdb", "chdb-core", "grafanalib", "grpcio"} == set()
    allowed = {("model/src/clinotel/model/store.py", "clinotel.collector.readport.client")}
    for folder in ("model", "dashboards", "alerts"):
        for path in sorted((REPO / folder / "src").rglob("*.py")):
            module = str(path.relative_to(REPO))
            for name in _imports(path):
                if name.startswith("clinotel.collector"):
                    assert (module, name.rsplit(".", 1)[0]) in allowed or (module, name) in allowed, (
                        f"{module} imports {name}"
                    )
