"""Write each exercise's student and solutions notebooks from its one tagged source.

    python notebooks/exercises/make_versions.py            # write the notebooks
    python notebooks/exercises/make_versions.py --check    # exit 1 if a notebook is out of date

A source, ``sources/<name>.py``, is a jupytext percent-format notebook that runs as the solution.
A task is a cell tagged ``solution`` followed by a cell tagged ``check`` (one ``check_...``
expression). In a solution cell, lines between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` are the
answer (solutions only) and a ``# placeholder: <code>`` line is what students get instead
(``<code>`` only in the student notebook); every other line goes to both. Each task becomes one
cell: for students, their lines and then the check (which shows feedback and never raises); in
``solutions/<name>_solutions.ipynb``, the answer, ``fb = <check>``, ``assert fb.ok, fb`` and ``fb``,
so CI fails when a solution stops passing its own check. Every other cell is copied as is (with its
tags, e.g. ``parameters``). Outputs are never written; cell ids are kept from the notebooks already
there (new cells get ids derived from their place), so rewriting changes only what changed.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import jupytext
import nbformat
from jupytext.combine import map_outputs_to_inputs
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "sources"
BEGIN, END, PLACEHOLDER = "# BEGIN SOLUTION", "# END SOLUTION", "# placeholder:"
METADATA = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"}}
SOLUTIONS_NOTE = "*Solutions: every check below is asserted to pass.*"


def split_solution(source: str, where: str = "a solution cell") -> tuple[str, str]:
    """(student code, solution code) of one ``solution`` cell's source (see the module docstring)."""
    student, solution, inside = [], [], False
    for line in source.splitlines():
        mark = line.strip()
        if mark in (BEGIN, END):
            if (mark == BEGIN) == inside:
                raise ValueError(f"{where}: {mark!r} without a matching {END if inside else BEGIN!r}")
            inside = mark == BEGIN
        elif mark.startswith(PLACEHOLDER):
            if inside:
                raise ValueError(f"{where}: a {PLACEHOLDER!r} line inside {BEGIN!r} ... {END!r}")
            indent = line[:len(line) - len(line.lstrip())]
            student.append(indent + mark[len(PLACEHOLDER):].strip())
        else:
            solution.append(line)
            if not inside:
                student.append(line)
    if inside:
        raise ValueError(f"{where}: {BEGIN!r} is never closed by {END!r}")
    return "\n".join(student).rstrip(), "\n".join(solution).rstrip()


def versions(source: Path) -> tuple[nbformat.NotebookNode, nbformat.NotebookNode]:
    """The (student, solutions) notebooks of one tagged source, without outputs."""
    cells = jupytext.read(source).cells
    student, solution = [], []
    k = 0
    while k < len(cells):
        cell, tags = cells[k], cells[k].metadata.get("tags", [])
        if cell.cell_type == "markdown":
            text = cell.source
            student.append(new_markdown_cell(text))
            if not solution and text.startswith("# Exercise"):     # the title cell
                title, _, rest = text.partition("\n")
                text = f"{title} (solutions)\n\n{SOLUTIONS_NOTE}\n{rest}"
            solution.append(new_markdown_cell(text))
        elif "solution" in tags:
            where = f"{source.name}, cell {k}"
            following = cells[k + 1] if k + 1 < len(cells) else None
            if following is None or "check" not in following.metadata.get("tags", []):
                raise ValueError(f"{where}: a 'solution' cell must be followed by a cell tagged 'check'")
            mine, answer = split_solution(cell.source, where)
            check = following.source.strip()
            student.append(new_code_cell(f"{mine}\n{check}"))
            solution.append(new_code_cell(f"{answer}\nfb = {check}\nassert fb.ok, fb\nfb"))
            k += 1
        elif "check" in tags:
            raise ValueError(f"{source.name}, cell {k}: a 'check' cell must follow a 'solution' cell")
        else:
            meta = {"tags": list(tags)} if tags else {}
            student.append(new_code_cell(cell.source, metadata=meta))
            solution.append(new_code_cell(cell.source, metadata=dict(meta)))
        k += 1
    return (new_notebook(cells=student, metadata=METADATA), new_notebook(cells=solution, metadata=METADATA))


def targets(source: Path) -> tuple[Path, Path]:
    """Where the student and the solutions notebook of ``source`` live."""
    return HERE / f"{source.stem}.ipynb", HERE / "solutions" / f"{source.stem}_solutions.ipynb"


def keep_ids(nb: nbformat.NotebookNode, path: Path) -> nbformat.NotebookNode:
    """Give ``nb``'s cells the ids of the matching cells of the notebook at ``path`` (jupytext's
    matching: same source, else same place and type); other cells get an id from their place."""
    old = nbformat.read(path, as_version=4).cells if path.exists() else []
    matched = map_outputs_to_inputs(nb.cells, old) if old else [None] * len(nb.cells)
    used = {old[j].id for j in matched if j is not None}
    for k, (cell, j) in enumerate(zip(nb.cells, matched)):
        if j is not None:
            cell.id = old[j].id
            continue
        digest = hashlib.sha1(f"{path.name}:{k}".encode()).hexdigest()
        cell.id = next(digest[i:i + 8] for i in range(33) if digest[i:i + 8] not in used)
        used.add(cell.id)
    return nb


def _text(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"          # what nbformat.write (and jupytext) put in a file


def _same(nb: nbformat.NotebookNode, path: Path) -> bool:
    return path.exists() and _text(nb) == path.read_text(encoding="utf-8")


def _write(nb: nbformat.NotebookNode, path: Path) -> None:
    """Validate and write ``nb`` to ``path`` through a temporary file renamed into place."""
    from analysis.files import atomic_path

    nbformat.validate(nb)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(_text(nb), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check``, compare) every exercise's two notebooks; 1 when out of date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report notebooks that differ from their source")
    args = parser.parse_args(argv)
    stale = []
    for source in sorted(SOURCES.glob("*.py")):
        for nb, path in zip(versions(source), targets(source)):
            nb = keep_ids(nb, path)
            if _same(nb, path):
                continue
            stale.append(path)
            if not args.check:
                _write(nb, path)
                print(f"wrote {path.relative_to(HERE.parent.parent)}")
    if args.check and stale:
        print("out of date (run python notebooks/exercises/make_versions.py):",
              *(str(p.relative_to(HERE.parent.parent)) for p in stale), sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
