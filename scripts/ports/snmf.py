"""SNMF as the first author's code fits it (Shafran et al. 2025, seminmf.py, NMFSemiNMF.fit with
wta_features and fix_hoyer_scale), ported to NumPy (float64) for tests/tests/ports.rs. The start
G0 is given, so both sides begin from the same point.

stdin: {"a": [[...]] (n tokens x m neurons), "g0": [[...]] (n x k), "sparsity", "max_iter",
        "tol", "reg", "patience"}
stdout: {"f": [[...]] (m x k), "g": [[...]] (n x k), "losses": [...], "best_iter"}
"""
import json
import math
import sys

import numpy as np


def wta_features(F, pct_keep):
    d, K = F.shape
    k = max(1, math.ceil(pct_keep * d))
    scores = np.abs(F)
    thresh = -np.sort(-scores, axis=0)[k - 1, :]
    F *= scores >= thresh[None, :]


def fix_hoyer_scale(F, G, eps=1e-8):
    norms = np.maximum(np.linalg.norm(G, axis=0, keepdims=True), eps)
    G /= norms
    F *= norms[0]


def pos(X):
    return (np.abs(X) + X) * 0.5


def neg(X):
    return (np.abs(X) - X) * 0.5


def fit(A, G, sparsity, max_iter, tol, reg, patience):
    # The reference's A is (mlp_dim, num_samples): our rows transposed.
    A = A.T
    K = G.shape[1]
    best_loss, best_F, best_G, best_it, stale = math.inf, None, None, 0, 0
    losses = []
    for it in range(max_iter):
        inv = np.linalg.inv(G.T @ G + np.eye(K) * reg)
        F = A @ G @ inv
        wta_features(F, sparsity)
        fix_hoyer_scale(F, G)
        P = A.T @ F
        Q = F.T @ F
        G = G * np.sqrt((pos(P) + G @ neg(Q)) / (neg(P) + G @ pos(Q) + 1e-6))
        loss = float(np.linalg.norm(A - F @ G.T) ** 2)
        losses.append(loss)
        if loss < best_loss - tol:
            best_loss, best_F, best_G, best_it, stale = loss, F.copy(), G.copy(), it, 0
        else:
            stale += 1
        if stale >= patience:
            break
    return best_F, best_G, losses, best_it


def main():
    r = json.load(sys.stdin)
    F, G, losses, best = fit(np.asarray(r["a"], dtype=np.float64), np.asarray(r["g0"], dtype=np.float64),
                             r["sparsity"], r["max_iter"], r["tol"], r["reg"], r["patience"])
    json.dump({"f": F.tolist(), "g": G.tolist(), "losses": losses, "best_iter": best}, sys.stdout)


if __name__ == "__main__":
    main()
