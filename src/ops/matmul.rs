//! `C = op(A)·op(B)` on rank-2 tensors, `op` = identity or transpose (a stride flag, no copy).
//!
//! Backward (with `dC` the upstream gradient):
//! `dA = dC·op(B)ᵀ` (or its transpose when A was used transposed),
//! `dB = op(A)ᵀ·dC` (or its transpose when B was used transposed).

use crate::autograd::op::Op;
use crate::autograd::{Sweep, Tape, Var};
use crate::error::Result;
use crate::kernels::gemm::matmul;
use crate::tensor::{Float, Tensor};

impl<F: Float> Tape<'_, F> {
    /// `a·b`.
    pub fn matmul(&mut self, a: Var, b: Var) -> Result<Var> {
        self.matmul_t(a, false, b, false)
    }

    /// `op(a)·op(b)`, transposing `a` when `ta` and `b` when `tb`.
    pub fn matmul_t(&mut self, a: Var, ta: bool, b: Var, tb: bool) -> Result<Var> {
        self.check_var(a, "matmul")?;
        self.check_var(b, "matmul")?;
        let out = matmul(self.value(a), ta, self.value(b), tb)?;
        Ok(self.push(Op::MatMul { a, b, ta, tb }, out, &[a, b]))
    }
}

/// Backward of `op(a)·op(b)`.
pub(crate) fn matmul_backward<F: Float>(
    sw: &mut Sweep<'_, '_, F>,
    a: Var,
    b: Var,
    ta: bool,
    tb: bool,
    g: &Tensor<F>,
) -> Result<()> {
    let (va, vb) = (sw.value(a), sw.value(b));
    if sw.wants(a) {
        let da = if ta {
            matmul(vb, tb, g, true)?
        } else {
            matmul(g, false, vb, !tb)?
        };
        sw.add(a, da)?;
    }
    if sw.wants(b) {
        let db = if tb {
            matmul(g, true, va, ta)?
        } else {
            matmul(va, !ta, g, false)?
        };
        sw.add(b, db)?;
    }
    Ok(())
}
