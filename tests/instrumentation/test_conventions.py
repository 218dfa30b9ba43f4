"""One module holds the telemetry contract's names, the modules use it, and the docs match it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from instrumentation import conventions

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "telemetry.md"
# Dotted names the page mentions that are not telemetry names (a logger).
NOT_TELEMETRY = {"instrumentation.access", "instrumentation.failures"}
PACKAGES = ("instrumentation", "recorder", "dashboard", "backup")
DOTTED = re.compile(r"[a-z_]+(?:\.[a-z_]+)+")
# Dotted literals in the packages that look like telemetry names but are not.
NOT_TELEMETRY_LITERALS = {
    ("instrumentation/database.py", "vrp.session_scope"),  # a key of Session.info
    ("recorder/cli.py", "vrp.needs_no_config"),  # a key of click's context
    ("dashboard/otlp_spans.py", "vrp.dashboard.lean"),  # a protobuf package name
}


def _names() -> dict[str, str]:
    """``{constant: name}`` for every string constant of the module."""
    return {
        constant: value
        for constant, value in vars(conventions).items()
        if constant.isupper() and isinstance(value, str)
    }


def _dotted(value: str) -> bool:
    return DOTTED.fullmatch(value) is not None


def test_every_name_is_documented() -> None:
    text = DOC.read_text()
    missing = sorted(value for value in _names().values() if f"`{value}`" not in text)
    assert not missing, f"docs/telemetry.md does not mention {missing}"


def test_every_dotted_name_the_docs_mention_is_a_convention() -> None:
    mentioned = {token for token in re.findall(r"`([^`\s]+)`", DOC.read_text()) if _dotted(token)}
    phases = {conventions.BACKUP_PHASE_SPAN_PREFIX + phase for phase in conventions.BACKUP_PHASES}
    unknown = sorted(mentioned - set(_names().values()) - phases - NOT_TELEMETRY)
    assert not unknown, f"docs/telemetry.md names {unknown}, unknown to conventions.py"


def test_duration_histograms_are_metrics_of_the_contract() -> None:
    metrics = {value for constant, value in _names().items() if value.endswith(".duration")}
    assert set(conventions.DURATION_HISTOGRAMS) >= metrics
    assert conventions.DB_CLIENT_CONNECTION_WAIT_TIME in conventions.DURATION_HISTOGRAMS


def _namespaces() -> frozenset[str]:
    """The first parts of the contract's dotted names (``vrp``, ``db``, ``http``, ...): a dotted
    literal starting with one of them is a telemetry name, known to conventions.py or not."""
    return frozenset(value.partition(".")[0] for value in _names().values() if _dotted(value))


def _literals(module: str, source: str) -> list[tuple[int, str]]:
    """Telemetry names written as string literals in ``source``, the text of ``module`` (a path
    below the root), docstrings and the known look-alikes aside."""
    namespaces = _namespaces()
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and ast.get_docstring(node, clean=False) is not None
    }
    return sorted(
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and _dotted(node.value)
        and node.value.partition(".")[0] in namespaces
        and (module, node.value) not in NOT_TELEMETRY_LITERALS
    )


def _modules() -> list[str]:
    return sorted(
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if path.name != "conventions.py"
    )


@pytest.mark.parametrize("module", _modules())
def test_every_package_takes_telemetry_names_from_conventions(module: str) -> None:
    assert _literals(module, (ROOT / module).read_text()) == []


def test_a_telemetry_name_unknown_to_conventions_is_found() -> None:
    source = (
        '"""vrp.backup.id"""\n'
        'span.set_attribute("vrp.backup.blobs.renamed", 1)\n'
        'log(extra={"db.query.text": query, "not.a.namespace": 1})\n'
    )
    found = _literals("backup/example.py", source)
    assert found == [(2, "vrp.backup.blobs.renamed"), (3, "db.query.text")]
