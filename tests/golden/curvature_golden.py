#!/usr/bin/env python3
"""Golden numbers for tests/curvature_golden.rs, computed independently of tekfac (numpy, f64).

A 3-2-3 dense net (fc1: 3 -> 2, tanh, fc2: 2 -> 3, softmax cross-entropy averaged over the
batch), fixed weights, a fixed batch of 4 and its labels. Everything below follows the
definitions of shared/spec/tekfac-math.md, written out directly:

  capture rows    a_bar = [a, 1],  g = dl_n/d(out) (the per-example loss: B x the batch gradient)
  DW_n = g_n a_bar_n^T,   grad = mean_n DW_n,   F = mean_n vec(DW_n) vec(DW_n)^T (row-major vec)
  K-FAC           A = mean a_bar a_bar^T,  G = mean g g^T,            F_hat = G (x) A
  TKFAC           delta = mean |a_bar|^2 |g|^2,  dPhi = mean |g|^2 a_bar a_bar^T,
                  dPsi = mean |a_bar|^2 g g^T,                         F_hat = dPsi (x) dPhi / delta
  EKFAC / TEKFAC  Q = Q_G (x) Q_A (eigenvectors of G, A; TEKFAC: of dPsi, dPhi),
                  s* / Theta = mean_n (Q_G^T DW_n Q_A)^2,              F_hat = Q diag(vec s*) Q^T
  re-seed         s* := eig(G) eig(A)^T,  Theta := eig(dPsi) eig(dPhi)^T / delta   (spec 1.5)
  one step        theta -= lr * u with decay 0 (this batch's statistics only), momentum 0, and
                  K-FAC:   u = G_hat^-1 M A_hat^-1, A_hat = A + pi sqrt(lam) I,
                           G_hat = G + sqrt(lam)/pi I, pi = sqrt((tr A / dim A) / (tr G / dim G))
                  TKFAC:   u = Psi_hat^-1 M Phi_hat^-1, Phi_hat = sqrt(delta) Phi + sqrt(lam) I,
                           Psi_hat = sqrt(delta) Psi + sqrt(lam) I   (Phi = dPhi / delta)
                  EKFAC, TEKFAC: u = unvec((F_hat + lam I)^-1 vec M)   (a dense solve)

Run: python3 tests/golden/curvature_golden.py  (needs numpy) and paste its output into
tests/curvature_golden.rs.
"""
import numpy as np

X = np.array([[0.5, -1.2, 0.3], [1.1, 0.4, -0.7], [-0.6, 0.9, 1.5], [0.2, -0.3, -1.0]])
LABELS = [1, 0, 2, 1]  # `Net::labels` of tests/support/nets.rs: (2i + 1) mod 3
FC1 = np.array([[0.4, -0.3, 0.2, 0.1], [-0.5, 0.6, 0.35, -0.2]])  # [W | b], [2, 3 + 1]
FC2 = np.array([[0.7, -0.4, 0.05], [-0.3, 0.8, -0.1], [0.25, 0.45, 0.3]])  # [W | b], [3, 2 + 1]
LAMBDA, LR = 0.05, 0.1


def forward_backward():
    """The loss and, per layer, the capture rows (a_bar, g)."""
    b = len(X)
    a1 = np.hstack([X, np.ones((b, 1))])
    h = np.tanh(a1 @ FC1.T)
    a2 = np.hstack([h, np.ones((b, 1))])
    z = a2 @ FC2.T
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(b), LABELS]))
    g2 = p - np.eye(3)[LABELS]  # d(-log p_y)/dz per example
    g1 = (g2 @ FC2[:, :2]) * (1.0 - h**2)
    return loss, [("fc1", a1, g1), ("fc2", a2, g2)]


def mean_outer(rows, weights):
    return sum(w * np.outer(r, r) for r, w in zip(rows, weights)) / len(rows)


def eig_diagonal(q_g, q_a, dws):
    return np.mean([(q_g.T @ dw @ q_a) ** 2 for dw in dws], axis=0)


def layer_numbers(a, g):
    n = len(a)
    dws = [np.outer(g[i], a[i]) for i in range(n)]
    grad = np.mean(dws, axis=0)
    vecs = np.array([dw.reshape(-1) for dw in dws])  # row-major vec
    fisher = vecs.T @ vecs / n
    ones = np.ones(n)
    a_f, g_f = mean_outer(a, ones), mean_outer(g, ones)
    a2, g2 = (a**2).sum(axis=1), (g**2).sum(axis=1)
    delta = np.mean(a2 * g2)
    phi_raw, psi_raw = mean_outer(a, g2), mean_outer(g, a2)
    d_a, q_a = np.linalg.eigh(a_f)
    d_g, q_g = np.linalg.eigh(g_f)
    e_phi, q_phi = np.linalg.eigh(phi_raw)
    e_psi, q_psi = np.linalg.eigh(psi_raw)
    s_star = eig_diagonal(q_g, q_a, dws)
    theta = eig_diagonal(q_psi, q_phi, dws)
    blocks = {
        "Kfac": np.kron(g_f, a_f),
        "Ekfac": np.kron(q_g, q_a) @ np.diag(s_star.reshape(-1)) @ np.kron(q_g, q_a).T,
        "Tkfac": np.kron(psi_raw, phi_raw) / delta,
        "Tekfac": np.kron(q_psi, q_phi) @ np.diag(theta.reshape(-1)) @ np.kron(q_psi, q_phi).T,
    }
    errors = [np.linalg.norm(fisher - blocks[v]) for v in ("Kfac", "Ekfac", "Tkfac", "Tekfac")]
    d_out, d_in = grad.shape
    root = np.sqrt(LAMBDA)
    pi = np.sqrt((np.trace(a_f) / d_in) / (np.trace(g_f) / d_out))
    a_hat, g_hat = a_f + pi * root * np.eye(d_in), g_f + root / pi * np.eye(d_out)
    phi_hat = phi_raw / np.sqrt(delta) + root * np.eye(d_in)
    psi_hat = psi_raw / np.sqrt(delta) + root * np.eye(d_out)

    def dense_solve(block):
        v = np.linalg.solve(block + LAMBDA * np.eye(d_out * d_in), grad.reshape(-1))
        return v.reshape(d_out, d_in)

    updates = {
        "Kfac": np.linalg.solve(g_hat, grad) @ np.linalg.inv(a_hat),
        "Ekfac": dense_solve(blocks["Ekfac"]),
        "Tkfac": np.linalg.solve(psi_hat, grad) @ np.linalg.inv(phi_hat),
        "Tekfac": dense_solve(blocks["Tekfac"]),
    }
    return {
        "grad": grad,
        "a": a_f,
        "g": g_f,
        "phi_raw": phi_raw,
        "psi_raw": psi_raw,
        "delta": delta,
        "trace_f": np.trace(fisher),
        "s_star": np.sort(s_star.reshape(-1)),
        "theta": np.sort(theta.reshape(-1)),
        "s_star_seed": np.sort(np.outer(d_g, d_a).reshape(-1)),
        "theta_seed": np.sort((np.outer(e_psi, e_phi) / delta).reshape(-1)),
        "errors": errors,
        "steps": [-LR * updates[v] for v in ("Kfac", "Ekfac", "Tkfac", "Tekfac")],
    }


def literal(values, indent=12):
    """A Rust slice literal, three numbers a line."""
    nums = [repr(float(v)) for v in np.asarray(values).reshape(-1)]
    lines = [", ".join(nums[i : i + 3]) + "," for i in range(0, len(nums), 3)]
    pad = " " * indent
    return "&[\n" + "".join(pad + line + "\n" for line in lines) + " " * (indent - 4) + "]"


def main():
    loss, layers = forward_backward()
    print(f"const LOSS: f64 = {float(loss)!r};")
    print("const LAYERS: [Golden; 2] = [")
    for name, a, g in layers:
        nums = layer_numbers(a, g)
        print("    Golden {")
        print(f'        name: "{name}",')
        for key in ("grad", "a", "g", "phi_raw", "psi_raw"):
            print(f"        {key}: {literal(nums[key])},")
        print(f"        delta: {float(nums['delta'])!r},")
        print(f"        trace_f: {float(nums['trace_f'])!r},")
        for key in ("s_star", "theta", "s_star_seed", "theta_seed"):
            print(f"        {key}: {literal(nums[key])},")
        print("        errors: [")
        for error in nums["errors"]:
            print(f"            {float(error)!r},")
        print("        ],")
        print("        steps: [")
        for step in nums["steps"]:
            print(f"            {literal(step, 16)},")
        print("        ],")
        print("    },")
    print("];")


if __name__ == "__main__":
    main()
