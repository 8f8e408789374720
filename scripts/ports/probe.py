"""The logistic probe and the held-out protocol, fitted independently with scikit-learn for
tests/tests/ports.rs.

Probe: L2 logistic regression on features standardised with the training rows' mean and one
global scale (sqrt of the mean squared deviation over all entries), minimising the mean log-loss
+ lambda/2 |w|^2, which is scikit-learn's LogisticRegression(C = 1 / (n lambda)) (intercept not
penalised). Held out: k = min(5, pairs) folds, pair i in fold i % k.

Held-out separation of the mean difference: fitted on the training pairs, unit; each held-out
example scored h.u minus the midpoint of the training classes' projected means; pooled over the
folds: roc_auc_score, Cohen's d, accuracy of s > 0.

stdin: {"layers": [{"pos": [[...]], "neg": [[...]]}], "lambda": 0.01}
stdout: {"layers": [{"w": [...], "b": .., "probe_accuracy": .., "auroc": .., "cohens_d": .., "accuracy": ..}]}
"""
import json
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score


def standardise(X):
    mu = X.mean(axis=0)
    sigma = max(np.sqrt(((X - mu) ** 2).sum() / X.size), 1e-12)
    return mu, sigma


def fit(X, y, lam):
    mu, sigma = standardise(X)
    Z = (X - mu) / sigma
    clf = LogisticRegression(C=1.0 / (len(X) * lam), tol=1e-12, max_iter=100000)
    clf.fit(Z, y)
    return clf, mu, sigma


def rows(P, N, idx):
    X = np.concatenate([np.stack([P[i], N[i]]) for i in idx])
    y = np.tile([1, 0], len(idx))
    return X, y


def folds(n):
    k = min(5, n)
    return [([i for i in range(n) if i % k != f], [i for i in range(n) if i % k == f]) for f in range(k)]


def cohens_d(p, n):
    vp, vn = np.var(p, ddof=1), np.var(n, ddof=1)
    pooled = np.sqrt(((len(p) - 1) * vp + (len(n) - 1) * vn) / max(len(p) + len(n) - 2, 1))
    return float((p.mean() - n.mean()) / pooled) if pooled > 0 else 0.0


def main():
    r = json.load(sys.stdin)
    lam = r["lambda"]
    out = []
    for layer in r["layers"]:
        P, N = np.asarray(layer["pos"], dtype=np.float64), np.asarray(layer["neg"], dtype=np.float64)
        n = len(P)
        X, y = rows(P, N, range(n))
        clf, _, _ = fit(X, y, lam)
        right = total = 0
        sp, sn = [], []
        for train, test in folds(n):
            Xt, yt = rows(P, N, train)
            c, mu, sigma = fit(Xt, yt, lam)
            Xh, yh = rows(P, N, test)
            right += int((c.predict((Xh - mu) / sigma) == yh).sum())
            total += len(yh)
            d = P[train].mean(axis=0) - N[train].mean(axis=0)
            u = d / np.linalg.norm(d)
            mid = ((P[train] @ u).mean() + (N[train] @ u).mean()) / 2
            sp.extend(P[test] @ u - mid)
            sn.extend(N[test] @ u - mid)
        sp, sn = np.asarray(sp), np.asarray(sn)
        scores = np.concatenate([sp, sn])
        labels = np.concatenate([np.ones(len(sp)), np.zeros(len(sn))])
        out.append({
            "w": clf.coef_[0].tolist(), "b": float(clf.intercept_[0]),
            "probe_accuracy": right / total,
            "auroc": float(roc_auc_score(labels, scores)),
            "cohens_d": cohens_d(sp, sn),
            "accuracy": float(((sp > 0).sum() + (sn < 0).sum()) / len(scores)),
        })
    json.dump({"layers": out}, sys.stdout)


if __name__ == "__main__":
    main()
