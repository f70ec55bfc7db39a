"""The notebooks as code: every .ipynb is what its jupytext source (or, for an exercise, its tagged
source through make_versions.py) says, carries no outputs, has a papermill ``parameters`` cell that
honours ATTNLAB_FAST, and runs top to bottom in fast mode with no error."""
from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NB_DIR.rglob("*.ipynb"))
EXERCISE_SOURCES = sorted((NB_DIR / "exercises" / "sources").glob("*.py"))
PAIRED = sorted(p for p in NB_DIR.glob("*.py") if p.with_suffix(".ipynb").exists())


def ids(path: Path) -> str:
    return path.name


def _make_versions():
    spec = importlib.util.spec_from_file_location("make_versions", NB_DIR / "exercises" / "make_versions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(c.cell_type, c.source, tuple(c.metadata.get("tags", ()))) for c in nb.cells]


def first_difference(expected: nbformat.NotebookNode, committed: nbformat.NotebookNode) -> str | None:
    """None when both have the same cells (type, source, tags), else where they first differ."""
    a, b = _cells(expected), _cells(committed)
    for k, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"cell {k} differs:\n  source: {x!r}\n  .ipynb: {y!r}"
    return None if len(a) == len(b) else f"{len(a)} cells in the source, {len(b)} in the .ipynb"


def test_there_are_notebooks():
    assert any(p.name == "01_tour.ipynb" for p in NOTEBOOKS)
    assert len(EXERCISE_SOURCES) == 4


def test_every_notebook_has_a_source():
    """Each top-level .ipynb has its percent-format .py; each exercise notebook comes from a source."""
    exercises = {s.stem for s in EXERCISE_SOURCES}
    for nb in NOTEBOOKS:
        if nb.parent == NB_DIR:
            assert nb.with_suffix(".py").exists(), f"{nb.name} has no jupytext source {nb.stem}.py"
        else:
            assert nb.stem.removesuffix("_solutions") in exercises, f"{nb} has no tagged source in exercises/sources/"


def test_pairing_is_declared():
    config = (NB_DIR / "jupytext.toml").read_text()
    assert 'formats = "ipynb,py:percent"' in config


@pytest.mark.parametrize("source", PAIRED, ids=ids)
def test_pair_is_in_sync(source):
    problem = first_difference(jupytext.read(source), nbformat.read(source.with_suffix(".ipynb"), as_version=4))
    assert problem is None, f"{source.name} and its .ipynb are out of sync ({problem}): " \
                            f"run jupytext --sync notebooks/{source.name}"


@pytest.mark.parametrize("source", EXERCISE_SOURCES, ids=ids)
def test_exercise_notebooks_are_their_versions(source):
    mv = _make_versions()
    for built, path in zip(mv.versions(source), mv.targets(source)):
        problem = first_difference(built, nbformat.read(path, as_version=4))
        assert problem is None, f"{path.name} is out of date ({problem}): run python notebooks/exercises/make_versions.py"


def test_a_changed_source_is_caught(tmp_path):
    """The sync check is not vacuous: an edited line, a new tag or a dropped cell each show up."""
    source = NB_DIR / "01_tour.py"
    committed = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    text = source.read_text()
    edits = [text.replace("TEXT = 'a gorgeous", "TEXT = 'a dull", 1),
             text.replace("# %%\nexplorer", '# %% tags=["slow"]\nexplorer', 1),
             text[:text.rindex("\n# %%")] + "\n"]
    for edited in edits:
        assert edited != text
        (tmp_path / "x.py").write_text(edited)
        assert first_difference(jupytext.read(tmp_path / "x.py"), committed) is not None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: commit notebooks without outputs"
    assert len({c.id for c in nb.cells}) == len(nb.cells)


def _assigned(source: str) -> set[str]:
    return {t.id for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_parameters_cell(path, monkeypatch):
    """One papermill ``parameters`` cell, before any other code, defining FAST (from ATTNLAB_FAST)
    and WORKERS; no later cell reassigns them, so a papermill override takes effect."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and code[0] is tagged[0], f"{path.name}: the first code cell must be the parameters cell"
    params = tagged[0].source
    assert {"FAST", "WORKERS"} <= _assigned(params)
    for cell in code[1:]:
        assert not {"FAST", "WORKERS"} & _assigned(cell.source), f"{path.name}: FAST/WORKERS reassigned after the parameters"
        assert "ATTNLAB_FAST" not in cell.source
    for env, want in [("1", True), ("0", False), (None, False)]:
        if env is None:
            monkeypatch.delenv("ATTNLAB_FAST", raising=False)
        else:
            monkeypatch.setenv("ATTNLAB_FAST", env)
        namespace: dict = {}
        exec(compile(params, f"{path.name}:parameters", "exec"), namespace)
        assert namespace["FAST"] is want and namespace["WORKERS"] == 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_papermill_reads_the_parameters(path):
    """papermill --help-notebook lists FAST and WORKERS (its parser gives up on some comments)."""
    import papermill   # a dev dependency: missing is a failure, not a skip

    assert {"FAST", "WORKERS"} <= set(papermill.inspect_notebook(str(path)))


def test_sources_have_no_unused_names():
    """ruff's unused-import / redefinition / unused-variable rules over every notebook source (the
    .py files: a student notebook legitimately imports what only its solution uses)."""
    sources = [str(p) for p in NB_DIR.rglob("*.py")]
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "F401,F811,F841",
                             "--output-format", "concise", *sources], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_runs(path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("ATTNLAB_FAST", "1")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors


# ----------------------------------------------------------------------------- make_versions
SOLUTION_CELL = """# placeholder: answer = None   # a number
# BEGIN SOLUTION
x = 2
answer = x + 1
# END SOLUTION
shown = answer
# BEGIN SOLUTION
print(shown)
# END SOLUTION"""


def test_split_solution():
    student, solution = _make_versions().split_solution(SOLUTION_CELL)
    assert student == "answer = None   # a number\nshown = answer"
    assert solution == "x = 2\nanswer = x + 1\nshown = answer\nprint(shown)"


@pytest.mark.parametrize("bad", ["# BEGIN SOLUTION\nx = 1", "x = 1\n# END SOLUTION",
                                 "# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION",
                                 "# BEGIN SOLUTION\n# placeholder: x = None\n# END SOLUTION"])
def test_split_solution_rejects_unbalanced_markers(bad):
    with pytest.raises(ValueError, match="SOLUTION"):
        _make_versions().split_solution(bad)


def test_versions_of_a_small_source(tmp_path):
    src = tmp_path / "09_demo.py"
    src.write_text('# %% [markdown]\n# # Exercise 9: demo\n#\n# Goals.\n\n'
                   '# %% tags=["parameters"]\nFAST = False\n\n'
                   f'# %% tags=["solution"]\n{SOLUTION_CELL}\n\n'
                   '# %% tags=["check"]\ncheck_it(answer)\n')
    student, solution = _make_versions().versions(src)
    assert [c.cell_type for c in student.cells] == ["markdown", "code", "code"]
    assert student.cells[0].source == "# Exercise 9: demo\n\nGoals."
    assert solution.cells[0].source.startswith("# Exercise 9: demo (solutions)\n\n*Solutions:")
    assert student.cells[1].metadata["tags"] == solution.cells[1].metadata["tags"] == ["parameters"]
    assert student.cells[2].source == "answer = None   # a number\nshown = answer\ncheck_it(answer)"
    assert solution.cells[2].source.endswith("print(shown)\nfb = check_it(answer)\nassert fb.ok, fb\nfb")
    src.write_text('# %% tags=["solution"]\nanswer = 1\n')
    with pytest.raises(ValueError, match="check"):
        _make_versions().versions(src)


def test_make_versions_writes_checks_and_keeps_cell_ids(tmp_path, monkeypatch):
    """Writing into an empty folder, then again, changes nothing (--check passes); after a source
    edit --check fails, and rewriting keeps every cell's id."""
    mv = _make_versions()
    monkeypatch.setattr(mv, "HERE", tmp_path)
    monkeypatch.setattr(mv, "SOURCES", tmp_path / "sources")
    mv.SOURCES.mkdir()
    source = mv.SOURCES / EXERCISE_SOURCES[1].name
    text = EXERCISE_SOURCES[1].read_text()
    source.write_text(text)
    student, solution = mv.targets(source)
    assert mv.main(["--check"]) == 1 and not student.exists()
    assert mv.main([]) == 0
    first = student.read_text(), solution.read_text()
    assert mv.main(["--check"]) == 0
    mv.main([])
    assert (student.read_text(), solution.read_text()) == first
    ids = [c.id for c in nbformat.read(student, as_version=4).cells]
    heading = text[text.index("# ## "):].split("\n", 1)[0]
    source.write_text(text.replace(heading, heading + " (edited)", 1))
    assert mv.main(["--check"]) == 1
    mv.main([])
    after = nbformat.read(student, as_version=4).cells
    assert [c.id for c in after] == ids and any("(edited)" in c.source for c in after)
