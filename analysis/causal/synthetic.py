"""Planted linear SEMs: random DAGs and the "attention" matrix whose ``A A^T`` is the SEM
covariance, so a causal graph with known truth can be fed to the learners.

For a DAG with weighted adjacency ``B`` (``B[u, v]`` the weight of u -> v) and noise
variances ``d``, ``x = B^T x + e`` gives ``x = (I - B^T)^-1 e``; with
``A = (I - B^T)^-1 diag(d)^1/2`` the covariance of x is ``A A^T``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["check_seed", "random_dag", "random_weights", "sem_mixing_matrix", "sem_covariance",
           "SEED_MAX"]

#: seeds are integers 0..SEED_MAX (what numpy's legacy seeding and most tools accept)
SEED_MAX = 2**32 - 1


def check_seed(seed: int, name: str = "seed") -> int:
    """``seed`` as an int, or a ValueError naming the valid range 0..2**32-1."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) \
            or not 0 <= int(seed) <= SEED_MAX:
        raise ValueError(f"{name} must be an integer in 0..2**32-1 ({SEED_MAX}), not {seed!r}")
    return int(seed)


def random_dag(n_nodes: int, density: float, *, seed: int) -> np.ndarray:
    """A random DAG (n, n) bool adjacency, ``[u, v]`` meaning u -> v, each pair of a random
    topological order joined with probability ``density``; node labels are shuffled."""
    if n_nodes < 1:
        raise ValueError(f"n_nodes must be >= 1, got {n_nodes}")
    if not 0 <= density <= 1:
        raise ValueError(f"density must be in [0, 1], got {density}")
    rng = np.random.default_rng(check_seed(seed))
    upper = np.triu(rng.random((n_nodes, n_nodes)) < density, 1)
    perm = rng.permutation(n_nodes)
    dag = np.zeros((n_nodes, n_nodes), dtype=bool)
    dag[np.ix_(perm, perm)] = upper
    return dag


def random_weights(dag: np.ndarray, *, low: float = 0.5, high: float = 1.5,
                   seed: int) -> np.ndarray:
    """Edge weights (n, n) with |w| uniform in [low, high] and a random sign on each edge
    of ``dag`` (bounded away from 0 so tests at large n_samples act like an oracle)."""
    rng = np.random.default_rng(check_seed(seed))
    dag = np.asarray(dag, dtype=bool)
    mag = rng.uniform(low, high, size=dag.shape)
    sign = rng.choice([-1.0, 1.0], size=dag.shape)
    return np.where(dag, mag * sign, 0.0)


def sem_mixing_matrix(weights: np.ndarray, noise_var: np.ndarray | None = None) -> np.ndarray:
    """``A = (I - B^T)^-1 diag(noise_var)^1/2`` (n, n): x = A e with e ~ N(0, I)."""
    B = np.asarray(weights, dtype=np.float64)
    n = B.shape[0]
    d = np.ones(n) if noise_var is None else np.asarray(noise_var, dtype=np.float64)
    if np.any(d <= 0):
        raise ValueError("noise variances must be positive")
    return np.linalg.solve(np.eye(n) - B.T, np.diag(np.sqrt(d)))


def sem_covariance(weights: np.ndarray, noise_var: np.ndarray | None = None) -> np.ndarray:
    """The SEM covariance ``A A^T`` (n, n)."""
    A = sem_mixing_matrix(weights, noise_var)
    return A @ A.T
