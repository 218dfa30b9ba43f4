"""The user's alert rules (``VRP_DASHBOARD_ALERT_RULES``): a good file, and every kind of bad
one stopping the dashboard with exit code 2 and one line naming the file, the rule and the
field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dashboard.alerts.builtin import BUILTIN_NAMES
from dashboard.alerts.rules import MAX_RULES_FILE_BYTES, AlertRulesError, load_rules_file
from dashboard.errors import DashboardConfigError
from dashboard.settings import load_dashboard_settings
from tests.dashboard.test_cli import run_vrp

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "alert-rules.example.yaml"

GOOD = """\
rules:
  - name: SlowUploads
    metric: http.server.request.duration
    filter:
      service: vrp-api
      route: /api/recordings
      attributes: {http.request.method: POST}
    aggregate: p95
    window: 10m
    condition: "> 800"
    for: 2m
    severity: critical
    labels: {team: backend}
    annotations:
      summary: "p95 of uploads is {{ $value }} ms on {{ $labels.service }}"
  - name: NoRecordingsListed
    span: GET /api/recordings
    aggregate: count
    condition: "< 1"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


def test_a_good_file_gives_its_rules_with_defaults(tmp_path: Path) -> None:
    rules = load_rules_file(_write(tmp_path, GOOD), reserved=BUILTIN_NAMES)

    slow, listed = rules
    assert (slow.name, slow.severity, slow.for_seconds) == ("SlowUploads", "critical", 120.0)
    assert slow.labels == {"team": "backend"}
    assert "p95(metric 'http.server.request.duration'" in slow.expression
    assert "http.route='/api/recordings'" in slow.expression
    assert "over 600s" in slow.expression and "> 800" in slow.expression
    assert (listed.severity, listed.for_seconds) == ("warning", 0.0)
    assert "by (service) < 1" in listed.expression
    assert not slow.builtin and not listed.builtin


def test_the_example_file_of_the_docs_is_valid(tmp_path: Path) -> None:
    rules = load_rules_file(EXAMPLE, reserved=BUILTIN_NAMES)
    assert len(rules) >= 3


def test_settings_read_the_rules_file_relative_to_the_working_folder(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "mine.yaml")
    settings = load_dashboard_settings({"VRP_DASHBOARD_ALERT_RULES": "mine.yaml"}, cwd=tmp_path)
    assert settings.alerts.rules_file == str(tmp_path / "mine.yaml")
    assert [r.name for r in settings.alerts.rules] == [
        r.name for r in load_rules_file(EXAMPLE, reserved=())
    ]


BAD = {
    # what the file holds: (words the one line must hold)
    "rules: [": ("not valid YAML at line",),
    "- just a list": ("must be a mapping with a 'rules' list",),
    "rules: 3": ("field rules", "Not a valid list"),
    "{}": ("field rules", "Missing data"),
    "groups: []": ("field groups", "Unknown field"),
    "rules: [3]": ("rule #1", "must be a mapping"),
    "rules:\n  - {name: A, metric: m, aggregate: p95, condition: '> 1', for: soon}": (
        "rule 'A'",
        "field for",
        "interval",
    ),
    "rules:\n  - {name: A, metric: m, aggregate: p95, condition: 'above 1'}": (
        "rule 'A'",
        "field condition",
        "operator",
    ),
    "rules:\n  - {name: A, metric: m, aggregate: median, condition: '> 1'}": (
        "rule 'A'",
        "field aggregate",
    ),
    "rules:\n  - {name: A, metric: m, span: s, aggregate: p95, condition: '> 1'}": (
        "rule 'A'",
        "field metric",
        "exactly one of metric or span",
    ),
    "rules:\n  - {name: A, aggregate: p95, condition: '> 1'}": ("rule 'A'", "field metric"),
    "rules:\n  - {name: A, metric: m, aggregate: p95, condition: '> 1', window: 2d}": (
        "rule 'A'",
        "field window",
        "at most",
    ),
    "rules:\n  - {name: A, metric: m, aggregate: p95, condition: '> 1', severity: page}": (
        "rule 'A'",
        "field severity",
    ),
    "rules:\n  - {name: A, metric: m, aggregate: p95, condition: '> 1', labels: {a: [1]}}": (
        "rule 'A'",
        "field labels",
    ),
    "rules:\n  - {name: A, metric: m, aggregate: p95, condition: '> 1', colour: red}": (
        "rule 'A'",
        "field colour",
        "Unknown field",
    ),
    "rules:\n  - {name: has space, metric: m, aggregate: p95, condition: '> 1'}": (
        "rule 'has space'",
        "field name",
    ),
    "rules:\n  - {metric: m, aggregate: p95, condition: '> 1'}": ("rule #1", "field name"),
    "rules:\n  - {name: A, metric: m, aggregate: p95, condition: '> 1'}\n"
    "  - {name: A, metric: n, aggregate: p95, condition: '> 1'}": (
        "rule 'A'",
        "another rule's name",
    ),
    "rules:\n  - {name: BackupOverdue, metric: m, aggregate: p95, condition: '> 1'}": (
        "rule 'BackupOverdue'",
        "a built-in rule's name",
    ),
    "rules:\n  - {name: A, metric: m, aggregate: p95, condition: '> 1', filter: {host: x}}": (
        "rule 'A'",
        "field filter.host",
    ),
}


@pytest.mark.parametrize("text", list(BAD))
def test_a_bad_file_is_one_line_naming_the_file_the_rule_and_the_field(
    tmp_path: Path, text: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(AlertRulesError) as raised:
        load_rules_file(path, reserved=BUILTIN_NAMES)
    line = str(raised.value)
    assert "\n" not in line
    assert line.startswith(f"VRP_DASHBOARD_ALERT_RULES='{path}': ")
    for words in BAD[text]:
        assert words in line, line


def test_a_missing_or_oversized_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(AlertRulesError, match="cannot read the file: No such file"):
        load_rules_file(tmp_path / "absent.yaml")
    big = _write(tmp_path, "rules: []\n" + "#" * MAX_RULES_FILE_BYTES)
    with pytest.raises(AlertRulesError, match=f"larger than {MAX_RULES_FILE_BYTES} bytes"):
        load_rules_file(big)


def test_yaml_tags_that_would_build_python_objects_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "rules: !!python/object/apply:os.system ['true']")
    with pytest.raises(AlertRulesError, match="not valid YAML"):
        load_rules_file(path)


def test_disabling_an_unknown_builtin_rule_is_a_config_error() -> None:
    with pytest.raises(DashboardConfigError, match="Nope is not a built-in rule"):
        load_dashboard_settings({"VRP_DASHBOARD_ALERT_DISABLED": "SlowRoute,Nope"})
    settings = load_dashboard_settings({"VRP_DASHBOARD_ALERT_DISABLED": "SlowRoute, ServiceSilent"})
    assert settings.alerts.disabled == {"SlowRoute", "ServiceSilent"}


def test_the_dashboard_refuses_to_start_with_a_bad_rules_file(tmp_path: Path) -> None:
    _write(tmp_path, "rules:\n  - {name: Slow, metric: m, aggregate: p95, condition: '~ 3'}")

    result = run_vrp(tmp_path, VRP_DASHBOARD_ALERT_RULES="rules.yaml")

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(tmp_path / "rules.yaml") in lines[0]
    assert "rule 'Slow'" in lines[0] and "field condition" in lines[0]


def test_a_bad_interval_setting_exits_2_naming_it(tmp_path: Path) -> None:
    result = run_vrp(tmp_path, VRP_DASHBOARD_ALERT_INTERVAL="often")
    assert result.returncode == 2
    assert "VRP_DASHBOARD_ALERT_INTERVAL='often'" in result.stderr.strip()
