"""The compose/ stack: every file valid against the compose specification (the compose_spec
validator), every variable it uses defined, every service it depends on present, and every file it
mounts present after `clinotel compose generate`, made by it where it lives under generated/."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from compose_spec import PyCompose

from clinotel.collector.store import schema
from clinotel.collector.store.ottl import string as ottl_string
from clinotel.collector.store.phi_sql import allowed_keys
from clinotel.collector.tokens import Tokens
from clinotel.compose import Generated, generate
from clinotel.semconv import PHI_REGEX, Scope

Stack = tuple[Path, Generated]
REPO = Path(__file__).resolve().parents[1]
STACKS = ("compose.yaml", "compose.contrib.yaml")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(REPO / "compose", root / "compose", ignore=shutil.ignore_patterns("generated"))
    return root / "compose", generate(root / "compose")


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation; an unset variable without a default fails the test."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if name in env and (env[name] or not (op or "").startswith(":")):
            return env[name]
        assert op is not None, f"${{{name}}} is not set by generated/.env and has no default"
        assert op.endswith("-"), f"${{{name}}} is not set by generated/.env"
        return arg

    return _VAR.sub(one, text.replace("$$", "\x00")).replace("\x00", "$")


def _services(compose_dir: Path, name: str, env: dict[str, str]) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Service name → (the file defining it, its definition), following `include`."""
    path = compose_dir / name
    text = _interpolate(path.read_text(encoding="utf-8"), env)
    PyCompose.from_yaml(text)  # raises ValueError on anything the compose specification refuses
    doc = yaml.safe_load(text)
    found = {s: (path, d) for s, d in doc["services"].items()}
    for included in doc.get("include", []):
        found.update(_services(compose_dir, included if isinstance(included, str) else included["path"], env))
    return found


def _bind_sources(definition: dict[str, Any]) -> list[str]:
    sources = []
    for v in definition.get("volumes", []):
        source = v["source"] if isinstance(v, dict) else v.split(":", 1)[0]
        if source.startswith((".", "/")):
            sources.append(source)
    return sources


@pytest.mark.parametrize("name", STACKS)
def test_compose_files_follow_the_specification_and_use_only_defined_variables(stack: Stack, name: str) -> None:
    compose_dir, result = stack
    services = _services(compose_dir, name, result.env)
    assert {"clickhouse", "schema", "grafana", "alertmanager"} <= set(services)
    for service, (_, definition) in services.items():
        for dependency in definition.get("depends_on", {}):
            assert dependency in services, f"{service} depends on {dependency}, which {name} does not define"


def _clinotel_options(command: list[str]) -> tuple[click.Command, dict[str, Any]]:
    """The clinotel subcommand a service's `command` runs and its options as the CLI parses them
    (types, ranges, choices); click.BadParameter or UsageError for what it refuses."""
    from clinotel.cli import cli

    context, found, rest = click.Context(cli, info_name="clinotel"), cli, list(command)
    while isinstance(found, click.Group):
        sub = found.get_command(context, rest.pop(0))
        assert sub is not None, f"clinotel has no command {command}"
        found = sub
    return found, found.make_context(found.name, rest, parent=context).params


def _container_paths(definition: dict[str, Any], compose_file: Path) -> dict[str, str]:
    """Each file a clinotel service sees, by its path in the container, as the file here: its bind
    mounts, and the copies the image's entrypoint makes of them (`install … SOURCE TARGET`)."""
    mounts = {}
    for volume in definition.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts[target] = str((compose_file.parent / source).resolve())
    entrypoint = (REPO / "compose/collector/entrypoint.sh").read_text(encoding="utf-8")
    for source, target in re.findall(r"^\s*install .* (\S+) (\S+)$", entrypoint, re.M):
        if source in mounts:
            mounts[target] = mounts[source]
    return mounts


@pytest.mark.parametrize("ticket_url", ["", "https://tickets.example.org/clinotel"])
@pytest.mark.parametrize("name", STACKS)
def test_every_clinotel_command_compose_runs_is_accepted_by_the_cli(
    stack: Stack, name: str, ticket_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `generate`'s defaults (no ticket webhook: CLINOTEL_TICKET_WEBHOOK_URL empty) and with
    one set, each clinotel service's command parses in its container's environment, and its
    alerting options make a configuration (an empty --webhook once stopped the collector at start:
    exit 2, restarted in a loop); the webhook's URL is not on a command line (`ps` shows it)."""
    from clinotel.alerts.options import alerting_config

    compose_dir, result = stack
    env = result.env | {"CLINOTEL_TICKET_WEBHOOK_URL": ticket_url}
    ran = []
    for service, (path, definition) in _services(compose_dir, name, env).items():
        if definition.get("image") != "clinotel/collector:local" or "command" not in definition:
            continue
        mounts = _container_paths(definition, path)
        args = [mounts.get(str(part), str(part)) for part in definition["command"]]
        assert not ticket_url or ticket_url not in args, f"{service}: the ticket webhook's URL on its command line"
        with monkeypatch.context() as m:
            for variable, value in (definition.get("environment") or {}).items():
                m.setenv(variable, str(value))
            command, options = _clinotel_options(args)
        ran.append(command.name)
        if "webhook" in options:
            names = ("rules", "every", "alertmanager", "pagerduty", "pagerduty_url", "webhook", "sinks")
            config = alerting_config(**{k: options[k] for k in names})
            assert config.webhook == ((ticket_url,) if ticket_url else ()), service
    assert "evaluate" in ran or "serve" in ran


def test_the_specification_validator_refuses_a_broken_service() -> None:
    with pytest.raises(ValueError, match="ports"):
        PyCompose.from_yaml("services:\n  c:\n    image: x\n    ports: {a: 1}\n")
    with pytest.raises(ValueError, match="bogus"):
        PyCompose.from_yaml("services:\n  c:\n    image: x\n    bogus: 1\n")


@pytest.mark.parametrize("name", STACKS)
def test_every_mounted_file_exists_and_generated_ones_come_from_generate(stack: Stack, name: str) -> None:
    compose_dir, result = stack
    generated = {p.resolve() for p in result.files}
    for service, (path, definition) in _services(compose_dir, name, result.env).items():
        for source in _bind_sources(definition):
            target = (path.parent / source).resolve()
            assert target.exists(), f"{service} mounts {source}, which does not exist"
            if (compose_dir / "generated").resolve() in target.parents:
                made = {target} if target.is_file() else {p for p in generated if target in p.parents}
                assert made, f"{service} mounts {source}: nothing in it is written by clinotel compose generate"
                assert made <= generated
        if "build" in definition:
            context = (path.parent / definition["build"]["context"]).resolve()
            dockerfile = context / definition["build"]["dockerfile"]
            assert dockerfile.is_file()
            for line in dockerfile.read_text(encoding="utf-8").splitlines():
                if line.startswith("COPY "):
                    for item in line.split()[1:-1]:
                        assert (REPO / item).exists(), f"the Dockerfile copies {item}, which the repository lacks"


def test_clickhouse_users_match_what_the_services_log_in_as(stack: Stack) -> None:
    compose_dir, result = stack
    services = _services(compose_dir, "compose.yaml", result.env)
    users = ET.parse(compose_dir / "clickhouse" / "users.d" / "clinotel.xml").getroot().find("users")
    assert users is not None
    passwords = {u.tag: u.find("password") for u in users}
    clickhouse_env = services["clickhouse"][1]["environment"]
    for service, (_, definition) in services.items():
        user = definition.get("environment", {}).get("CLICKHOUSE_USER")
        if user is None:
            continue
        password = passwords[user]
        assert password is not None, f"{service} logs in as {user}, which has no password"
        env_name = password.get("from_env")
        assert env_name in clickhouse_env, f"ClickHouse is not given {env_name}"
        assert definition["environment"]["CLICKHOUSE_PASSWORD"] == clickhouse_env[env_name]
    datasource = yaml.safe_load(
        (compose_dir / "generated/grafana/provisioning/datasources/clinotel-clickhouse.yaml").read_text()
    )["datasources"][0]
    assert datasource["jsonData"]["username"] in passwords
    assert datasource["jsonData"]["host"] == "clickhouse"
    assert users.find("grafana_reader/profile").text == "clinotel_reader"  # type: ignore[union-attr]


def test_alertmanager_reads_the_routing_key_where_compose_mounts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "0123456789abcdef0123456789abcdef")
    shutil.copytree(REPO / "compose", tmp_path / "compose", ignore=shutil.ignore_patterns("generated"))
    compose_dir, result = tmp_path / "compose", generate(tmp_path / "compose")
    config = yaml.safe_load((compose_dir / "generated/alertmanager/alertmanager.yml").read_text())
    pages = next(r for r in config["receivers"] if r["name"] == "pages")
    key_file = pages["pagerduty_configs"][0]["routing_key_file"]
    alertmanager = _services(compose_dir, "compose.yaml", result.env)["alertmanager"][1]
    assert any(v.split(":")[1] == key_file for v in alertmanager["volumes"])
    key = compose_dir / "generated/secrets/pagerduty-routing-key"
    assert key.read_text() == result.env["PAGERDUTY_ROUTING_KEY"]
    rules = yaml.safe_load((compose_dir / "generated/grafana/provisioning/alerting/clinotel-rules.yaml").read_text())
    assert all(r["isPaused"] for g in rules["groups"] for r in g["rules"]), "one evaluator: the collector's"


def test_receivers_follow_env_and_the_old_ticket_default_is_dropped(stack: Stack) -> None:
    """Without a key or a ticket URL, pages and tickets go to Alertmanager alone (Grafana refuses
    an empty key or URL); a .env from an earlier version, holding the made-up ticket-bridge URL,
    is cleared on the next generate."""
    compose_dir, result = stack
    assert not result.receivers.pagerduty
    assert result.receivers.ticket_url is None
    env_path = compose_dir / "generated/.env"
    text = env_path.read_text()
    env_path.write_text(text.replace("CLINOTEL_TICKET_WEBHOOK_URL=\n",
                                     "CLINOTEL_TICKET_WEBHOOK_URL=http://ticket-bridge:8080/clinotel\n"))  # fmt: skip
    again = generate(compose_dir)
    assert again.env["CLINOTEL_TICKET_WEBHOOK_URL"] == ""
    assert "ticket-bridge" not in (compose_dir / "generated/alertmanager/alertmanager.yml").read_text()
    assert "ticket-bridge" not in "".join(p.read_text() for p in compose_dir.glob("*.yaml"))


def test_the_contrib_collector_writes_clinotel_tables_with_the_semconv_rules(stack: Stack) -> None:
    compose_dir, result = stack
    config = yaml.safe_load((compose_dir / "generated/otelcol/config.yaml").read_text())
    exporter = config["exporters"]["clickhouse"]
    assert exporter["create_schema"] is False
    assert exporter["traces_table_name"] == schema.TRACES
    assert config["service"]["pipelines"]["traces"]["processors"][-1] == "transform/clinotel"
    span = next(s for s in config["processors"]["transform/clinotel"]["trace_statements"] if s["context"] == "span")
    keep = span["statements"][0]
    assert keep == "keep_keys(attributes, [" + ", ".join(f'"{k}"' for k in sorted(allowed_keys((Scope.SPAN,)))) + "])"
    otelcol_env = _services(compose_dir, "compose.contrib.yaml", result.env)["otelcol"][1]["environment"]
    for name in re.findall(r"\$\{env:([A-Za-z_]+)\}", (compose_dir / "generated/otelcol/config.yaml").read_text()):
        assert name in otelcol_env, f"the contrib collector's config reads {name}, which compose does not set"


def test_the_contrib_rules_drop_a_value_of_another_type_than_its_key() -> None:
    """The PHI and form checks read strings alone: `clinical.site` sent as the integer 5558675309
    was kept as its text (2026-12-07 review). A coded key's non-string and a boolean key's
    non-boolean are dropped before them, as the library refuses them."""
    from clinotel.collector.store.ottl import transform_processor

    contexts = {s["context"]: s["statements"] for s in transform_processor()["trace_statements"]}
    for context, key, check in (("span", "clinical.site", "IsString"), ("span", "clinical.workflow.id", "IsString"),
                                ("spanevent", "exception.message", "IsString"),
                                ("span", "clinical.decision.shadow", "IsBool")):  # fmt: skip
        statements = contexts[context]
        at = f'attributes["{key}"]'
        rule = f'delete_key(attributes, "{key}") where {at} != nil and not ({check}({at}))'
        assert rule in statements, key
        later = [i for i, x in enumerate(statements) if x != rule and f'"{key}"' in x and i > 0]
        assert statements.index(rule) < min(later), "before the checks that read strings alone"
    span = contexts["span"]
    depth = 'attributes["clinical.queue.depth"]'
    assert f"{depth} != nil and not (IsInt({depth}) or IsDouble({depth}))" in " ".join(span), "a number either way"
    confidence = 'attributes["clinical.decision.confidence"]'
    assert f"({confidence} < 0.0 or {confidence} > 1.0)" in " ".join(span), "held to its range"
    # the resource's free text (service.name) is scrubbed as a span's is (a third review)
    resource = " ".join(contexts["resource"])
    assert 'replace_pattern(attributes["service.name"]' in resource
    assert contexts["resource"][-1].startswith('set(attributes["clinical.tenant.id"]'), "the tenant set last"


def test_ottl_strings_carry_the_regex_unchanged() -> None:
    literal = ottl_string(PHI_REGEX)
    decoded = re.sub(r"\\(.)", r"\1", literal[1:-1])
    assert decoded == PHI_REGEX


def test_generate_keeps_secrets_and_the_write_token_works(stack: Stack) -> None:
    compose_dir, result = stack
    again = generate(compose_dir)
    assert again.env == result.env
    assert again.kept_rules
    assert (compose_dir / "generated/.env").stat().st_mode & 0o077 == 0
    tokens = Tokens.load(compose_dir / "generated/clinotel/tokens.toml")
    grant = tokens.grant(result.env["CLINOTEL_WRITE_TOKEN"])
    assert grant is not None
    assert (grant.tenant, grant.role) == (result.env["CLINOTEL_TENANT"], "write")
    assert result.env["CLINOTEL_WRITE_TOKEN"] not in (compose_dir / "generated/clinotel/tokens.toml").read_text()


def test_a_tenant_that_is_not_a_label_is_refused(tmp_path: Path) -> None:
    shutil.copytree(REPO / "compose", tmp_path / "compose", ignore=shutil.ignore_patterns("generated"))
    with pytest.raises(ValueError, match=r"clinical\.tenant\.id"):
        generate(tmp_path / "compose", tenant='st "marys"')
    assert not (tmp_path / "compose" / "generated" / "clinotel" / "tokens.toml").exists()


def test_grafana_installs_the_plugin_version_the_queries_are_saved_as() -> None:
    from clinotel.model.grafana import PLUGIN_TYPE, PLUGIN_VERSION

    base = yaml.safe_load((REPO / "compose" / "base.yaml").read_text(encoding="utf-8"))
    assert base["services"]["grafana"]["environment"]["GF_PLUGINS_PREINSTALL_SYNC"] == f"{PLUGIN_TYPE}@{PLUGIN_VERSION}"
