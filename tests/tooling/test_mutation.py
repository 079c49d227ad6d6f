"""The mutation harness: every listed mutant applies and names existing tests; the runner
classifies killed, survived, error, timeout and missing right on a tiny synthetic repository."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from cardiosim_tools import mutation
from cardiosim_tools.mutation import MUTANTS, REPO_ROOT, Mutant

#: The mutants issue 17 lists (they survived the suite before it), by id.
ISSUE_MUTANTS = (
    "defib-v1-rosc-reward-without-survival",
    "dosing-v1-qtc-excess-from-stop-limit",
    "trainer-bootstrap-from-reset-observation",
    "trainer-gae-lambda-cut-only-at-termination",
    "loss-no-advantage-normalisation",
    "loss-value-on-advantages",
    "episode-tracker-drops-final-reward",
    "evaluation-ci-90",
)


def _ids(mutants):
    return [m.id for m in mutants]


# --------------------------------------------------------------------------- the list


def test_ids_are_unique_kebab_case_and_include_the_issues_mutants():
    ids = _ids(MUTANTS)
    assert len(ids) == len(set(ids))
    for mutant_id in ids:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", mutant_id), mutant_id
    assert set(ISSUE_MUTANTS) <= set(ids)
    assert len(MUTANTS) >= 35


@pytest.mark.parametrize("mutant", MUTANTS, ids=_ids(MUTANTS))
def test_mutant_applies_once_and_still_parses(mutant: Mutant):
    source = (REPO_ROOT / mutant.path).read_text()
    assert source.count(mutant.original) == 1, (
        f"{mutant.id}: the original snippet must occur exactly once in {mutant.path}"
    )
    mutated = mutant.apply(source)
    assert mutated != source
    ast.parse(mutated, filename=mutant.path)
    assert mutant.description and "\n" not in mutant.description
    assert mutant.equivalent is None or mutant.equivalent.strip()


def _defines(tree: ast.Module, parts: list[str]) -> bool:
    """Whether ``parts`` (``[Class, ..., function]``) names a def in ``tree``."""
    body = tree.body
    for i, name in enumerate(parts):
        kinds = (ast.FunctionDef, ast.AsyncFunctionDef) if i == len(parts) - 1 else ast.ClassDef
        found = [node for node in body if isinstance(node, kinds) and node.name == name]
        if not found:
            return False
        body = getattr(found[0], "body", [])
    return True


@pytest.mark.parametrize("mutant", MUTANTS, ids=_ids(MUTANTS))
def test_mutant_tests_exist(mutant: Mutant):
    assert mutant.tests
    for test in mutant.tests:
        file, _, rest = test.partition("::")
        assert file.startswith("tests/") and file.endswith(".py"), test
        assert file != "tests/tooling/test_mutation.py"
        path = REPO_ROOT / file
        assert path.is_file(), f"{mutant.id}: {file} does not exist"
        if rest:
            parts = [re.sub(r"\[.*\]$", "", part) for part in rest.split("::")]
            assert _defines(ast.parse(path.read_text()), parts), f"{mutant.id}: no {test}"


def test_apply_refuses_an_ambiguous_or_absent_original():
    mutant = Mutant("x", "f.py", "a + b", "a - b", ("tests/t.py",), "d")
    assert mutant.apply("y = a + b\n") == "y = a - b\n"
    with pytest.raises(ValueError, match="occurs 2 times"):
        mutant.apply("y = a + b\nz = a + b\n")
    with pytest.raises(ValueError, match="occurs 0 times"):
        mutant.apply("y = a * b\n")


def test_select_keeps_list_order_and_rejects_unknown_ids():
    first, second = MUTANTS[0].id, MUTANTS[1].id
    assert _ids(mutation.select([second, first])) == [first, second]
    assert mutation.select(None) == MUTANTS
    with pytest.raises(KeyError, match="nope"):
        mutation.select([first, "nope"])


def test_cli_rejects_an_unknown_id_in_one_line_naming_the_accepted_ones(capsys):
    with pytest.raises(SystemExit) as excinfo:
        mutation.main(["--only", "no-such-mutant"])
    assert excinfo.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no-such-mutant" in message
    assert MUTANTS[0].id in message and MUTANTS[-1].id in message


def test_cli_lists_the_mutants(capsys):
    assert mutation.main(["--list", "--only", MUTANTS[0].id]) == 0
    out = capsys.readouterr().out
    assert MUTANTS[0].id in out and MUTANTS[0].path in out and MUTANTS[1].id not in out


# --------------------------------------------------------------------------- the runner


TINY_MODULE = """\
import time


def add(a, b):
    return a + b


def double(x):
    return 2 * x


def pause():
    time.sleep(0)
"""

TINY_TEST = """\
from calc import add, pause


def test_add():
    assert add(2, 3) == 5


def test_pause():
    pause()
"""


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    """A repository with a module, its test, and stray files the snapshot must skip."""
    repo = tmp_path / "repo"
    (repo / "calc").mkdir(parents=True)
    (repo / "calc" / "__init__.py").write_text(TINY_MODULE)
    (repo / "tests").mkdir()
    (repo / "tests" / "test_calc.py").write_text(TINY_TEST)
    (repo / ".git").mkdir()
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / "calc" / "__pycache__").mkdir()
    return repo


def _tiny(id, original, replacement, tests=("tests/test_calc.py",), equivalent=None):
    return Mutant(id, "calc/__init__.py", original, replacement, tests, id, equivalent)


TINY_MUTANTS = (
    _tiny("add-minus", "return a + b", "return a - b"),
    _tiny("double-triple", "return 2 * x", "return 3 * x"),
    _tiny("add-commutes", "return a + b", "return b + a", equivalent="addition commutes"),
    _tiny("add-renamed", "def add(a, b):", "def plus(a, b):"),
    _tiny("untested", "return 2 * x", "return x + x", tests=("tests/test_missing.py",)),
    _tiny("gone", "return a * b", "return a / b"),
)


def test_runner_classifies_a_tiny_repository_and_leaves_it_untouched(tiny_repo, tmp_path):
    before = (tiny_repo / "calc" / "__init__.py").read_text()
    reported, logged = [], []
    results, facts = mutation.run(
        TINY_MUTANTS,
        repo=tiny_repo,
        jobs=2,
        timeout=120.0,
        packages=("calc",),
        cache_dir=tmp_path / "cache",
        report=reported.append,
        log=logged.append,
    )
    status = {r.id: r.status for r in results}
    assert status == {
        "add-minus": "killed",
        "double-triple": "survived",
        "add-commutes": "survived",
        "add-renamed": "error",  # the test cannot import `add`: exit code 2, labelled
        "untested": "missing tests",
        "gone": "stale",
    }
    assert _ids(results) == _ids(TINY_MUTANTS)  # list order, whatever finished first
    assert sorted(_ids(reported)) == sorted(_ids(TINY_MUTANTS))
    by_id = {r.id: r for r in results}
    assert by_id["add-minus"].killed_by == ("tests/test_calc.py::test_add",)
    assert by_id["add-minus"].returncode == 1
    assert by_id["add-renamed"].returncode == 2 and by_id["add-renamed"].killed
    assert by_id["untested"].missing == ("tests/test_missing.py",)
    assert any("baseline passed" in line for line in logged)
    assert facts["baseline_seconds"] > 0

    summary = mutation.score(results)
    # Scored: add-minus, add-renamed killed; double-triple survived; untested, gone not killed.
    assert (summary["killed"], summary["non_equivalent"], summary["equivalent"]) == (2, 5, 1)
    assert summary["score"] == pytest.approx(0.4)
    assert "2 / 5" in mutation.score_line(summary)

    # The working tree is untouched, and nothing was left behind in it.
    assert (tiny_repo / "calc" / "__init__.py").read_text() == before
    assert sorted(p.name for p in tiny_repo.iterdir()) == [".git", "calc", "tests"]

    table = mutation.format_table(results)
    assert "double-triple" in table and "survived" in table and "(equivalent)" in table
    written = mutation.write_results(results, facts, tmp_path / "out")
    data = json.loads((tmp_path / "out" / "mutation.json").read_text())
    assert [m["id"] for m in data["mutants"]] == _ids(TINY_MUTANTS)
    assert data["summary"]["killed"] == 2 and data["mutants"][0]["killed"] is True
    markdown = written[0].read_text()
    assert "`add-commutes`: addition commutes" in markdown
    assert "2 / 5 non-equivalent mutants killed" in markdown


def test_a_mutant_past_its_timeout_counts_as_killed_and_labelled(tiny_repo, tmp_path):
    slow = _tiny("slow", "time.sleep(0)", "time.sleep(60)")
    result = mutation.run_mutant(slow, tiny_repo, tmp_path / "work", 3.0, None)
    assert result.status == "timeout" and result.killed
    assert result.seconds < 30
    assert not (tmp_path / "work").exists()


def test_a_failing_baseline_aborts_with_its_output(tiny_repo, tmp_path):
    (tiny_repo / "tests" / "test_calc.py").write_text(TINY_TEST + "\n\ndef test_no():\n    1 / 0\n")
    with pytest.raises(mutation.BaselineFailed, match="ZeroDivisionError"):
        mutation.run(
            TINY_MUTANTS[:1],
            repo=tiny_repo,
            packages=("calc",),
            cache_dir=tmp_path / "cache",
            log=lambda line: None,
        )


def test_imports_must_resolve_to_the_copy(tiny_repo, tmp_path):
    mutation.check_imports_resolve(tiny_repo, ("calc",), None)
    with pytest.raises(RuntimeError, match="resolves to"):
        mutation.check_imports_resolve(tiny_repo, ("json",), None)
    # The installed package would shadow nothing: cardiosim_jax is not in the tiny repo.
    with pytest.raises(RuntimeError, match="not to the copy"):
        mutation.check_imports_resolve(tiny_repo, ("cardiosim_jax",), None)
