"""The bare distribution (``pip install voice-recorder-pro``, no extra) is a library an app can
adopt: built as a wheel here, installed into a fresh virtualenv with pip (the configured package
index and wheel cache), it brings none of the applications' heavy dependencies, and the adoption
app of tests/adoption/app.py runs on it, instrumented, answering as it does without."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.adoption.otlp_receiver import running_receiver
from tests.adoption.test_adoption import ROOT, run_app, without_instrumentation_frames

PACKAGES = ("recorder", "instrumentation", "dashboard", "backup")
NOT_WANTED = ("dash", "plotly", "zstandard", "mutagen", "psycopg", "alembic", "flask_smorest")


def _pip(*arguments: str, python: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *arguments],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.mark.slow
def test_the_bare_distribution_installs_alone_and_runs_the_adoption_app(tmp_path: Path) -> None:
    # Built from a copy: a build leaves build/ and *.egg-info behind in the folder it reads.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    dist = tmp_path / "dist"
    built = _pip(
        "wheel", "--quiet", "--no-deps", "-w", str(dist), str(source), python=sys.executable
    )
    assert built.returncode == 0, built.stderr[-4000:]
    [wheel] = dist.glob("voice_recorder_pro-*.whl")
    environment = tmp_path / "bare"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    installed = _pip("install", "--quiet", str(wheel), python=python)
    assert installed.returncode == 0, installed.stderr[-4000:]

    present = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util, sys; "
            "print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m)))",
            *NOT_WANTED,
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.split()
    assert present == []

    url = f"sqlite:///{tmp_path / 'notes.db'}"
    plain = run_app(str(python), url, tmp_path / "plain.log", cwd=tmp_path, from_source=False)
    with running_receiver() as receiver:
        adopted = run_app(
            str(python),
            url,
            tmp_path / "adopted.log",
            endpoint=receiver.endpoint,
            cwd=tmp_path,
            from_source=False,
        )
    assert adopted.answers == plain.answers
    assert without_instrumentation_frames(adopted.app_log) == plain.app_log
    assert {"POST /notes", "INSERT notes"} <= {name for name, _ in receiver.spans()}
    assert "db.client.operation.duration" in receiver.metric_names()
