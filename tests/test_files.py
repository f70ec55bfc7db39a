"""analysis.files.atomic_path: a file is replaced whole or not at all."""
from __future__ import annotations

import os

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
