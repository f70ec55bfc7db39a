"""notebooks/03_abcd_recommendation.ipynb: in step with its jupytext source, and its MovieLens-1M section
run end to end on a small fake ml-1m folder (ratings.dat / movies.dat in the documented format)."""
from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOK = NOTEBOOKS / "03_abcd_recommendation.ipynb"


def write_fake_movielens(folder: Path, *, n_users: int = 120, n_movies: int = 80, seed: int = 0) -> Path:
    """A small ml-1m folder: ``ratings.dat`` (user::item::rating::timestamp, a Markov chain over
    movies so there is something to learn) and latin-1 ``movies.dat`` (item::title::genres);
    raw movie ids are odd numbers (not 0..n-1), so ``dense()`` has work to do."""
    rng = np.random.default_rng(seed)
    ids = 1 + 2 * np.arange(n_movies)
    succ = rng.integers(0, n_movies, size=(n_movies, 2))
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for user in range(1, n_users + 1):
        m = int(rng.integers(n_movies))
        t = 978300000 + int(rng.integers(10**6))
        for _ in range(int(rng.integers(8, 30))):
            lines.append(f"{user}::{ids[m]}::{int(rng.integers(1, 6))}::{t}")
            t += int(rng.integers(1, 500))
            m = int(succ[m, rng.integers(2)]) if rng.random() < 0.8 else int(rng.integers(n_movies))
    (folder / "ratings.dat").write_text("\n".join(lines) + "\n")
    genres = ("Comedy", "Drama", "Action|Thriller", "Children's|Animation")
    movies = [f"{i}::{'Amélie' if k == 0 else f'Film {k}'} ({1990 + k % 10})::{genres[k % len(genres)]}"
              for k, i in enumerate(ids)]
    (folder / "movies.dat").write_bytes(("\n".join(movies) + "\n").encode("latin-1"))
    return folder


def test_the_notebook_is_its_jupytext_source():
    import jupytext

    nb = nbformat.read(NOTEBOOK, as_version=4)
    source = jupytext.read(NOTEBOOK.with_suffix(".py"))
    assert [(c.cell_type, c.source) for c in nb.cells] == [(c.cell_type, c.source) for c in source.cells], \
        "notebooks/03_abcd_recommendation.ipynb is out of date: run jupytext --sync notebooks/03_abcd_recommendation.py"
    assert "parameters" in nb.cells[1].metadata.get("tags", [])
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_fake_movielens_reads_as_movielens(tmp_path):
    from analysis import load_dataset

    folder = write_fake_movielens(tmp_path / "ml-1m")
    ds = load_dataset("movielens-1m", "train", path=folder)
    dense = ds.dense()
    assert len(ds) == 120 and ds.item_ids[0] == 1 and dense.item_ids == tuple(range(ds.n_items))
    assert dense.titles[0] == "Amélie (1990)"


@pytest.mark.integration
def test_the_notebook_runs_its_movielens_section_on_a_fake_folder(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("ATTNLAB_FAST", "1")
    monkeypatch.setenv("ATTNLAB_MOVIELENS", str(write_fake_movielens(tmp_path / "ml-1m")))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "MovieLens-1M skipped" not in text
    assert "120 users, 80 movies" in text and "top-5:" in text and "Explanation of prediction" in text
