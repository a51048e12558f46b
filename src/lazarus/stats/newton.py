"""Newton's method for batches of penalised logistic regressions, in two forms.

numpy only. The problems, their coordinates z and the choice of form are `lazarus.stats.solver`'s.

Two forms (m training rows, r columns of z), which `lazarus.stats.solver` picks by shape:

* dual, m <= r: the weights lie in the span of the training rows, beta = z_train.T alpha, so
  Newton's method runs on (alpha, b): one (m + 1)-square solve per step, problems with the same
  m batched together. Its cost grows with m^3, so it serves few prompts in a wide layer.
* primal, m > r: Newton's method on (beta, b) itself, r + 1 unknowns. Forming one problem's
  Hessian costs m r^2, so it is formed only when needed: every step first uses a Hessian that is
  shared by all problems of the layer, (total weight / n) * (rows' Gram matrix) + lam I, solved
  through one eigendecomposition per layer (the bias's own entry is exact, its coupling left
  out). A problem whose step then fails to cut its Newton decrement by `_CONTRACTION` gets its
  own exact Hessian at the current point, kept (and refreshed on the same rule) for its later
  steps. With many prompts and shuffled labels the shared matrix is nearly exact, so the
  shuffles cost a few matrix products over all problems at once, and the cost grows linearly
  with the prompts. The gradient is always exact, so the fixed point is the exact optimum
  whatever Hessian is used.

Both forms use a backtracking line search per problem and stop when the Newton decrement falls
below `_NEWTON_TOLERANCE` nats.
"""

from __future__ import annotations

import numpy as np

_NEWTON_STEPS = 100  # dual; the primal form allows `_PRIMAL_STEPS`
_PRIMAL_STEPS = 300
_NEWTON_TOLERANCE = 1e-18  # Newton decrement, in nats: stop when quadratic convergence is done
_FULL_STEP = 1e-8  # below this decrement a full Newton step is safe; rounding rules the
# objective's last digits, so a line search there would only stall
_CONTRACTION = 0.6  # primal: a step must cut the decrement at least this much, else refresh
_PRIMAL_BATCH = 1_000_000  # the primal form's working arrays: smaller, for the caches


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * logits))  # no overflow warnings


def newton_dual(gram: np.ndarray, y: np.ndarray,
                penalty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """k penalised logistic regressions given their Gram matrices [k, m, m] and labels [k, m].

    At the optimum the weights are a combination of the training rows, beta = z.T @ alpha, so
    Newton's method runs on (alpha, bias): each step solves an (m + 1)-square system, with a
    backtracking line search per problem. Returns alpha [k, m] and bias [k].
    """
    k, m = y.shape
    share = y.mean(axis=1)
    alpha = np.zeros((k, m))
    bias = np.log(share / (1.0 - share))

    def objective(a_: np.ndarray, c_: np.ndarray, which: np.ndarray) -> np.ndarray:
        f = np.einsum("km,kmj->kj", a_, gram[which])
        logit = f + c_[:, None]
        loss = np.logaddexp(0.0, logit) - y[which] * logit
        return loss.sum(axis=1) + 0.5 * penalty[which] * np.sum(a_ * f, axis=1)

    active = np.flatnonzero(penalty > 0)  # no spread: nothing to fit, keep the prior
    current = np.zeros(k)
    current[active] = objective(alpha[active], bias[active], active)
    diagonal = np.arange(m)
    for _ in range(_NEWTON_STEPS):
        if active.size == 0:
            break
        g, lam = gram[active], penalty[active]
        f = np.einsum("km,kmj->kj", alpha[active], g)
        p = sigmoid(f + bias[active, None])
        w = p * (1.0 - p)  # [a, m]
        residual = p - y[active]
        # [lam I + W K, W 1; 1'W K, 1'W 1] [d_alpha; d_bias] = [residual + lam alpha; sum residual]
        system = np.empty((active.size, m + 1, m + 1))
        system[:, :m, :m] = w[:, :, None] * g
        system[:, diagonal, diagonal] += lam[:, None]
        system[:, :m, m] = w
        system[:, m, :m] = np.einsum("km,kmj->kj", w, g)
        system[:, m, m] = np.maximum(w.sum(axis=1), 1e-12)
        gradient = residual + lam[:, None] * alpha[active]  # the primal gradient is z.T @ this
        rhs = np.concatenate([gradient, residual.sum(axis=1)[:, None]], axis=1)
        try:
            step = np.linalg.solve(system, rhs[..., None])[..., 0]
        except np.linalg.LinAlgError:  # duplicate prompts can make the system singular
            step = (np.linalg.pinv(system) @ rhs[..., None])[..., 0]
        decrement = (np.einsum("km,kmj,kj->k", gradient, g, step[:, :m])
                     + residual.sum(axis=1) * step[:, m])  # primal gradient . primal step
        moving = decrement > _NEWTON_TOLERANCE
        active, step, decrement = active[moving], step[moving], decrement[moving]
        t = np.ones(active.size)
        for _ in range(40):  # backtracking, per problem, until the step is already quadratic
            new_alpha = alpha[active] - t[:, None] * step[:, :m]
            new_bias = bias[active] - t * step[:, m]
            new = objective(new_alpha, new_bias, active)
            short = (new > current[active] - 0.25 * t * decrement) & (decrement > _FULL_STEP)
            if not short.any():
                break
            t[short] *= 0.5
        alpha[active], bias[active], current[active] = new_alpha, new_bias, new
    return alpha, bias


def newton_primal(z: np.ndarray, y: np.ndarray, train: np.ndarray,
                  lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The primal form for P problems, in chunks that bound the memory; see the module
    docstring."""
    n = z.shape[0]
    values, vectors = np.linalg.eigh(z.T @ z)  # the shared Hessian's eigenbasis, once
    beta = np.zeros((y.shape[0], z.shape[1]))
    bias = np.zeros(y.shape[0])
    chunk = max(1, _PRIMAL_BATCH // n)
    for start in range(0, y.shape[0], chunk):
        part = slice(start, start + chunk)
        beta[part], bias[part] = _primal_chunk(z, y[part], train[part], lam[part],
                                               (np.maximum(values, 0.0) / n, vectors))
    return beta, bias


def _primal_chunk(z: np.ndarray, y: np.ndarray, train: np.ndarray, lam: np.ndarray,
                  shared: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Newton's method on (beta [k, r], bias [k]) with shared or own Hessians (see above).

    The working arrays hold the unfinished problems only, compacted as problems finish. The
    line search runs only where the decrement is above `_FULL_STEP`; elsewhere the step is
    taken whole and the objective is not needed (it is recomputed if ever needed again)."""
    k, (n, r) = y.shape[0], z.shape
    eig, basis = shared  # eigenvalues of z'z / n, and its eigenvectors [r, r]
    mask = train.astype(np.float64)
    share = (mask * y).sum(axis=1) / mask.sum(axis=1)
    beta, bias = np.zeros((k, r)), np.log(share / (1.0 - share))
    ids = np.flatnonzero(lam > 0)  # no spread: nothing to fit, keep the prior
    y, mask, lam = y[ids], mask[ids], lam[ids]
    b, c = np.zeros((ids.size, r)), bias[ids].copy()
    logit = np.repeat(c[:, None], n, axis=1)  # [a, n]
    current, p = _loss_and_sigmoid(logit, y, mask)
    previous = np.full(ids.size, np.inf)
    own: dict[int, np.ndarray] = {}  # problem -> inverse of its own Hessian
    refresh = np.zeros(ids.size, dtype=bool)
    for iteration in range(_PRIMAL_STEPS):
        if ids.size == 0:
            break
        w = p * (1.0 - p)
        w *= mask
        residual = p - y
        residual *= mask
        gradient = np.concatenate([residual @ z + lam[:, None] * b,
                                   residual.sum(axis=1)[:, None]], axis=1)  # [a, r + 1]
        step = _shared_step(gradient, w, lam, eig, basis)
        if iteration > _PRIMAL_STEPS // 2:
            refresh[:] = True  # slow to converge: exact Newton from here on
        for i in np.flatnonzero(refresh | np.isin(ids, list(own))):
            if refresh[i]:
                own[int(ids[i])] = _own_inverse(z, w[i], float(lam[i]))
            step[i] = own[int(ids[i])] @ gradient[i]
        decrement = np.einsum("kj,kj->k", gradient, step)
        refresh = decrement > _CONTRACTION * previous
        previous = decrement
        done = decrement <= _NEWTON_TOLERANCE
        if done.any():
            beta[ids[done]], bias[ids[done]] = b[done], c[done]
            keep = ~done
            ids, y, mask, lam, b, c, logit, p = (ids[keep], y[keep], mask[keep], lam[keep],
                                                 b[keep], c[keep], logit[keep], p[keep])
            current, previous, refresh = current[keep], previous[keep], refresh[keep]
            step, decrement = step[keep], decrement[keep]
            if ids.size == 0:
                break
        change = step[:, :r] @ z.T + step[:, r:]  # [a, n]: logits move by -t * change
        t = np.ones(ids.size)
        check = np.flatnonzero(decrement > _FULL_STEP)
        if check.size:
            stale = check[np.isnan(current[check])]
            if stale.size:
                current[stale] = (_loss_and_sigmoid(logit[stale], y[stale], mask[stale])[0]
                                  + 0.5 * lam[stale] * np.sum(b[stale] ** 2, axis=1))
            sub = (logit[check], change[check], y[check], mask[check], b[check],
                   step[check, :r], lam[check])
            for _ in range(40):  # backtracking, per problem
                new, new_p = _trial(t[check], *sub)
                short = new > current[check] - 0.25 * t[check] * decrement[check]
                if not short.any():
                    break
                t[check[short]] *= 0.5
            else:
                new, new_p = _trial(t[check], *sub)
        logit -= t[:, None] * change
        b -= t[:, None] * step[:, :r]
        c -= t * step[:, r]
        current[:] = np.nan
        if check.size:
            current[check] = new
        p = sigmoid(logit) if check.size < ids.size else p
        if check.size:
            p[check] = new_p
    beta[ids], bias[ids] = b, c  # the step limit was reached
    return beta, bias


def _trial(t: np.ndarray, logit: np.ndarray, change: np.ndarray, y: np.ndarray,
           mask: np.ndarray, b: np.ndarray, step: np.ndarray,
           lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The objective and the sigmoids after steps of length t."""
    loss, p = _loss_and_sigmoid(logit - t[:, None] * change, y, mask)
    shrunk = b - t[:, None] * step
    return loss + 0.5 * lam * np.sum(shrunk * shrunk, axis=1), p


def _loss_and_sigmoid(logit: np.ndarray, y: np.ndarray,
                      mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The unpenalised loss of each problem [a] and the sigmoid of every logit, sharing one
    exponential."""
    e = np.exp(-np.abs(logit))
    p = np.where(logit >= 0, 1.0, e) / (1.0 + e)
    per_row = np.maximum(logit, 0.0) + np.log1p(e) - y * logit
    return np.einsum("kn,kn->k", mask, per_row), p


def _shared_step(gradient: np.ndarray, w: np.ndarray, lam: np.ndarray, eig: np.ndarray,
                 basis: np.ndarray) -> np.ndarray:
    """Solve H~ step = gradient for every problem, H~ = [c G + lam I, 0; 0, s]: c G (c = the
    problem's total weight s, G = z'z / n) stands in for z' W z, the bias's own entry s = sum w
    is exact and its coupling to the weights is left out (z is centred, so it is small). G is
    inverted through its eigenbasis, once for all problems."""
    r = basis.shape[0]
    s = np.maximum(w.sum(axis=1), 1e-12)  # [a]
    scale = 1.0 / (s[:, None] * eig[None, :] + lam[:, None])  # [a, r], in the eigenbasis
    d_beta = ((gradient[:, :r] @ basis) * scale) @ basis.T
    return np.concatenate([d_beta, (gradient[:, r] / s)[:, None]], axis=1)


def _own_inverse(z: np.ndarray, w: np.ndarray, lam: float) -> np.ndarray:
    """The inverse of one problem's exact Hessian [r + 1, r + 1] at weights w [n]."""
    r = z.shape[1]
    root = z * np.sqrt(w)[:, None]
    hessian = np.empty((r + 1, r + 1))
    hessian[:r, :r] = root.T @ root
    hessian[np.arange(r), np.arange(r)] += lam
    hessian[:r, r] = hessian[r, :r] = w @ z
    hessian[r, r] = max(float(w.sum()), 1e-12)
    try:
        return np.linalg.inv(hessian)
    except np.linalg.LinAlgError:
        return np.linalg.pinv(hessian)
