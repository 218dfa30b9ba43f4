"""Configured paths come out absolute, joined to a base folder (by default the working one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from instrumentation.paths import absolute_path, absolute_sqlite_url


def test_a_relative_path_is_joined_to_the_base_and_an_absolute_one_is_kept(tmp_path: Path) -> None:
    assert absolute_path("var/log", tmp_path) == tmp_path / "var" / "log"
    assert absolute_path("/srv/audio", tmp_path) == Path("/srv/audio")


def test_the_base_defaults_to_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert absolute_path("backups") == tmp_path / "backups"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///var/vrp.db", "sqlite:////base/var/vrp.db"),
        ("sqlite:///t.db?timeout=3", "sqlite:////base/t.db?timeout=3"),
        ("sqlite:////abs/t.db", "sqlite:////abs/t.db"),
        ("sqlite://", "sqlite://"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("sqlite:///file:t.db?uri=true", "sqlite:///file:t.db?uri=true"),
        ("postgresql://u:secret@h/db", "postgresql://u:secret@h/db"),
        ("not a url", "not a url"),
    ],
)
def test_only_the_file_of_a_sqlite_url_is_made_absolute(url: str, expected: str) -> None:
    assert absolute_sqlite_url(url, Path("/base")) == expected
