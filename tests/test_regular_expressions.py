"""Every regular expression of the four packages runs in linear time, whatever the input.

Log redaction, request validation, OTLP and settings parsing all match untrusted text with
Python's backtracking ``re``: one pattern with overlapping alternatives under a repetition (or a
scan that every start position repeats) lets a 60-byte header hold the GIL for hours. Nothing is
listed by hand here:

* the source is read (``ast``) for every use of ``re`` and of marshmallow's ``Regexp``; each
  pattern must be a module-level ``re.compile`` constant, so that the next one is found too;
* every module is imported and each of those constants is attacked: texts of the shape
  ``prefix + unit * k + end`` and ``(prefix + unit) * k + end``, where ``prefix`` is a cut of a
  string the pattern matches (drawn by hypothesis) and ``unit`` is each character of the
  pattern's own source (the characters its classes and literals are about) or nothing. Each
  text is matched everywhere (``finditer``) and as a whole (``fullmatch``) at two sizes, 8x
  apart, in a child process (:mod:`tests.regex_timing`): a match that does not end within
  :data:`TIMEOUT` seconds, or whose CPU time grows more than :data:`MAX_GROWTH` times for 8x
  the text (linear is 8, quadratic 64), fails the test with the text that did it.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisException, Unsatisfiable

from tests.regex_timing import PatternTimer

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("recorder", "instrumentation", "dashboard", "backup")
SMALL = 512
LARGE = 8 * SMALL
SIZES = (LARGE, SMALL)
TIMEOUT = 5.0
MAX_GROWTH = 24.0
# Below this CPU time at the large size the growth is not looked at: too short to measure well
# (linear patterns take from 10 to 600 microseconds for 4,000 characters).
NOTICED = 0.0005
# Strings the pattern matches (drawn by hypothesis), each cut at every length up to MAX_PREFIX.
EXAMPLES = 2
MAX_PREFIX = 12
END = "\x00"
EXTRA_UNITS = ("", " ", "\n", "\t", "0", "a", "z", "\\", END)
_MATCHING = frozenset(
    {"compile", "match", "search", "fullmatch", "sub", "subn", "split", "findall", "finditer"}
)


def _sources() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            yield module.removesuffix(".__init__"), path


def _is_re_call(node: ast.AST) -> str | None:
    """``compile`` for ``re.compile(...)`` (any function of ``re``), else None."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "re"
        and node.func.attr in _MATCHING
    ):
        return node.func.attr
    return None


def _is_regexp_validator(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name == "Regexp"


def _module_constants(tree: ast.Module) -> set[ast.AST]:
    """The ``re.compile`` calls that are the value of a module-level assignment."""
    return {statement.value for statement in _constant_statements(tree)}


def _constant_statements(tree: ast.Module) -> Iterator[ast.Assign | ast.AnnAssign]:
    for statement in tree.body:
        if (
            isinstance(statement, ast.Assign | ast.AnnAssign)
            and statement.value is not None
            and _is_re_call(statement.value) == "compile"
        ):
            yield statement


def _names_of_module_constants(tree: ast.Module) -> list[str]:
    names = []
    for statement in _constant_statements(tree):
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        names += [target.id for target in targets if isinstance(target, ast.Name)]
    return names


def _stray_patterns(path: Path) -> list[str]:
    """Uses of a regular expression that the discovery below would not see."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    constants = _module_constants(tree)
    stray = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and node.module in ("re", "regex"):
            stray.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Import) and any(alias.name == "regex" for alias in node.names):
            stray.append(f"{where}: import regex")
        elif (function := _is_re_call(node)) == "compile" and node not in constants:
            stray.append(f"{where}: re.compile outside a module-level assignment")
        elif function is not None and function != "compile":
            stray.append(f"{where}: re.{function}() (compile the pattern as a module constant)")
        elif _is_regexp_validator(node):
            assert isinstance(node, ast.Call)
            if not node.args or not isinstance(node.args[0], ast.Name):
                stray.append(f"{where}: Regexp() of a literal (pass a module-level pattern)")
    return stray


def _discovered() -> list[str]:
    """``module:name`` of every module-level compiled pattern of the packages."""
    refs = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            module = importlib.import_module(info.name)
            # type(), not isinstance(): some globals are proxies (flask.g) that raise on access.
            refs += [
                f"{info.name}:{name}"
                for name, value in vars(module).items()
                if type(value) is re.Pattern and not name.startswith("__")
            ]
        refs += [
            f"{package}:{name}" for name, value in vars(root).items() if type(value) is re.Pattern
        ]
    return sorted(set(refs))


PATTERNS = _discovered()


def test_every_regular_expression_is_a_module_level_constant() -> None:
    stray = [line for _module, path in _sources() for line in _stray_patterns(path)]

    assert stray == []


def test_every_module_level_pattern_in_the_source_is_attacked() -> None:
    in_source = {
        f"{module}:{name}"
        for module, path in _sources()
        for name in _names_of_module_constants(ast.parse(path.read_text(encoding="utf-8")))
    }

    assert in_source, "no pattern found: the source walk is broken"
    assert in_source <= set(PATTERNS)


_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def _for_examples(samples: st.SearchStrategy[Any], attack: Callable[[Any], None]) -> None:
    @given(samples)
    @_SETTINGS
    def run(sample: Any) -> None:
        attack(sample)

    run()


@pytest.fixture(scope="module")
def timer() -> Iterator[PatternTimer]:
    timer = PatternTimer(TIMEOUT)
    yield timer
    timer.close()


def _units(pattern: re.Pattern[Any]) -> list[str]:
    """What to repeat: each character the pattern's source names (a letter stands for all)."""
    source = pattern.pattern
    chars = source.decode("latin-1") if isinstance(source, bytes) else source
    return sorted({char for char in chars if not char.isalnum()} | set(EXTRA_UNITS))


def _recipes(prefix: str, units: list[str]) -> list[dict[str, Any]]:
    return [
        {"prefix": prefix, "unit": unit, "repeat_prefix": repeat_prefix, "end": END}
        for unit in units
        for repeat_prefix in (False, True)
        if unit or (repeat_prefix and prefix)
    ]


def _growth(times: list[float]) -> float:
    large, small = times
    return 0.0 if large < NOTICED else large / max(small, 1e-6)


def _check(timer: PatternTimer, ref: str, recipes: list[dict[str, Any]]) -> None:
    """Fails on the first recipe that is catastrophic, or superlinear on the best of three."""
    suspects = []
    for recipe, times in zip(recipes, list(timer.measure(ref, recipes, SIZES)), strict=False):
        assert times is not None, f"catastrophic: over {TIMEOUT}s for {ref} on {recipe}"
        if _growth(times) >= MAX_GROWTH:
            suspects.append((recipe, times))
    for recipe, times in suspects:
        # The best of three at each size, so that a busy machine is no cause.
        again = [t for t in timer.measure(ref, [recipe, recipe], SIZES) if t is not None]
        best = [min(column) for column in zip(times, *again, strict=True)]
        growth = _growth(best)
        assert growth < MAX_GROWTH, (
            f"superlinear: {growth:.0f}x the time for 8x the text: {ref} on {recipe} x {LARGE}"
        )


@pytest.mark.slow
@pytest.mark.parametrize("ref", PATTERNS)
def test_every_pattern_matches_hostile_text_in_linear_time(ref: str, timer: PatternTimer) -> None:
    module, _, name = ref.partition(":")
    pattern = getattr(importlib.import_module(module), name)
    units = _units(pattern)
    tried: set[str] = set()

    def attack(sample: str | bytes) -> None:
        text = sample.decode("latin-1") if isinstance(sample, bytes) else sample
        for cut in range(min(len(text), MAX_PREFIX) + 1):
            if (prefix := text[:cut]) not in tried:
                tried.add(prefix)
                _check(timer, ref, _recipes(prefix, units))

    whole = st.from_regex(pattern, fullmatch=True)
    try:
        whole.validate()
    except HypothesisException:  # a class hypothesis cannot draw from (lone surrogates)
        attack(pattern.pattern[:0])
        return
    try:
        _for_examples(whole, attack)
    except Unsatisfiable:  # a lookbehind at its start: it matches only within a longer text
        _for_examples(st.from_regex(pattern), attack)
