"""Tests of the ``widgets`` package (panels, controls, the Lab)."""
