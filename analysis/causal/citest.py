"""Conditional-independence tests over a correlation matrix.

``FisherZTest`` answers "is token i independent of token j given the set S?" from a
correlation (or covariance) matrix and an effective sample size, one test at a time
(``test(i, j, cond)``) or many at once (``test.test_many(pairs, conds)``, one vectorized
numpy call per conditioning-set size). ``DSeparationOracle`` answers the same questions
exactly from a known DAG, so that the learners can be checked against the truth.

Both return :class:`CITestResult` objects and keep a ``log`` of what the learners asked.
"""
from __future__ import annotations

import abc
import math
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
from scipy.special import erfc, erfcinv

__all__ = [
    "BatchedCITest",
    "CITestResult",
    "FisherZTest",
    "DSeparationOracle",
    "partial_correlation",
    "partial_correlations",
    "correlation_from_covariance",
    "nearest_correlation",
    "PSD_TOLERANCE",
]

#: smallest eigenvalue a correlation matrix may have (its eigenvalues sum to n): below
#: ``-PSD_TOLERANCE`` it is not positive semi-definite and the tests refuse it.
PSD_TOLERANCE = 1e-6
_RHO_MAX = 1.0 - 1e-12
_RIDGE = 1e-10
_SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class CITestResult:
    """One conditional-independence test: ``i`` and ``j`` given ``cond``.

    ``rho`` is the partial correlation, ``z`` the Fisher statistic
    ``sqrt(n - |S| - 3) * |atanh(rho)|``, ``p`` its two-sided p-value and
    ``independent`` is ``p > alpha``.
    """

    i: int
    j: int
    cond: tuple[int, ...]
    rho: float
    z: float
    p: float
    independent: bool

    def __str__(self) -> str:
        verdict = "indep" if self.independent else "dep"
        return (f"{self.i} _||_ {self.j} | {list(self.cond)}: rho={self.rho:+.4f} "
                f"z={self.z:.3f} p={self.p:.3g} -> {verdict}")


# ---------------------------------------------------------------------------------------
# validation and partial correlations
# ---------------------------------------------------------------------------------------

def _as_square_matrix(mat: np.ndarray, what: str = "corr") -> np.ndarray:
    """Check that ``mat`` is a finite, symmetric, square float matrix; return it as float64."""
    arr = np.asarray(mat, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{what} must be a square 2-D matrix, got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"{what} must have at least 2 variables, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or infinite entries")
    scale = max(1.0, float(np.max(np.abs(arr))))
    if not np.allclose(arr, arr.T, atol=1e-8 * scale, rtol=1e-6):
        raise ValueError(f"{what} must be symmetric (max |C - C^T| = "
                         f"{float(np.max(np.abs(arr - arr.T))):.3g})")
    return arr


def correlation_from_covariance(cov: np.ndarray) -> np.ndarray:
    """Normalise a covariance ``C`` (n, n) to the correlation ``D^-1/2 C D^-1/2`` (n, n).

    Variables with zero variance get unit variance and zero correlation with the rest, so
    the result is always a valid correlation matrix.
    """
    arr = _as_square_matrix(cov, "covariance")
    var = np.diag(arr).copy()
    if np.any(var < 0):
        raise ValueError("covariance has a negative diagonal entry (variance); "
                         f"indices {np.flatnonzero(var < 0).tolist()}")
    scale = max(float(var.max()), 1e-300)
    dead = var <= 1e-14 * scale
    std = np.sqrt(np.where(dead, 1.0, var))
    corr = arr / std[:, None] / std[None, :]
    corr[dead, :] = 0.0
    corr[:, dead] = 0.0
    np.fill_diagonal(corr, 1.0)
    corr = np.clip(0.5 * (corr + corr.T), -1.0, 1.0)
    return corr


def _unit_diagonal(arr: np.ndarray) -> np.ndarray:
    """``D^-1/2 C D^-1/2`` (n, n) without clipping (zero-variance variables: unit variance,
    no correlation); raises on a negative variance."""
    var = np.diag(arr).copy()
    if np.any(var < 0):
        raise ValueError("covariance has a negative diagonal entry (variance); "
                         f"indices {np.flatnonzero(var < 0).tolist()}")
    dead = var <= 1e-14 * max(float(var.max()), 1e-300)
    std = np.sqrt(np.where(dead, 1.0, var))
    out = arr / std[:, None] / std[None, :]
    out[dead, :] = 0.0
    out[:, dead] = 0.0
    np.fill_diagonal(out, 1.0)
    return out


def _smallest_eigenvalue(corr: np.ndarray) -> float:
    return float(np.linalg.eigvalsh(0.5 * (corr + corr.T))[0])


def _psd_error(lam: float, what: str, fix: str) -> ValueError:
    return ValueError(
        f"{what} is not positive semi-definite: its smallest eigenvalue is {lam:.4g}, below "
        f"-{PSD_TOLERANCE:g} (the tolerance), so it is no correlation or covariance matrix "
        f"(A A^T of an attention head always is). Check how it was built, or {fix}")


def _as_correlation(mat: np.ndarray, *, repair: bool = False, check: bool = True) -> np.ndarray:
    """A correlation matrix (n, n) from a correlation or covariance matrix, checked to be
    positive semi-definite within ``PSD_TOLERANCE`` (one eigvalsh); with ``repair`` a
    matrix that is not is replaced by :func:`nearest_correlation` with a warning."""
    arr = _as_square_matrix(mat)
    unit = np.allclose(np.diag(arr), 1.0, atol=1e-9)
    if check:
        normed = arr if unit else _unit_diagonal(arr)
        lam = _smallest_eigenvalue(normed)
        if lam < -PSD_TOLERANCE:
            if not repair:
                raise _psd_error(lam, "corr", "pass repair=True to use the nearest correlation "
                                 "matrix (Higham 2002) instead")
            fixed = nearest_correlation(normed)
            warnings.warn(f"corr is not positive semi-definite (smallest eigenvalue {lam:.4g}): "
                          "replaced by the nearest correlation matrix (largest entry change "
                          f"{float(np.max(np.abs(fixed - normed))):.3g})", RuntimeWarning,
                          stacklevel=4)
            return fixed
    if unit:
        return arr
    return correlation_from_covariance(arr)


def nearest_correlation(corr: np.ndarray, *, max_iter: int = 500,
                        tol: float = 1e-10) -> np.ndarray:
    """The nearest correlation matrix (n, n; Frobenius norm) to a symmetric ``corr`` (n, n)
    with unit diagonal: Higham's (2002) alternating projections with Dykstra's correction,
    then a final projection that makes it exactly positive semi-definite with unit diagonal."""
    arr = _as_square_matrix(corr)
    if not np.allclose(np.diag(arr), 1.0, atol=1e-9):
        arr = _unit_diagonal(arr)
    Y = 0.5 * (arr + arr.T)
    dS = np.zeros_like(Y)
    for _ in range(max_iter):
        R = Y - dS
        w, V = np.linalg.eigh(R)
        X = (V * np.maximum(w, 0.0)) @ V.T          # projection onto the PSD cone
        dS = X - R
        Y_next = X.copy()
        np.fill_diagonal(Y_next, 1.0)                # projection onto unit diagonals
        done = np.linalg.norm(Y_next - Y) <= tol * max(1.0, np.linalg.norm(Y_next))
        Y = Y_next
        if done:
            break
    w, V = np.linalg.eigh(0.5 * (Y + Y.T))
    X = (V * np.maximum(w, 0.0)) @ V.T
    d = np.sqrt(np.maximum(np.diag(X), 1e-300))
    X = X / d[:, None] / d[None, :]
    X = 0.5 * (X + X.T)
    np.fill_diagonal(X, 1.0)
    return np.clip(X, -1.0, 1.0)


def _check_index(k: int, n: int, what: str) -> int:
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"{what} must be an integer index, got {k!r}")
    if not 0 <= int(k) < n:
        raise IndexError(f"{what}={int(k)} is out of range: valid indices are 0..{n - 1}")
    return int(k)


def _check_query(i: int, j: int, cond: Iterable[int], n: int) -> tuple[int, int, tuple[int, ...]]:
    """Validate one test's indices; return (i, j, cond) as ints."""
    i = _check_index(i, n, "i")
    j = _check_index(j, n, "j")
    if i == j:
        raise ValueError(f"i and j must differ, both are {i}")
    cond_t = tuple(_check_index(k, n, "conditioning index") for k in cond)
    if i in cond_t or j in cond_t:
        raise ValueError(f"the conditioning set {list(cond_t)} must not contain i={i} or j={j}")
    if len(set(cond_t)) != len(cond_t):
        raise ValueError(f"the conditioning set {list(cond_t)} has repeated indices")
    return i, j, cond_t


def _pinv_pcorr(block: np.ndarray) -> float:
    """Partial correlation of the first two variables of ``block`` given the rest (robust)."""
    m = block.shape[0]
    reg = block + _RIDGE * np.eye(m)
    prec = np.linalg.pinv(reg, hermitian=True)
    denom = prec[0, 0] * prec[1, 1]
    if not np.isfinite(denom) or denom <= 0:
        return 0.0
    return float(-prec[0, 1] / math.sqrt(denom))


def partial_correlations(corr: np.ndarray, I: np.ndarray, J: np.ndarray,
                         S: np.ndarray) -> np.ndarray:
    """Partial correlations rho_{I[k] J[k] . S[k]} for K tests with one set size (K,).

    ``corr`` (n, n) is a correlation matrix (not validated here), ``I``, ``J`` (K,) and
    ``S`` (K, s) integer indices. Uses the residual covariance ``R_ab - R_aS R_SS^-1 R_Sa``
    (equal to ``-P_ij / sqrt(P_ii P_jj)``), batched; singular blocks fall back to a
    ridge-regularised pseudo-inverse. Never NaN: clipped to [-1+1e-12, 1-1e-12].
    """
    I = np.asarray(I, dtype=np.intp)
    J = np.asarray(J, dtype=np.intp)
    S = np.asarray(S, dtype=np.intp).reshape(len(I), -1)
    s = S.shape[1]
    if len(I) == 0:
        return np.zeros(0)
    if s == 0:
        rho = corr[I, J].astype(np.float64, copy=True)
    elif s == 1:
        rho = _pcorr_order1(corr, I, J, S[:, 0])
    elif s == 2:
        rho = _pcorr_order2(corr, I, J, S)
    else:
        rho = _pcorr_general(corr, I, J, S)
    np.minimum(rho, _RHO_MAX, out=rho)      # NaN propagates through both ...
    np.maximum(rho, -_RHO_MAX, out=rho)
    if np.isnan(rho.sum()):                 # ... and is replaced (never returned)
        rho[np.isnan(rho)] = 0.0
    return rho


def _pcorr_order1(corr: np.ndarray, I: np.ndarray, J: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Closed form rho_ij.k = (r_ij - r_ik r_jk) / sqrt((1 - r_ik^2)(1 - r_jk^2))."""
    rij, rik, rjk = corr[I, J], corr[I, K], corr[J, K]
    den = (1.0 - rik * rik) * (1.0 - rjk * rjk)
    bad = den <= 1e-12
    rho = (rij - rik * rjk) / np.sqrt(np.maximum(den, 1e-12))
    if bad.any():
        for k in np.flatnonzero(bad):
            idx = np.array([I[k], J[k], K[k]])
            rho[k] = _pinv_pcorr(corr[np.ix_(idx, idx)])
    return rho


def _pcorr_order2(corr: np.ndarray, I: np.ndarray, J: np.ndarray, S: np.ndarray) -> np.ndarray:
    """|S| = 2 in closed form: R_SS^-1 = [[1, -r], [-r, 1]] / (1 - r^2)."""
    s0, s1 = S[:, 0], S[:, 1]
    r = corr[s0, s1]
    det = 1.0 - r * r
    ai, bi, aj, bj = corr[s0, I], corr[s1, I], corr[s0, J], corr[s1, J]
    inv_det = 1.0 / np.maximum(det, 1e-12)
    v0 = 1.0 - (ai * ai - 2.0 * r * ai * bi + bi * bi) * inv_det
    v1 = 1.0 - (aj * aj - 2.0 * r * aj * bj + bj * bj) * inv_det
    c = corr[I, J] - (ai * aj - r * (ai * bj + bi * aj) + bi * bj) * inv_det
    rho = c / np.sqrt(np.maximum(v0 * v1, 1e-20))
    bad = (det <= 1e-8) | (v0 <= 1e-10) | (v1 <= 1e-10) | ~(np.abs(rho) <= 1.0)
    if bad.any():
        for n in np.flatnonzero(bad):
            idx = np.array([I[n], J[n], s0[n], s1[n]])
            rho[n] = _pinv_pcorr(corr[np.ix_(idx, idx)])
    return rho


def _pcorr_general(corr: np.ndarray, I: np.ndarray, J: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Batched residual covariance of (i, j) given S, for |S| >= 2."""
    k, s = S.shape
    r_ss = corr[S[:, :, None], S[:, None, :]]           # (K, s, s)
    r_sa = np.empty((k, s, 2))                          # (K, s, 2): columns i, j
    r_sa[:, :, 0] = corr[S, I[:, None]]
    r_sa[:, :, 1] = corr[S, J[:, None]]
    try:
        sol = np.linalg.solve(r_ss, r_sa)               # (K, s, 2)
        bad = np.zeros(k, dtype=bool)
    except np.linalg.LinAlgError:
        sol = np.zeros_like(r_sa)
        bad = np.ones(k, dtype=bool)
    v0 = 1.0 - (r_sa[:, :, 0] * sol[:, :, 0]).sum(axis=1)
    v1 = 1.0 - (r_sa[:, :, 1] * sol[:, :, 1]).sum(axis=1)
    c = corr[I, J] - (r_sa[:, :, 0] * sol[:, :, 1]).sum(axis=1)
    # ill-conditioned R_SS, or i or j (almost) determined by S: redo those robustly
    rho = c / np.sqrt(np.maximum(v0 * v1, 1e-20))
    bad |= (v0 <= 1e-10) | (v1 <= 1e-10) | ~(np.abs(rho) <= 1.0)  # also catches NaN
    if bad.any():
        for n in np.flatnonzero(bad):
            idx = np.concatenate([[I[n], J[n]], S[n]])
            rho[n] = _pinv_pcorr(corr[np.ix_(idx, idx)])
    return rho


def partial_correlation(corr: np.ndarray, i: int, j: int, cond: Sequence[int] = ()) -> float:
    """Partial correlation ``rho_ij.S = -P_ij / sqrt(P_ii P_jj)``, ``P = inv(R[ijS, ijS])``.

    ``corr`` (n, n) may be a correlation or a covariance matrix (normalised first). Never
    raises on a singular block and never returns NaN; raises if the block of i, j and S is
    not positive semi-definite (smallest eigenvalue below ``-PSD_TOLERANCE``).
    """
    arr = _as_square_matrix(corr)
    unit = np.allclose(np.diag(arr), 1.0, atol=1e-9)
    i, j, cond_t = _check_query(i, j, cond, arr.shape[0])
    idx = np.array((i, j) + cond_t, dtype=np.intp)
    block = arr[np.ix_(idx, idx)]                      # the block this value depends on
    lam = _smallest_eigenvalue(block if unit else _unit_diagonal(block))
    if lam < -PSD_TOLERANCE:
        raise _psd_error(lam, f"corr restricted to {[int(v) for v in idx]}",
                         "use nearest_correlation(corr)")
    R = arr if unit else correlation_from_covariance(arr)
    S = np.asarray(cond_t, dtype=np.intp).reshape(1, -1)
    return float(partial_correlations(R, np.array([i]), np.array([j]), S)[0])


def fisher_z(rho: np.ndarray, n_samples: float, cond_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Fisher statistic ``sqrt(n - |S| - 3) |atanh(rho)|`` and its two-sided p-value."""
    dof = n_samples - cond_size - 3
    if dof <= 0:
        raise ValueError(
            f"n_samples - |S| - 3 must be positive for the Fisher z test, got n_samples="
            f"{n_samples:g} with |S|={cond_size}; use a larger n_samples or smaller sets")
    z = np.abs(np.arctanh(np.maximum(np.minimum(rho, _RHO_MAX), -_RHO_MAX)))
    z *= math.sqrt(dof)
    return z, erfc(z * (1.0 / _SQRT2))


# ---------------------------------------------------------------------------------------
# a small base class: log, cache, batched helpers shared by the tests
# ---------------------------------------------------------------------------------------

def _key(i: int, j: int, cond: Iterable[int]) -> tuple[int, int, tuple[int, ...]]:
    return (i, j, tuple(sorted(cond))) if i < j else (j, i, tuple(sorted(cond)))


class _LoggedTest:
    """Shared machinery: a cache keyed by (min(i,j), max(i,j), sorted cond) and a log.

    Batched evaluations are recorded as arrays and turned into CITestResult objects only
    when the log or the cache is read, so learners pay no per-test Python cost.
    """

    alpha: float
    _cache: dict
    _log: list
    _pending: list

    @property
    def n_variables(self) -> int:
        raise NotImplementedError

    @property
    def log(self) -> list[CITestResult]:
        """Every distinct result computed for a caller, in the order first asked for."""
        self._flush()
        return list(self._log)

    @property
    def n_tests(self) -> int:
        """How many distinct tests were computed (the length of ``log``)."""
        self._flush()
        return len(self._log)

    def clear(self) -> None:
        """Forget the cache and the log."""
        self._cache.clear()
        self._log.clear()
        self._pending.clear()

    def __call__(self, i: int, j: int, cond: Sequence[int] = ()) -> CITestResult:
        """Test ``i _||_ j | cond``; cached, logged the first time."""
        i, j, cond_t = _check_query(i, j, cond, self.n_variables)
        if self._pending:
            self._flush()
        key = _key(i, j, cond_t)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._compute(key[0], key[1], key[2])
            self._cache[key] = hit
            self._log.append(hit)
        return hit

    def result(self, i: int, j: int, cond: Sequence[int] = ()) -> CITestResult:
        """The cached result of ``i _||_ j | cond`` (recorded ones included, no re-validation);
        computed and logged like ``self(i, j, cond)`` if it is not cached yet."""
        if self._pending:
            self._flush()
        hit = self._cache.get(_key(i, j, cond))
        return hit if hit is not None else self(i, j, cond)

    def test_many(self, pairs: Sequence[tuple[int, int]],
                  conds: Sequence[Sequence[int]] | None = None) -> list[CITestResult]:
        """Test K pairs (K, 2), each given its set in ``conds`` (K, s; one size s)."""
        pairs_l = [tuple(p) for p in pairs]
        conds_l = [()] * len(pairs_l) if conds is None else [tuple(c) for c in conds]
        if len(conds_l) != len(pairs_l):
            raise ValueError(f"pairs and conds differ in length: {len(pairs_l)} != {len(conds_l)}")
        return [self(a, b, c) for (a, b), c in zip(pairs_l, conds_l)]

    def first_independent(self, i: int, j: int, conds: Sequence[Sequence[int]]) -> int:
        """Index of the first set in ``conds`` that separates i and j, else -1.

        Only the tests up to that one are logged (the ones a sequential learner runs).
        """
        for k, cond in enumerate(conds):
            if self(i, j, cond).independent:
                return k
        return -1

    def _compute(self, i: int, j: int, cond: tuple[int, ...]) -> CITestResult:
        raise NotImplementedError

    def _flush(self) -> None:
        """Turn the recorded batch arrays into cached, logged CITestResult objects."""
        alpha, cache, log = self.alpha, self._cache, self._log
        for I, J, S, rho, z, p in self._pending:
            if rho is None:      # order-1 tests recorded unevaluated (``record_order1``)
                rho = self.order1_rho(I, J, S[:, 0])
                z, p = self.order1_stats(I, J, S[:, 0], rho)
            for a, b, cond, r, zz, pp in zip(I.tolist(), J.tolist(), S.tolist(),
                                             rho.tolist(), z.tolist(), p.tolist()):
                key = _key(a, b, cond)
                if key not in cache:
                    res = CITestResult(key[0], key[1], key[2], r, zz, pp, pp > alpha)
                    cache[key] = res
                    log.append(res)
        self._pending.clear()


# ---------------------------------------------------------------------------------------
# the batched protocol: what the learners' vectorised fast path needs
# ---------------------------------------------------------------------------------------

class BatchedCITest(_LoggedTest, abc.ABC):
    """A CI test that evaluates many tests in one call; learners use it on their fast path.

    Implement ``n_variables``, ``alpha`` and :meth:`evaluate` (K tests of one set size,
    vectorised). :meth:`evaluate_mixed` (sets of mixed sizes), :meth:`order1_all` (every
    single-node set at once), :meth:`order1_grid` (chosen single-node sets per pair),
    :meth:`order1_rho` and :meth:`order1_stats` have generic defaults built on
    ``evaluate``; override them when a faster form exists (``FisherZTest`` does). The
    learners log what they consume through :meth:`record` (or :meth:`record_order1`, which
    defers evaluating order-1 tests until the log is read); ``__call__``, ``test_many``,
    ``first_independent``, ``log`` and the cache come with the class.
    """

    @abc.abstractmethod
    def evaluate(self, I: np.ndarray, J: np.ndarray,
                 S: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tests ``I[k] _||_ J[k] | S[k]``: I, J (K,) and S (K, s) variable indices (valid,
        one set size s) -> effect size (K,), statistic (K,), p-value (K,). Independent
        means ``p > alpha``. No caching or logging."""

    def evaluate_mixed(self, I: np.ndarray, J: np.ndarray, S: np.ndarray,
                       sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``evaluate`` for sets of mixed sizes: row k of S (K, s_max) holds its
        ``sizes[k]`` (K,) indices first, the rest is padding."""
        K = len(I)
        rho, stat, p = np.zeros(K), np.zeros(K), np.zeros(K)
        for size in np.unique(sizes).tolist():
            rows = np.flatnonzero(sizes == size)
            rho[rows], stat[rows], p[rows] = self.evaluate(I[rows], J[rows], S[rows, :size])
        return rho, stat, p

    def order1_all(self, I: np.ndarray, J: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every test ``I[m] _||_ J[m] | k`` for all k at once: effect sizes (m, n) (NaN at
        k in {I[m], J[m]}) and decisions (m, n) bool (False there)."""
        I = np.asarray(I, dtype=np.intp)
        J = np.asarray(J, dtype=np.intp)
        m, n = len(I), self.n_variables
        rho = np.full((m, n), np.nan)
        ind = np.zeros((m, n), dtype=bool)
        rows, ks = np.nonzero((np.arange(n)[None, :] != I[:, None])
                              & (np.arange(n)[None, :] != J[:, None]))
        if len(rows):
            r, _, p = self.evaluate(I[rows], J[rows], ks[:, None])
            rho[rows, ks] = r
            ind[rows, ks] = p > self.alpha
        return rho, ind

    def order1_grid(self, I: np.ndarray | int, J: np.ndarray,
                    K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tests ``I[m] _||_ J[m] | K[m, c]``: effect sizes (m, c) and decisions (m, c) bool,
        as :meth:`order1_all` gives them at those columns (NaN / False where K[m, c] is I[m]
        or J[m]). I may be one index for all rows, K one row (c,) of columns for all rows."""
        I, J, K = _grid_args(I, J, K)
        rho = np.full(K.shape, np.nan)
        ind = np.zeros(K.shape, dtype=bool)
        rows, cols = np.nonzero((K != I[:, None]) & (K != J[:, None]))
        if len(rows):
            r, _, p = self.evaluate(I[rows], J[rows], K[rows, cols][:, None])
            rho[rows, cols] = r
            ind[rows, cols] = p > self.alpha
        return rho, ind

    def order1_rho(self, I: np.ndarray, J: np.ndarray, K: np.ndarray) -> np.ndarray:
        """Effect sizes (t,) of the order-1 tests ``I _||_ J | K`` (t,), the values
        :meth:`order1_grid` gives (by default: evaluated again)."""
        return self.evaluate(I, J, np.asarray(K, dtype=np.intp)[:, None])[0]

    def order1_stats(self, I: np.ndarray, J: np.ndarray, K: np.ndarray,
                     rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Statistic and p-value (t,) of the order-1 tests ``I _||_ J | K`` (t,) whose effect
        sizes ``rho`` (t,) came from :meth:`order1_all` (by default: evaluated again)."""
        _, stat, p = self.evaluate(I, J, np.asarray(K, dtype=np.intp)[:, None])
        return stat, p

    def record(self, I: np.ndarray, J: np.ndarray, S: np.ndarray, rho: np.ndarray,
               stat: np.ndarray, p: np.ndarray) -> None:
        """Queue evaluated rows (K,) / (K, s) for the cache and the log (materialised lazily)."""
        if len(I):
            self._pending.append((I, J, S, rho, stat, p))

    def record_order1(self, I: np.ndarray, J: np.ndarray, K: np.ndarray) -> None:
        """Queue the order-1 tests ``I _||_ J | K`` (t,) for the cache and the log; they are
        evaluated (:meth:`order1_rho`, :meth:`order1_stats`) only when the log is read."""
        if len(I):
            self._pending.append((I, J, np.asarray(K)[:, None], None, None, None))

    def _compute(self, i: int, j: int, cond: tuple[int, ...]) -> CITestResult:
        rho, z, p = self.evaluate(np.array([i]), np.array([j]),
                                  np.asarray(cond, dtype=np.intp).reshape(1, -1))
        return CITestResult(i, j, cond, float(rho[0]), float(z[0]), float(p[0]),
                            bool(p[0] > self.alpha))

    def _as_batch(self, pairs, conds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validate K pairs and K sets of one size; return I, J (K,) and S (K, s)."""
        pairs_arr = np.asarray(pairs, dtype=np.intp).reshape(-1, 2)
        k = len(pairs_arr)
        conds_arr = np.asarray(conds, dtype=np.intp).reshape(k, -1) if k else \
            np.zeros((0, 0), dtype=np.intp)
        n = self.n_variables
        if k and (pairs_arr.min() < 0 or pairs_arr.max() >= n
                  or (conds_arr.size and (conds_arr.min() < 0 or conds_arr.max() >= n))):
            raise IndexError(f"index out of range: valid indices are 0..{n - 1}")
        I, J = pairs_arr[:, 0], pairs_arr[:, 1]
        if np.any(I == J):
            raise ValueError("each pair must have i != j")
        if conds_arr.size and (np.any(conds_arr == I[:, None]) or np.any(conds_arr == J[:, None])):
            raise ValueError("a conditioning set must not contain its pair's i or j")
        if conds_arr.shape[1] > 1:
            srt = np.sort(conds_arr, axis=1)
            if np.any(srt[:, 1:] == srt[:, :-1]):
                raise ValueError("a conditioning set has repeated indices")
        return I, J, conds_arr

    def test_many(self, pairs: Sequence[tuple[int, int]],
                  conds: Sequence[Sequence[int]] | None = None) -> list[CITestResult]:
        """Test K pairs (K, 2), pair k given the set ``conds[k]`` (default: all empty).

        Sets of one size are evaluated together in one vectorized call. Returns K results
        in input order; all are cached and logged.
        """
        pairs_l = [tuple(int(v) for v in p) for p in pairs]
        conds_l = [()] * len(pairs_l) if conds is None else [tuple(int(v) for v in c)
                                                              for c in conds]
        if len(conds_l) != len(pairs_l):
            raise ValueError(f"pairs and conds differ in length: {len(pairs_l)} != "
                             f"{len(conds_l)}")
        by_size: dict[int, list[int]] = {}
        for k, c in enumerate(conds_l):
            by_size.setdefault(len(c), []).append(k)
        for rows in by_size.values():
            I, J, S = self._as_batch([pairs_l[k] for k in rows], [conds_l[k] for k in rows])
            rho, z, p = self.evaluate(I, J, S)
            self.record(I, J, S, rho, z, p)
        self._flush()
        return [self._cache[_key(a, b, c)] for (a, b), c in zip(pairs_l, conds_l)]

    def first_independent(self, i: int, j: int, conds: Sequence[Sequence[int]]) -> int:
        """Index of the first set in ``conds`` (K, s) separating i and j, or -1 (vectorized).

        Only the tests up to and including that one are logged.
        """
        if len(conds) == 0:
            return -1
        I, J, S = self._as_batch([(i, j)] * len(conds), conds)
        rho, z, p = self.evaluate(I, J, S)
        hits = np.flatnonzero(p > self.alpha)
        last = int(hits[0]) + 1 if len(hits) else len(S)
        self.record(I[:last], J[:last], S[:last], rho[:last], z[:last], p[:last])
        return int(hits[0]) if len(hits) else -1


# ---------------------------------------------------------------------------------------
# Fisher z
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class FisherZTest(BatchedCITest):
    """Fisher z test of ``i _||_ j | S`` from a correlation matrix ``corr`` (n, n).

    ``n_samples`` is the effective sample size (for attention: the feature dimension,
    e.g. the head dimension or the hidden size); ``alpha`` the significance level.
    A covariance matrix is accepted and normalised. The test is two-sided on |z|, so
    a strong negative partial correlation is a dependence.

    Call ``test(i, j, cond)`` for one result or ``test.test_many(pairs, conds)`` for many;
    results are cached and logged in ``test.log`` (``test.n_tests`` of them).

    ``corr`` must be positive semi-definite (smallest eigenvalue >= ``-PSD_TOLERANCE``,
    checked once here); otherwise a ValueError names the eigenvalue, unless ``repair=True``,
    which replaces it by :func:`nearest_correlation` and warns (RuntimeWarning).
    """

    corr: np.ndarray
    n_samples: float
    alpha: float = 0.01
    repair: bool = False
    _cache: dict = field(default_factory=dict, init=False, repr=False)
    _log: list = field(default_factory=list, init=False, repr=False)
    _pending: list = field(default_factory=list, init=False, repr=False)
    _ext_cache: dict = field(default_factory=dict, init=False, repr=False)
    _threshold: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        corr = _as_correlation(self.corr, repair=bool(self.repair)).copy()
        corr.setflags(write=False)
        object.__setattr__(self, "corr", corr)
        n = self.n_samples
        if isinstance(n, bool) or not isinstance(n, (int, float, np.integer, np.floating)) \
                or not math.isfinite(n) or n <= 3:
            raise ValueError(f"n_samples must be a finite number > 3, got {n!r}")
        object.__setattr__(self, "n_samples", float(n))
        _check_alpha(self.alpha)
        object.__setattr__(self, "alpha", float(self.alpha))

    @property
    def n_variables(self) -> int:
        """Number of variables n (indices run 0..n-1)."""
        return self.corr.shape[0]

    def evaluate(self, I: np.ndarray, J: np.ndarray,
                 S: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Partial correlation, Fisher z and p-value (K,) of K tests with sets S (K, s); no
        caching or logging."""
        rho = partial_correlations(self.corr, I, J, S)
        z, p = fisher_z(rho, self.n_samples, S.shape[1])
        return rho, z, p

    def order1_all(self, I: np.ndarray, J: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every test ``I[m] _||_ J[m] | k`` for all k at once: rho (m, n) and the decisions
        (m, n) bool (``p > alpha``; False at k in {I[m], J[m]}). Dense arithmetic, the same
        values as :func:`partial_correlations`; nothing is cached or logged."""
        I = np.asarray(I, dtype=np.intp)
        J = np.asarray(J, dtype=np.intp)
        corr = self.corr
        rows = np.arange(len(I))
        self_cols = np.zeros((len(I), corr.shape[0]), dtype=bool)
        self_cols[rows, I] = self_cols[rows, J] = True
        return self._order1(corr[I, J][:, None], corr[I], corr[J], self_cols,  # rows: no gathers
                            lambda m, k: (I[m], J[m], k))

    def order1_grid(self, I: np.ndarray | int, J: np.ndarray,
                    K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tests ``I[m] _||_ J[m] | K[m, c]``: rho (m, c) and decisions (m, c), the same
        values as :meth:`order1_all` at those columns (NaN / False where K[m, c] is I[m] or
        J[m]). I may be one index for all rows, K one row (c,) of columns for all rows."""
        corr = self.corr
        K = np.asarray(K, dtype=np.intp)
        if np.ndim(I) == 0 and K.ndim == 1:          # one row i, shared columns: no broadcasts
            i = int(I)
            J = np.asarray(J, dtype=np.intp)
            self_cols = (K[None, :] == i) | (K[None, :] == J[:, None])
            return self._order1(corr[i, J][:, None], corr[i, K][None, :], corr[np.ix_(J, K)],
                                self_cols, lambda m, c: (i, J[m], K[c]))
        I, J, K = _grid_args(I, J, K)
        self_cols = (K == I[:, None]) | (K == J[:, None])
        return self._order1(corr[I, J][:, None], corr[I[:, None], K], corr[J[:, None], K],
                            self_cols, lambda m, c: (I[m], J[m], K[m, c]))

    def order1_rho(self, I: np.ndarray, J: np.ndarray, K: np.ndarray) -> np.ndarray:
        """Partial correlations (t,) of the order-1 tests ``I _||_ J | K`` (t,), bit for bit
        the values :meth:`order1_all` and :meth:`order1_grid` give."""
        corr = self.corr
        rik, rjk = corr[I, K], corr[J, K]
        den = (1.0 - rik * rik) * (1.0 - rjk * rjk)
        rho = (corr[I, J] - rik * rjk) / np.sqrt(np.maximum(den, 1e-12))
        for m in np.flatnonzero(den <= 1e-12).tolist():
            idx = np.array([I[m], J[m], K[m]])
            rho[m] = _pinv_pcorr(corr[np.ix_(idx, idx)])
        np.minimum(rho, _RHO_MAX, out=rho)
        np.maximum(rho, -_RHO_MAX, out=rho)
        rho[np.isnan(rho)] = 0.0
        return rho

    def _order1(self, cij: np.ndarray, rik: np.ndarray, rjk: np.ndarray, self_cols: np.ndarray,
                triple) -> tuple[np.ndarray, np.ndarray]:
        """rho and decisions (m, c) of order-1 tests from the gathered correlations: cij (m, 1),
        rik, rjk (m, c); ``self_cols`` (m, c) marks k in {i, j}; ``triple(m, c)`` names the
        variables of an entry (for the robust fallback)."""
        corr = self.corr
        den = (1.0 - rik * rik) * (1.0 - rjk * rjk)      # corr is finite: no NaN, no warnings
        rho = (cij - rik * rjk) / np.sqrt(np.maximum(den, 1e-12))
        bad = (den <= 1e-12) & ~self_cols
        for m, c in zip(*np.nonzero(bad)):
            idx = np.array(triple(m, c))
            rho[m, c] = _pinv_pcorr(corr[np.ix_(idx, idx)])
        np.minimum(rho, _RHO_MAX, out=rho)               # (finite: no NaN to replace)
        np.maximum(rho, -_RHO_MAX, out=rho)
        rho[self_cols] = np.nan
        return rho, self._order1_decide(rho, self_cols)

    def _order1_decide(self, rho: np.ndarray, self_cols: np.ndarray) -> np.ndarray:
        """p > alpha for order-1 partial correlations rho (any shape): a threshold on |rho|,
        with the exact p-value for values near it; False where ``self_cols``."""
        # p > alpha  <=>  |rho| < tanh(z_crit / sqrt(dof)); rows near the threshold decided exactly
        threshold = self._threshold.get(1)
        if threshold is None:
            fisher_z(rho[:0], self.n_samples, 1)          # raises if dof <= 0
            dof = self.n_samples - 4.0
            threshold = self._threshold[1] = math.tanh(_SQRT2 * float(erfcinv(self.alpha))
                                                       / math.sqrt(dof))
        size = np.abs(rho)                                # NaN compares False, silently
        independent = size < threshold
        near = np.abs(size - threshold) < 1e-7
        if near.any():
            _, p = fisher_z(rho[near], self.n_samples, 1)
            independent[near] = p > self.alpha
        independent[self_cols] = False
        return independent

    @property
    def max_cond_size(self) -> int:
        """Largest conditioning-set size the test allows (n_samples - |S| - 3 > 0)."""
        return max(0, math.ceil(self.n_samples - 3) - 1)

    def evaluate_mixed(self, I: np.ndarray, J: np.ndarray, S: np.ndarray,
                         sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``evaluate`` for sets of mixed sizes in one call. Row k of S (K, s_max) holds
        its ``sizes[k]`` indices first; the padding is replaced by extra variables that are
        uncorrelated with everything, which leave a partial correlation unchanged."""
        n, smax = self.n_variables, S.shape[1]
        ext = self._ext_cache.get(smax)
        if ext is None:
            ext = np.eye(n + smax)
            ext[:n, :n] = self.corr
            self._ext_cache.clear()
            self._ext_cache[smax] = ext
        cols = np.arange(smax)
        S = np.where(cols[None, :] >= sizes[:, None], n + cols[None, :], S)
        rho = partial_correlations(ext, I, J, S)
        dof = self.n_samples - sizes - 3.0
        if np.any(dof <= 0):
            fisher_z(rho[:0], self.n_samples, int(sizes[np.argmax(dof <= 0)]))  # raises
        z = np.abs(np.arctanh(rho)) * np.sqrt(dof)
        return rho, z, erfc(z * (1.0 / _SQRT2))

    def order1_stats(self, I: np.ndarray, J: np.ndarray, K: np.ndarray,
                     rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fisher z and p-value (t,) of order-1 tests from their partial correlations (t,)."""
        return fisher_z(rho, self.n_samples, 1)


def _grid_args(I, J, K) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``order1_grid``'s arguments as I, J (m,) and K (m, c) int arrays."""
    J = np.asarray(J, dtype=np.intp)
    m = len(J)
    I = np.broadcast_to(np.asarray(I, dtype=np.intp), (m,))
    K = np.asarray(K, dtype=np.intp)
    return I, J, np.broadcast_to(K, (m, K.shape[-1]))


def _check_alpha(alpha: float) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) \
            or not 0 < alpha < 1:
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")


# ---------------------------------------------------------------------------------------
# d-separation oracle
# ---------------------------------------------------------------------------------------

def _d_separated(parents: list[list[int]], children: list[list[int]], x: int, y: int,
                 cond: set[int]) -> bool:
    """Reachability ("Bayes ball") test of x _||_ y | cond in a DAG given by adjacency lists."""
    # ancestors of the conditioning set (for colliders)
    anc = set(cond)
    stack = list(cond)
    while stack:
        v = stack.pop()
        for u in parents[v]:
            if u not in anc:
                anc.add(u)
                stack.append(u)
    # states: (node, direction) with "up" = reached from a child, "down" = from a parent
    visited: set[tuple[int, bool]] = set()
    stack2: list[tuple[int, bool]] = [(x, True)]
    while stack2:
        v, up = stack2.pop()
        if (v, up) in visited:
            continue
        visited.add((v, up))
        if v == y:
            return False
        if up and v not in cond:
            stack2.extend((u, True) for u in parents[v])
            stack2.extend((w, False) for w in children[v])
        elif not up:
            if v not in cond:
                stack2.extend((w, False) for w in children[v])
            if v in anc:
                stack2.extend((u, True) for u in parents[v])
    return True


@dataclass(frozen=True, eq=False)
class DSeparationOracle(_LoggedTest):
    """Exact CI "test" by d-separation in a DAG: p = 1 if d-separated, else 0.

    ``dag_adjacency`` (N, N): entry [u, v] != 0 means u -> v. Without ``observed`` the
    indices are DAG nodes; with ``observed`` (a list of DAG nodes) index k means
    ``observed[k]`` and the other nodes are latent. Same interface as FisherZTest.
    """

    dag_adjacency: np.ndarray
    observed: tuple[int, ...] | None = None
    alpha: float = 0.5
    _cache: dict = field(default_factory=dict, init=False, repr=False)
    _log: list = field(default_factory=list, init=False, repr=False)
    _pending: list = field(default_factory=list, init=False, repr=False)
    _parents: list = field(default_factory=list, init=False, repr=False)
    _children: list = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        adj = np.asarray(self.dag_adjacency)
        if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
            raise ValueError(f"dag_adjacency must be a square matrix, got shape {adj.shape}")
        adj = (adj != 0)
        if np.any(np.diag(adj)):
            raise ValueError("dag_adjacency has a self-loop on its diagonal")
        n = adj.shape[0]
        # check acyclicity (Kahn)
        indeg = adj.sum(axis=0).astype(int)
        queue = [v for v in range(n) if indeg[v] == 0]
        seen = 0
        while queue:
            v = queue.pop()
            seen += 1
            for w in np.flatnonzero(adj[v]):
                indeg[w] -= 1
                if indeg[w] == 0:
                    queue.append(int(w))
        if seen != n:
            raise ValueError("dag_adjacency has a directed cycle: not a DAG")
        adj = adj.copy()
        adj.setflags(write=False)
        object.__setattr__(self, "dag_adjacency", adj)
        if self.observed is not None:
            obs = tuple(_check_index(v, n, "observed node") for v in self.observed)
            if len(set(obs)) != len(obs):
                raise ValueError("observed has repeated nodes")
            object.__setattr__(self, "observed", obs)
        object.__setattr__(self, "_parents", [np.flatnonzero(adj[:, v]).tolist() for v in range(n)])
        object.__setattr__(self, "_children", [np.flatnonzero(adj[v]).tolist() for v in range(n)])

    @property
    def n_variables(self) -> int:
        """Number of addressable variables (observed ones if ``observed`` is given)."""
        return len(self.observed) if self.observed is not None else self.dag_adjacency.shape[0]

    def is_d_separated(self, i: int, j: int, cond: Sequence[int] = ()) -> bool:
        """Whether i and j are d-separated given cond (indices as in ``__call__``)."""
        return self(i, j, cond).independent

    def _compute(self, i: int, j: int, cond: tuple[int, ...]) -> CITestResult:
        m = self.observed
        x, y, c = (i, j, set(cond)) if m is None else (m[i], m[j], {m[k] for k in cond})
        sep = _d_separated(self._parents, self._children, x, y, c)
        return CITestResult(i, j, cond, 0.0 if sep else 1.0, 0.0 if sep else math.inf,
                            1.0 if sep else 0.0, sep)

