"""analysis.files.atomic_path: a file is replaced whole or not at all."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from analysis.files import atomic_path


def test_success_replaces_the_file_readable_by_all(tmp_path):
    target = tmp_path / "sub" / "table.csv"
    with atomic_path(target) as tmp:
        with open(tmp, "w") as f:
            f.write("a,b\n1,2\n")
        assert not target.exists()          # nothing visible until the rename
    assert target.read_text() == "a,b\n1,2\n"
    assert os.stat(target).st_mode & 0o777 == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["table.csv"]


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "figure.png"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]


def test_without_overwrite_an_existing_file_is_kept_and_no_temporary_left(tmp_path):
    target = tmp_path / "figure.png"
    target.write_text("old")
    with pytest.raises(FileExistsError, match="exists already"), atomic_path(target, overwrite=False) as tmp:
        Path(tmp).write_text("new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]
    with atomic_path(tmp_path / "fresh.png", overwrite=False) as tmp:
        Path(tmp).write_text("new")
    assert (tmp_path / "fresh.png").read_text() == "new"
    assert os.stat(tmp_path / "fresh.png").st_mode & 0o777 == 0o644


def test_save_figure_keeps_the_full_name_and_can_refuse_to_overwrite(tmp_path):
    import matplotlib.pyplot as plt

    from analysis.figures.style import save_figure

    fig = plt.figure()
    try:
        a = save_figure(fig, tmp_path / "exp_alpha0.01", ["png"])
        b = save_figure(fig, tmp_path / "exp_alpha0.05", ["png", "svg"])
        assert [p.name for p in a + b] == ["exp_alpha0.01.png", "exp_alpha0.05.png", "exp_alpha0.05.svg"]
        with pytest.raises(FileExistsError):
            save_figure(fig, tmp_path / "exp_alpha0.01.png", overwrite=False)
        with pytest.raises(ValueError, match="unsupported figure format 'gif'"):
            save_figure(fig, tmp_path / "x", ["gif"])
    finally:
        plt.close(fig)
