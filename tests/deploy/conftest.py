"""tests/deploy/ runs against the stack `make test-deploy` starts (docker/test-deploy.sh), and
only there: anywhere else (a plain `make test` or `pytest`) its tests are skipped."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("DEPLOY_STACK") == "1":
        return
    skip = pytest.mark.skip(reason="needs the Docker stack: run `make test-deploy`")
    for item in items:
        if "tests/deploy/" in item.nodeid:
            item.add_marker(skip)
