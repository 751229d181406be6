"""`clinotel rollout gate`: on demo-like triage data the biased canary is refused (the failing
criteria named), the unbiased one promoted, too few samples refused with the reason; the evidence
carries the figures, the window, the file versions and the change events; every option abused."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from clinotel.alerts import default_rules_path
from clinotel.alerts.rules import load
from clinotel.collector.service import Collector
from clinotel.collector.store import schema
from clinotel.demo.scenario import _ESI_WEIGHTS, _LANGUAGES, CANARY_MODEL, FLAG_KEY
from clinotel.model import clinical, tables
from clinotel.rollout import gate as g
from clinotel.rollout.inventory import Flag
from clinotel.rollout.rollout_cli import rollout
from collector.tests.fixtures import READ_TOKEN

TENANT = "st-marys"
NOW = datetime.now(UTC).replace(microsecond=0)
FLAG = Flag(key=FLAG_KEY, owner="triage-ml-team", created=date(2026, 1, 10), expiry=date.today() + timedelta(days=60),
            kill_criteria=("canary_kill_under_triage",))  # fmt: skip
FLAGS_YAML = f"""flags:
  - key: {FLAG_KEY}
    owner: triage-ml-team
    created: 2026-01-10
    expiry: {date.today() + timedelta(days=60)}
    exposure: {{tenant: {TENANT}, site: north, workflow_step: decide}}
    kill_criteria: [canary_kill_under_triage]
"""
_COLUMNS = ["TenantId", "WorkflowKind", "TraceId", "StartTime", "Language", "DecisionSource", "DecisionValue",
            "OutcomeLabel", "RolloutCohort", "ModelVersion", "FlagKey", "FlagVariant"]  # fmt: skip
_STORED = [clinical.stored_column(c) for c in _COLUMNS]


def _insert(client: Any, database: str, *, canary: int, baseline: int, biased: bool, seed: int = 11) -> None:
    """Model triage decisions with ground truth as the demo draws them: the demo's acuity and
    language mix, 6 % under-triage, 8 % over-triage; with `biased`, the canary under-triages
    Spanish-speaking patients 30 % of the time (the demo's `canary_bias`)."""
    rng = random.Random(seed)
    rows = []
    for cohort, count in (("canary", canary), ("baseline", baseline)):
        for k in range(count):
            language = rng.choices([x for x, _ in _LANGUAGES], weights=[w for _, w in _LANGUAGES])[0]
            true_esi = rng.choices((1, 2, 3, 4, 5), weights=_ESI_WEIGHTS)[0]
            under = 0.30 if biased and cohort == "canary" and language == "es" else 0.06
            roll = rng.random()
            predicted = true_esi
            if roll < under and true_esi < 5:
                predicted = true_esi + 1
            elif roll < under + 0.08 and true_esi > 1:
                predicted = true_esi - 1
            on = cohort == "canary"
            rows.append((TENANT, "triage", f"{cohort}-{k}", NOW - timedelta(hours=2, seconds=k % 3600), language,
                         "model", f"ESI-{predicted}", f"ESI-{true_esi}", cohort, CANARY_MODEL if on else "3.2.0",
                         FLAG_KEY, "on" if on else "off"))  # fmt: skip
    client.insert(f"{database}.{tables.WORKFLOWS}", rows, column_names=_STORED)


def _evaluate(client: Any, database: str, **kw: Any) -> g.GateResult:
    pack = load(default_rules_path())
    return g.evaluate(client, database, FLAG, pack, g.window_of(NOW, 86400), tenant=TENANT, **kw)


def test_the_biased_canary_is_refused_naming_the_kill_criterion_and_the_fairness_rule(
    client: Any, options: schema.SchemaOptions
) -> None:
    _insert(client, options.database, canary=15_000, baseline=30_000, biased=True)
    result = _evaluate(client, options.database)
    assert not result.promote
    failing = {c.name: c for c in result.failing}
    assert set(failing) == {"kill criteria", "non-inferiority", "fairness"}
    assert any(r.startswith("canary_kill_under_triage breached") for r in failing["kill criteria"].reasons)
    assert any("fairness_under_triage_language breached" in r and "Language=es" in r
               for r in failing["fairness"].reasons)  # fmt: skip
    under = next(f for f in failing["non-inferiority"].figures if f["metric"] == "under_triage_rate")
    assert under["interval"][1] > 1.5
    assert under["non_inferior"] is False


def test_the_unbiased_canary_is_promoted(client: Any, options: schema.SchemaOptions) -> None:
    _insert(client, options.database, canary=15_000, baseline=30_000, biased=False)
    result = _evaluate(client, options.database)
    assert result.promote, [(c.name, c.reasons) for c in result.failing]
    [inferiority] = [c for c in result.criteria if c.name == "non-inferiority"]
    assert {f["metric"] for f in inferiority.figures} == set(g.SAFETY_METRICS)
    assert all(f["interval"][1] <= 1.5 for f in inferiority.figures)
    # a stricter margin than the data can show is a refusal, not a promotion
    strict = _evaluate(client, options.database, margin=1.001)
    assert [c.name for c in strict.failing] == ["non-inferiority"]


def test_too_few_samples_is_refused_with_the_reason(client: Any, options: schema.SchemaOptions) -> None:
    _insert(client, options.database, canary=40, baseline=3000, biased=False)
    result = _evaluate(client, options.database)
    [samples] = [c for c in result.failing if c.name == "samples"]
    assert any(r.startswith("canary has ") and "rows of under_triage_rate, fewer than 100" in r
               for r in samples.reasons)  # fmt: skip
    # another tenant's canary is not this tenant's evidence
    other = g.evaluate(client, options.database, FLAG, load(default_rules_path()), g.window_of(NOW, 86400),
                       tenant="general")  # fmt: skip
    assert any("canary has 0 rows" in r for c in other.failing for r in c.reasons)


def _files(tmp_path: Path) -> Path:
    flags = tmp_path / "flags.yaml"
    flags.write_text(FLAGS_YAML, encoding="utf-8")
    return flags


def _gate(collector: Collector, tmp_path: Path, *extra: str) -> Any:
    assert collector.admin is not None
    args = ["gate", "--flag", FLAG_KEY, "--flags", str(_files(tmp_path)), "--evidence", str(tmp_path / "ev"),
            "--server", f"http://127.0.0.1:{collector.admin.port}", "--database", collector.options.database,
            *extra]  # fmt: skip
    return CliRunner().invoke(rollout, args, env={"CLICKHOUSE_PASSWORD": READ_TOKEN})


def test_the_command_refuses_with_exit_1_and_writes_the_evidence(collector: Collector, tmp_path: Path) -> None:
    from clinotel.instrumentation.changes import ChangeSpec, send_changes
    from collector.tests.fixtures import WRITE_TOKEN

    _insert(collector.client, collector.options.database, canary=15_000, baseline=30_000, biased=True)
    assert collector.http is not None
    assert collector.writer is not None
    spec = ChangeSpec("flag", FLAG_KEY, "on", "pipeline:flag-rollout", {"site": "north"}, at=NOW - timedelta(hours=3))
    send_changes([spec], endpoint=f"http://127.0.0.1:{collector.http.port}",
                 headers={"authorization": f"Bearer {WRITE_TOKEN}"}, tenant=TENANT, service="ci")  # fmt: skip
    collector.writer.drain()
    result = _gate(collector, tmp_path)
    assert result.exit_code == 1, result.output
    assert "FAIL kill criteria" in result.output
    assert "canary_kill_under_triage breached" in result.output
    assert result.output.strip().splitlines()[-1].startswith(f"REFUSE {FLAG_KEY} canary -> full: failing ")
    [json_file] = (tmp_path / "ev").glob("gate-triage-model-v4-*.json")
    data = json.loads(json_file.read_text())
    assert data["decision"] == "refuse"
    assert data["files"]["flags"]["version"].startswith("sha256:")
    assert data["files"]["rules"]["path"] == str(default_rules_path())
    assert data["tenant"] == TENANT  # from the flag's exposure
    since = datetime.fromisoformat(data["window"]["since"])
    assert abs((datetime.fromisoformat(data["window"]["until"]) - since) - timedelta(hours=24)) < timedelta(seconds=1)
    [change] = data["changes"]
    assert (change["kind"], change["name"], change["version"], change["actor"]) == (
        "flag",
        FLAG_KEY,
        "on",
        "pipeline:flag-rollout",
    )
    md = json_file.with_suffix(".md").read_text()
    assert md.startswith(f"# Release gate: {FLAG_KEY} canary -> full: REFUSE")
    assert "| under_triage_rate |" in md


def test_the_command_promotes_with_exit_0(collector: Collector, tmp_path: Path) -> None:
    _insert(collector.client, collector.options.database, canary=15_000, baseline=30_000, biased=False)
    result = _gate(collector, tmp_path, "--window", "6h")
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == f"PROMOTE {FLAG_KEY} canary -> full"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--flag", "x' OR 1=1 --"], "a flag key"),
        (["--flag", "../../etc/passwd"], "a flag key"),
        (["--flag", "no-such-flag"], "is not in"),
        (["--window", "0"], "a duration such as"),
        (["--window", "30s"], "between 1m and 90d"),
        (["--window", "-1h"], "a duration such as"),
        (["--window", "99999d"], "between 1m and 90d"),
        (["--window", "1h; DROP TABLE x"], "a duration such as"),
        (["--until", "yesterday'"], "a time such as"),
        (["--margin", "0.5"], "--margin"),
        (["--margin", "nan"], "--margin"),
        (["--confidence", "1"], "--confidence"),
        (["--confidence", "nan"], "--confidence"),
        (["--min-samples", "0"], "--min-samples"),
        (["--metric", "workflows"], "a safety metric is a rate indicator"),
        (["--metric", "under_triage_rate) OR (1=1"], "a safety metric is a rate indicator"),
        (["--tenant", "x' OR '1'='1"], "a tenant label"),
        (["--from", "shadow"], "the gate decides canary -> full only, not shadow -> full"),
        (["--from", "recommend", "--to", "canary"], "not recommend -> canary"),
        (["--from", "canary", "--to", "canary"], "not canary -> canary"),
        (["--from", "beta"], "--from"),
        (["--to", "half"], "--to"),
        (["--flags", "/nonexistent/flags.yaml"], "No such file"),
        (["--flags", "/etc"], "flags"),
        (["--rules", "/nonexistent/rules.yaml"], "No such file"),
        (["--server", "http://127.0.0.1:1", "--data-dir", "."], "not both"),
    ],
)  # fmt: skip
def test_abuse_is_a_usage_error_in_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    base = {"--flag": FLAG_KEY, "--flags": str(_files(tmp_path)), "--evidence": str(tmp_path / "ev")}
    given = dict(zip(args[::2], args[1::2], strict=True))
    argv = ["gate"] + [x for k, v in {**base, **given}.items() for x in (k, v)]
    result = CliRunner().invoke(rollout, argv)
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "ev").exists()  # nothing written for a usage error


def test_an_evidence_path_that_is_a_file_or_unwritable_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    argv = ["gate", "--flag", FLAG_KEY, "--flags", str(_files(tmp_path)), "--evidence", str(tmp_path / "file")]
    result = CliRunner().invoke(rollout, argv)
    assert result.exit_code == 2
    assert (tmp_path / "file").read_text() == "x"


def test_the_evidence_file_name_never_leaves_its_directory(tmp_path: Path) -> None:
    from clinotel.rollout.evidence import write

    result = g.GateResult("a/../../x:y", None, g.window_of(NOW, 60), [])
    data = {**result.to_json(), "from": "canary", "to": "full", "settings": {}, "files": {}, "changes": []}
    json_path, md_path = write(tmp_path / "ev", data, NOW)
    assert json_path.parent == md_path.parent == tmp_path / "ev"
    assert "/" not in json_path.name
    assert ".." not in json_path.name.removesuffix(".json")


def test_evidence_is_never_overwritten_nor_written_through_a_link(tmp_path: Path) -> None:
    from clinotel.rollout.evidence import write

    result = g.GateResult(FLAG_KEY, None, g.window_of(NOW, 60), [])
    data = {**result.to_json(), "from": "canary", "to": "full", "settings": {}, "files": {}, "changes": []}
    (tmp_path / "ev").mkdir()
    outside = tmp_path / "outside.json"
    outside.write_text("keep")
    first_json, _ = write(tmp_path / "ev", data, NOW)
    first = first_json.read_bytes()
    taken = first_json.with_name(first_json.stem + "-2.json")
    taken.symlink_to(outside)  # a name planted before the next run
    second_json, second_md = write(tmp_path / "ev", data, NOW)  # a rerun in the same second
    assert first_json.read_bytes() == first
    assert outside.read_text() == "keep"
    assert len({first_json, taken, second_json}) == 3
    assert second_md.exists()
    assert second_md.with_suffix(".json") == second_json


def test_a_flag_evaluated_by_several_tenants_needs_its_tenant_named(collector: Collector, tmp_path: Path) -> None:
    """Any tenant's services may write a flag key: without --tenant or an exposure tenant the gate
    counted every tenant's workflows, so one tenant's data moved another's promotion (attack
    review). Now it is refused, naming the tenants; with --tenant it decides on that tenant's."""
    from collector.tests.fixtures import OPERATOR_TOKEN

    _insert(collector.client, collector.options.database, canary=300, baseline=600, biased=False)
    rows = [("general", "triage", f"g-{k}", NOW - timedelta(hours=1), "en", "model", "ESI-3", "ESI-2", "canary",
             CANARY_MODEL, FLAG_KEY, "on") for k in range(50)]  # fmt: skip
    collector.client.insert(f"{collector.options.database}.{tables.WORKFLOWS}", rows, column_names=_STORED)
    flags = tmp_path / "flags.yaml"
    flags.write_text(FLAGS_YAML.replace(f"tenant: {TENANT}, ", ""), encoding="utf-8")
    assert collector.admin is not None
    server = f"http://127.0.0.1:{collector.admin.port}"
    args = ["gate", "--flag", FLAG_KEY, "--flags", str(flags), "--evidence", str(tmp_path / "ev"),
            "--server", server, "--database", collector.options.database]  # fmt: skip
    refused = CliRunner().invoke(rollout, args, env={"CLICKHOUSE_PASSWORD": OPERATOR_TOKEN})
    assert refused.exit_code == 2, refused.output
    assert "evaluated by the services of 2 tenants (general, st-marys): give --tenant" in refused.output
    named = CliRunner().invoke(rollout, [*args, "--tenant", TENANT], env={"CLICKHOUSE_PASSWORD": OPERATOR_TOKEN})
    assert named.exit_code in (0, 1), named.output
    [evidence] = (tmp_path / "ev").glob("gate-*.json")
    assert json.loads(evidence.read_text())["tenant"] == TENANT
