"""Schemathesis driven by hypothesis directly, shared by the API fuzz tests of every package.

schemathesis' own pytest plugin is not used because it does not work with pytest 9 (it writes
``Function._nodeid``); each test walks the operations of its app's OpenAPI document and calls
:func:`fuzz_operation` for valid and invalid cases.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode


def fuzz_operation(
    operation: schemathesis.APIOperation, mode: GenerationMode, seen: list[str], *, examples: int
) -> None:
    """Call ``operation`` with ``examples`` generated cases; no answer may be a 5xx.

    Every call is appended to ``seen`` (method, path, query and status), so the caller can check
    that enough cases ran.
    """

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call()
        seen.append(f"{case.method} {case.formatted_path} {case.query} -> {response.status_code}")
        assert response.status_code < 500, f"{seen[-1]}: {response.text[:500]}"

    try:
        run()
    except Unsatisfiable:
        # An operation without parameters (``GET /healthz``) has no invalid input to generate.
        assert mode is GenerationMode.NEGATIVE, operation.label
