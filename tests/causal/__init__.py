"""Tests of ``analysis.causal``: CI tests, graphs, learners against causal-learn, scores."""
