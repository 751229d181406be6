"""The layout rules of the design: what each distribution may depend on, what it runs with, and
who may import whose internals. (The instrumentation's public names are pinned beside it, in
instrumentation/tests/test_public_api.py.)"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, distribution, entry_points
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import REPO

HEAVY = {"chdb", "chdb-core", "clickhouse-connect", "grafanalib"}
BARE = {"opentelemetry-api", "pydantic"}
"""All that a library depending on clinotel-instrumentation (no extra) brings in directly."""
SDK_EXTRA = {"opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http", "opentelemetry-exporter-otlp-proto-grpc"}


def _name(req: str) -> str:
    return re.sub(r"[-_.]+", "-", Requirement(req).name).lower()


def _closure(roots: Iterable[str]) -> set[str]:
    """The installed distributions `roots` (requirement strings, extras allowed) pull in, as pip
    would resolve them here: markers evaluated, extras followed only where requested."""
    seen: set[tuple[str, str]] = set()
    names: set[str] = set()
    todo = [Requirement(r) for r in roots]
    while todo:
        req = todo.pop()
        name = _name(str(req))
        extras = tuple(sorted(req.extras)) or ("",)
        for extra in extras:
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            names.add(name)
            try:
                requires = distribution(name).requires or []
            except PackageNotFoundError:
                continue
            for raw in requires:
                dep = Requirement(raw)
                if dep.marker is None or dep.marker.evaluate({"extra": extra}):
                    todo.append(dep)
    return names


def _project(folder: str) -> dict[str, object]:
    project: dict[str, object] = tomllib.loads((REPO / folder / "pyproject.toml").read_text())["project"]
    return project


def test_instrumentation_declares_no_heavy_dependency() -> None:
    project = _project("instrumentation")
    declared = {_name(r) for r in project["dependencies"]}  # type: ignore[attr-defined]
    for extra in project.get("optional-dependencies", {}).values():  # type: ignore[attr-defined]
        declared |= {_name(r) for r in extra}
    assert declared & HEAVY == set()


def test_the_bare_instrumentation_needs_only_the_api_and_pydantic() -> None:
    project = _project("instrumentation")
    assert {_name(r) for r in project["dependencies"]} == BARE  # type: ignore[attr-defined]
    extras = project["optional-dependencies"]
    assert {_name(r) for r in extras["sdk"]} == SDK_EXTRA  # type: ignore[index]
    installed = {_name(r) for r in distribution("clinotel-instrumentation").requires or [] if ";" not in r}
    assert installed == BARE, "the installed metadata is stale: run make test (it reinstalls)"


def test_the_sdk_extra_is_asked_for_by_every_distribution_that_configures() -> None:
    """The umbrella runs the demo, which configures clinotel and exports; it must ask for [sdk]."""
    umbrella = {r for r in _project(".")["dependencies"] if _name(r) == "clinotel-instrumentation"}  # type: ignore[attr-defined]
    assert {tuple(sorted(Requirement(r).extras)) for r in umbrella} == {("sdk",)}
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r'COMPONENTS :=.*"\./instrumentation\[[^]]*\bsdk\b', makefile), "make test installs the extra"


def test_instrumentation_pulls_no_heavy_dependency_transitively() -> None:
    bare = _closure(["clinotel-instrumentation"])
    with_sdk = _closure(["clinotel-instrumentation[sdk,openfeature]"])
    assert bare >= BARE
    assert "opentelemetry-sdk" not in bare
    assert with_sdk >= SDK_EXTRA, "the walk found the real dependency tree"
    assert with_sdk & HEAVY == set(), f"clinotel-instrumentation pulls {with_sdk & HEAVY}"


def test_importing_the_library_loads_no_heavy_module_and_configures_nothing() -> None:
    code = (
        "import sys, clinotel.instrumentation, clinotel.semconv\n"
        "from opentelemetry import trace\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('chdb', 'clickhouse_connect', 'grafanalib', 'grpc')]\n"
        "sdk = [m for m in sys.modules if m.startswith('opentelemetry.sdk')]\n"
        "print(heavy, sdk, type(trace.get_tracer_provider()).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[] [] ProxyTracerProvider"


def test_clinotel_is_a_namespace_package() -> None:
    for top in ("instrumentation/src", "collector/src", "dashboards/src", "alerts/src", "src"):
        assert not (REPO / top / "clinotel" / "__init__.py").exists()


def _python_files(*folders: str) -> Iterable[Path]:
    for folder in folders:
        yield from (p for p in (REPO / folder).rglob("*.py") if ".venv" not in p.parts)


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


def test_no_other_code_imports_the_instrumentations_internals() -> None:
    """Everything outside instrumentation/ uses clinotel.instrumentation's public names only."""
    offenders = []
    for path in _python_files("collector", "dashboards", "alerts", "src", "tests", "benchmarks"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            for module in modules:
                parts = module.split(".")
                if parts[:2] in (["clinotel", "instrumentation"], ["clinotel", "semconv"]) and any(
                    p.startswith("_") for p in parts[2:]
                ):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {module}")
    assert offenders == []


# -- installs with nothing but the declared dependencies -------------------------------------------


def _site(tmp: Path, roots: list[str]) -> Path:
    """A site directory holding exactly the installed files of the distributions `roots` pull in
    (links to this environment's copies): what `pip install <roots>` would have put there.
    clinotel-instrumentation itself comes from the checkout's source."""
    site = tmp / "site"
    for name in sorted(_closure(roots)):
        dist = distribution(name)
        for f in dist.files or []:
            source = Path(str(dist.locate_file(f)))
            if f.parts[0] == ".." or f.suffix == ".pth" or not source.is_file():
                continue
            target = site / f
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(source)
    return site


def _run_isolated(
    site: Path, args: list[str], extra_env: dict[str, str] | None = None, *, timeout: float
) -> subprocess.CompletedProcess[str]:
    """`python -S` (no site-packages) with only `site` and the instrumentation's source on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "OTEL_", "CLINOTEL_"))}
    env.update(extra_env or {})
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO / "instrumentation" / "src")])
    env["PYTHONNOUSERSITE"] = "1"
    return subprocess.run(
        [sys.executable, "-S", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


# Runs with clinotel-instrumentation's bare dependencies only (mode from CLINOTEL_MODE): every
# call of the API, decorators and context managers does nothing and raises nothing; configure()
# and the SDK-backed names say which extra to install.
_BARE_SCRIPT = """
import asyncio, importlib.util, sys
assert importlib.util.find_spec("opentelemetry.sdk") is None, "the SDK is reachable"
import clinotel.instrumentation as ct
from clinotel.instrumentation.errors import ConfigurationError

WID = ct.pseudonymize("ENC-1", b"a key of sixteen bytes or more")

@ct.stage("decide")
def decide(n):
    ct.record_decision(source="model", value="ESI-2", confidence=0.5)
    ct.record_shadow(ct.Decision(source="model", value="ESI-3"))
    return n

@ct.workflow("triage", site="north")
def handle(request):
    return decide(request)

@ct.stage("ingest")
def read(n):
    yield from range(n)

@ct.workflow("scheduling")
async def handle_async():
    await asyncio.sleep(0)
    return decide(2)

cohort = ct.Cohort(age_band="65-79", language="es")
with ct.workflow("triage", workflow_id=WID, site="north", department="ed", cohort=cohort) as wf:
    wf.set("clinical.service_line", "emergency")
    with ct.stage("ingest", attributes={"clinical.ingest.source": "hl7"}) as st:
        st.set_many({"clinical.ingest.source": "hl7"})
    carrier = wf.enqueue("triage_nurse", depth=3)
    with ct.stage("review") as st:
        st.record_review(action="override", actor_role="nurse", final_value="ESI-2")
    with ct.stage("act") as st:
        st.record_action(type="assign_priority", status="succeeded")
        st.record_flag("triage-model-v4", "canary", provider="flagd")
        ct.set_attribute("clinical.action.automated", False)
    with ct.stage("complete") as st:
        st.record_outcome(status="completed")
    link = wf.traceparent
with ct.dequeue(carrier) as dq:
    assert dq.queue == "triage_nurse", dq
    with ct.stage("decide"):
        ct.record_decision(ct.Decision(source="rules", value="ESI-4"))
ct.record_outcome("triage", workflow_id=WID, link=link, label="ESI-2")
ct.record_outcome("triage", workflow_id=WID, link=carrier, outcome=ct.Outcome(label="ESI-2"))
assert handle(1) == 1
assert asyncio.run(handle_async()) == 2
with ct.workflow("triage"):
    assert list(read(3)) == [0, 1, 2]
assert ct.current_workflow() is None

if ct.Mode(sys.argv[1]) is ct.Mode.PRODUCTION:  # bad telemetry is dropped, never raised
    with ct.workflow("Not A Code", identifier="MRN 00123456", site="MRN 00123456") as wf:
        wf.set("patient.name", "x")
        ct.record_decision(source="oracle", confidence=7.0)
    with ct.dequeue({"traceparent": "garbage"}):
        pass

for call in (lambda: ct.configure(service_name="x"), ct.otlp_exporter, lambda: ct.SanitizingSpanExporter):
    try:
        call()
    except (ConfigurationError, ImportError) as e:
        assert "clinotel-instrumentation[sdk]" in str(e), e
        assert "pip install './instrumentation[sdk]'" in str(e), e  # the way that works: not on PyPI
    else:
        raise AssertionError("an SDK-backed name worked without the SDK")
try:
    import clinotel.instrumentation.testing
except ImportError as e:
    assert "clinotel-instrumentation[sdk]" in str(e), e
else:
    raise AssertionError("the testing module imported without the SDK")
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"chdb", "clickhouse_connect", "grpc", "google"})
sdk = [m for m in sys.modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter"))]
print("ok", heavy, sdk)
"""


@pytest.mark.parametrize("mode", ["production", "strict"])
def test_the_bare_install_imports_and_records_without_the_sdk(mode: str, tmp_path: Path) -> None:
    """A library that depends on clinotel-instrumentation alone: no SDK, no exporters."""
    site = _site(tmp_path, ["clinotel-instrumentation"])
    assert not (site / "opentelemetry" / "sdk").exists()
    assert (site / "opentelemetry" / "trace" / "__init__.py").exists()
    done = _run_isolated(site, ["-c", _BARE_SCRIPT, mode], {"CLINOTEL_MODE": mode}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok [] []"


@pytest.mark.slow
def test_the_instrumentation_tests_pass_with_the_sdk_extra_and_test_tools_only(tmp_path: Path) -> None:
    """`python -m pytest instrumentation/tests` with clinotel-instrumentation[sdk], its test
    group and nothing else: no chDB, no collector, no dashboards, no alerts."""
    group = tomllib.loads((REPO / "instrumentation" / "pyproject.toml").read_text())["dependency-groups"]["test"]
    site = _site(tmp_path, ["clinotel-instrumentation[sdk,openfeature]", *group])
    assert not (site / "chdb").exists()
    assert not (site / "clinotel").exists(), "clinotel comes from instrumentation/src only"
    done = _run_isolated(site, ["-m", "pytest", "-q", "-p", "no:cacheprovider", "instrumentation/tests"], timeout=280)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert re.search(r"\d+ passed", done.stdout), done.stdout[-2000:]
