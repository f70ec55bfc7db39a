"""ipywidgets panels over the analysis package (no maths here)."""
