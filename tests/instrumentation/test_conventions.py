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


def _names() -> dict[str, str]:
    """``{constant: name}`` for every string constant of the module."""
    return {
        constant: value
        for constant, value in vars(conventions).items()
        if constant.isupper() and isinstance(value, str)
    }


def _dotted(value: str) -> bool:
    return re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", value) is not None


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


def _literals(path: Path) -> list[tuple[int, str]]:
    """Contract names written as string literals in ``path`` (docstrings aside)."""
    names = {value for value in _names().values() if _dotted(value)}
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and ast.get_docstring(node, clean=False) is not None
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and node.value in names
    ]


@pytest.mark.parametrize(
    "module",
    sorted(
        path.name
        for path in (ROOT / "instrumentation").glob("*.py")
        if path.name != "conventions.py"
    ),
)
def test_instrumentation_modules_take_names_from_conventions(module: str) -> None:
    assert _literals(ROOT / "instrumentation" / module) == []
