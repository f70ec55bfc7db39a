"""The common base: session cache, errors, export helpers, save / export / code buttons."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from analysis.models import InputError
from widgets import AttentionExplorer, Session
from analysis.files import csv_text, jsonable, write_atomic
from widgets.base import error_html, error_text
from widgets.session import ModelBusy
from tests.helpers import tiny_model

TEXT = "a gripping film that never lets go of you"


@pytest.fixture(scope="module")
def model(tiny_bert):
    return tiny_bert


def test_session_caches_traces_per_model_and_text(model):
    s = Session(model, TEXT)
    first = s.trace()
    assert s.trace() is first and s.n_forward == 1
    s.text = "another text"
    s.trace()
    s.text = TEXT
    assert s.trace() is first and s.n_forward == 2
    other = tiny_model("bert", seed=1)
    s.model = other                                     # same name, new weights: no stale trace
    assert s.trace() is not first and s.n_forward == 3


def test_session_drops_the_graph_when_the_text_changes(model):
    s = Session(model, TEXT)
    s.graph = "a graph"
    s.text = "something else"
    assert s.graph is None


def test_session_model_is_busy_while_a_job_holds_it(model):
    import threading

    s = Session(model, TEXT)
    held, release = threading.Event(), threading.Event()

    def job():
        with s.using_model(wait=True):
            held.set()
            release.wait(5)

    t = threading.Thread(target=job)
    t.start()
    held.wait(5)
    with pytest.raises(ModelBusy, match="busy"):
        s.trace()
    release.set()
    t.join()
    assert s.trace().text == TEXT


def test_error_text_is_readable():
    assert error_text(IndexError("head 9 is out of range")) == "Out of range: head 9 is out of range"
    assert error_text(InputError("text is empty")) == "Invalid input: text is empty"
    assert error_text(KeyError("x is not a node")) == "Not found: x is not a node"
    assert error_text(RuntimeError("boom")) == "RuntimeError: boom"
    assert "&lt;script&gt;" in error_html(ValueError("<script>"))


def test_jsonable_and_csv_text():
    data = {"a": np.arange(3), "b": (np.float32(1.5), np.int64(2)), "c": float("nan"), 4: {"d": np.bool_(True)}}
    assert json.loads(json.dumps(jsonable(data))) == {"a": [0, 1, 2], "b": [1.5, 2], "c": None, "4": {"d": True}}
    text = csv_text([{"x": 1, "y": [1, 2]}, {"x": 2, "z": "q"}])
    rows = list(csv.DictReader(text.splitlines()))
    assert rows[0] == {"x": "1", "y": "[1, 2]", "z": ""} and rows[1]["z"] == "q"


def test_write_atomic_leaves_no_temporary_file(tmp_path):
    path = write_atomic(tmp_path / "sub" / "out.json", "{}")
    assert path.read_text() == "{}" and os.listdir(tmp_path / "sub") == ["out.json"]


def test_save_export_and_code_buttons(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    panel = AttentionExplorer(model, TEXT, layer=1, head=2)
    assert panel.filename.value == "attention_l1_h2"
    panel.figure_format.value = "png + svg + pdf"
    panel.save_button.click()
    assert sorted(os.listdir(tmp_path)) == ["attention_l1_h2.pdf", "attention_l1_h2.png", "attention_l1_h2.svg"]
    assert (tmp_path / "attention_l1_h2.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "attention_l1_h2.pdf").read_bytes()[:4] == b"%PDF"
    panel.export_button.click()
    data = json.loads((tmp_path / "attention_l1_h2.json").read_text())
    assert data["layer"] == 1 and data["head"] == 2 and data["tokens"] == panel.session.trace().tokens
    np.testing.assert_allclose(data["matrices"][0], panel.session.trace().attentions[1, 2], rtol=1e-6)
    rows = list(csv.DictReader((tmp_path / "attention_l1_h2.csv").read_text().splitlines()))
    assert len(rows) == len(data["tokens"]) ** 2 and set(rows[0]) >= {"query", "key", "weight"}
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]
    panel.head.value = 3                                 # the automatic file name follows the view
    assert panel.filename.value == "attention_l1_h3"
    panel.code_button.value = True
    assert panel.code_area.layout.display == "" and "trace.attentions[1, 3]" in panel.code_area.value
    panel.head.value = 0
    assert "trace.attentions[1, 0]" in panel.code_area.value      # the code follows the view
    assert panel.error_message == ""


def test_the_file_suffix_or_the_format_menu_picks_the_format(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    panel = AttentionExplorer(model, TEXT)
    panel.filename.value = str(tmp_path / "figure.svg")
    panel.save_button.click()
    assert (tmp_path / "figure.svg").read_text().lstrip().startswith("<?xml")
    panel.filename.value = str(tmp_path / "other")
    panel.figure_format.value = "pdf"
    panel.save_button.click()
    assert (tmp_path / "other.pdf").exists() and panel.error_message == ""


# ----------------------------------------------------------------------------- file names (issue 16)
def _files(folder):
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_names_sharing_a_prefix_save_two_files_with_the_full_name(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    panel = AttentionExplorer(model, TEXT)
    for name in ("exp_alpha0.01", "exp_alpha0.05", "fig.v2", "fig.v3"):
        panel.filename.value = name
        panel.save_button.click()
        panel.export_button.click()
    assert panel.error_message == ""
    assert _files(tmp_path) == sorted(f"{n}.{f}" for n in ("exp_alpha0.01", "exp_alpha0.05", "fig.v2", "fig.v3")
                                      for f in ("png", "json", "csv"))


def test_an_existing_file_is_not_overwritten_unless_asked(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.png").write_bytes(b"precious")
    (tmp_path / "mine.json").write_text("precious")
    panel = AttentionExplorer(model, TEXT)
    panel.filename.value = "mine"
    panel.save_button.click()
    assert (tmp_path / "mine.png").read_bytes() == b"precious"
    assert (tmp_path / "mine-1.png").read_bytes()[:4] == b"\x89PNG"
    assert "mine-1.png" in panel.status.value and "exists" in panel.status.value
    panel.export_button.click()                          # json and csv stay a numbered pair
    assert (tmp_path / "mine.json").read_text() == "precious"
    assert (tmp_path / "mine-1.json").exists() and (tmp_path / "mine-1.csv").exists()
    assert not (tmp_path / "mine.csv").exists()
    panel.figure_format.value = "png + svg + pdf"        # a set is numbered together
    panel.save_button.click()
    assert {"mine-2.png", "mine-2.svg", "mine-2.pdf"} <= set(_files(tmp_path))
    panel.overwrite.value = True
    panel.figure_format.value = "png"
    panel.save_button.click()
    assert (tmp_path / "mine.png").read_bytes()[:4] == b"\x89PNG" and "exists" not in panel.status.value
    assert panel.error_message == ""


@pytest.mark.parametrize("name", ["../escape", "../../escape", "sub/../../escape", "/tmp/attnlab_escape_test"])
def test_names_leaving_the_output_folder_are_refused_in_the_panel(model, tmp_path, monkeypatch, name):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    panel = AttentionExplorer(model, TEXT)
    panel.filename.value = name
    panel.save_button.click()
    panel.export_button.click()
    assert "outside the output folder" in panel.error_message
    assert _files(tmp_path) == ["work"] and _files(work) == []
    assert not [p for p in (tmp_path.parent.glob("escape*"))] and not list(Path("/tmp").glob("attnlab_escape_test*"))


def test_tilde_expands_to_home_and_never_makes_a_folder_named_tilde(model, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "project").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home / "project")
    panel = AttentionExplorer(model, TEXT)
    panel.filename.value = "~/project/figs/fig1"          # inside the output folder once expanded
    panel.save_button.click()
    assert panel.error_message == "" and (home / "project" / "figs" / "fig1.png").exists()
    panel.filename.value = "~/elsewhere"                  # home is outside the output folder
    panel.save_button.click()
    assert "outside the output folder" in panel.error_message
    panel.folder.value = "~"                              # choose home itself as the output folder
    panel.save_button.click()
    assert panel.error_message == "" and (home / "elsewhere.png").exists()
    assert not list(tmp_path.rglob("~"))


def test_the_output_folder_box_is_where_names_resolve(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    panel = AttentionExplorer(model, TEXT)
    panel.folder.value = str(tmp_path / "figures")
    panel.filename.value = "a"
    panel.save_button.click()
    assert (tmp_path / "figures" / "a.png").exists() and str(tmp_path / "figures" / "a.png") in panel.status.value


def test_output_path_rules(tmp_path, monkeypatch):
    from analysis.files import export_paths, figure_paths, output_path, unique_paths

    monkeypatch.setenv("HOME", str(tmp_path))
    assert output_path("a/b.png", tmp_path) == tmp_path / "a" / "b.png"
    assert output_path("~/x", tmp_path) == tmp_path / "x"
    assert output_path("/elsewhere/x", tmp_path, confine=False) == Path("/elsewhere/x")
    for bad in ("../x", "/etc/x", "", "  ", "."):
        with pytest.raises(ValueError):
            output_path(bad, tmp_path)
    (tmp_path / "out").symlink_to("/tmp")                 # a link pointing out of the folder
    with pytest.raises(ValueError, match="outside the output folder"):
        output_path("out/x", tmp_path)
    assert [p.name for p in figure_paths(Path("exp_alpha0.01"), ["png", "pdf"])] == ["exp_alpha0.01.png", "exp_alpha0.01.pdf"]
    assert [p.name for p in figure_paths(Path("fig.SVG"))] == ["fig.SVG"]
    assert [p.name for p in export_paths(Path("fig.v2"))] == ["fig.v2.json", "fig.v2.csv"]
    assert [p.name for p in export_paths(Path("t.csv"))] == ["t.json", "t.csv"]
    (tmp_path / "t.csv").write_text("x")
    assert [p.name for p in unique_paths([tmp_path / "t.json", tmp_path / "t.csv"])] == ["t-1.json", "t-1.csv"]
