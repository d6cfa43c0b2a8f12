#!/usr/bin/env python3
"""The damped diagonal of each layer in a natural-gradient checkpoint (optimizer.safetensors),
split into its parts: D (s* for EKFAC, d_g d_a for K-FAC), the constant λ, and K-FAC's
direction-dependent shift √λ(π u + v/π) at a given λ. Prints quantiles per layer.
usage: damping_terms.py CHECKPOINT LAMBDA_SHIFT LAMBDA_ADD"""
import json, struct, sys
import numpy as np

def load(path):
    f = open(path, 'rb')
    n = struct.unpack('<Q', f.read(8))[0]
    h = json.loads(f.read(n)); base = 8 + n
    data = open(path, 'rb').read()
    out = {}
    for k, v in h.items():
        if k == '__metadata__': continue
        s, e = v['data_offsets']
        dt = {'F64': np.float64, 'F32': np.float32}[v['dtype']]
        out[k] = np.frombuffer(data[base + s: base + e], dtype=dt).reshape(v['shape'])
    return out, h.get('__metadata__', {})

ck, meta = load(sys.argv[1])
lam_shift, lam_add = float(sys.argv[2]), float(sys.argv[3])
print(f"# {sys.argv[1]}  variant {meta.get('ng.variant')} step {meta.get('ng.step')}")
layers = sorted({k.split('.')[1] for k in ck if k.startswith('ng.') and k.endswith('.d_g')})
q = [0.1, 0.5, 0.9]
for l in layers:
    dg, da = ck[f'ng.{l}.d_g'], ck[f'ng.{l}.d_a']
    ts = float(ck[f'ng.{l}.basis_trace_scale'][0])
    u, v = dg / np.sqrt(ts), da / np.sqrt(ts)
    kron = np.outer(u, v)
    D = ck.get(f'ng.{l}.corrected', kron)
    pi = np.sqrt(v.mean() / u.mean())
    shift = np.sqrt(lam_shift) * (pi * u[:, None] + v[None, :] / pi)
    fmt = lambda x: ' '.join(f'{np.quantile(x, p):9.2e}' for p in q)
    print(f"{l}: {D.shape}, pi {pi:.3g}; quantiles {q}")
    print(f"  D (s* or d_g d_a)           {fmt(D)}")
    print(f"  shift sqrt(lam)(pi u+v/pi)  {fmt(shift)}   (lam {lam_shift})")
    print(f"  shift / lam_add             {fmt(shift / lam_add)}")
    print(f"  fraction D < lam_add {np.mean(D < lam_add):.3f}; shift+lam_shift < lam_add {np.mean(shift + lam_shift < lam_add):.3f}")
    # step gain in each direction, shift rule over additive rule
    gain = (D + lam_add) / (D + shift + lam_shift)
    print(f"  gain (D+{lam_add})/(D+shift+{lam_shift}) {fmt(gain)}; max {gain.max():.3g}, min {gain.min():.3g}")
