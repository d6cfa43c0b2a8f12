//! `a + b`, `a − b`, `a ∘ b` (with `b` optionally a row vector broadcast over rows, e.g. a bias),
//! `c·x` and `x + c`.
//!
//! Backward: `∂(a±b) = (g, ±g)`, `∂(a∘b) = (g∘b, g∘a)`; for a broadcast `b` its gradient is the
//! column sum of the broadcast gradient.

use crate::autograd::Sweep;
use crate::autograd::op::Op;
use crate::autograd::{Tape, Var};
use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor, column_sums, zip_inplace};

/// How the right operand lines up with the left one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Broadcast {
    /// Same shape.
    Same,
    /// `b` has one row's worth of elements, repeated over every row of `a`.
    Row,
}

fn broadcast(
    a: &Tensor<impl Float>,
    b: &Tensor<impl Float>,
    op: &'static str,
) -> Result<Broadcast> {
    let (_, cols) = a.shape().as_matrix();
    if a.shape() == b.shape() {
        Ok(Broadcast::Same)
    } else if b.len() == cols
        && b.dims().iter().rev().skip(1).all(|&d| d == 1)
        && a.shape().rank() >= 2
    {
        Ok(Broadcast::Row)
    } else {
        Err(Error::ShapeMismatch {
            op,
            why: "shapes differ and the right one is not a broadcast row",
            left: a.shape(),
            right: b.shape(),
        })
    }
}

/// `out[i] = f(a[i], b[i or i mod cols])`.
fn binary<F: Float>(
    a: &Tensor<F>,
    b: &Tensor<F>,
    kind: Broadcast,
    f: impl Fn(F, F) -> F + Sync,
) -> Tensor<F> {
    let mut out = a.clone();
    match kind {
        Broadcast::Same => zip_inplace(out.data_mut(), b.data(), f),
        Broadcast::Row => out.data_mut().chunks_mut(b.len().max(1)).for_each(|row| {
            row.iter_mut()
                .zip(b.data())
                .for_each(|(x, y)| *x = f(*x, *y))
        }),
    }
    out
}

/// Sums a gradient shaped like `a` down to `b`'s shape (identity when shapes are equal).
fn reduce_to<F: Float>(g: Tensor<F>, b: &Tensor<F>) -> Result<Tensor<F>> {
    if g.shape() == b.shape() {
        return Ok(g);
    }
    let (rows, cols) = g.shape().as_matrix();
    Tensor::from_vec(column_sums(g.data(), rows, cols), b.dims())
}

impl<F: Float> Tape<'_, F> {
    fn binary_op(
        &mut self,
        a: Var,
        b: Var,
        name: &'static str,
        op: fn(Var, Var) -> Op<F>,
        f: impl Fn(F, F) -> F + Sync,
    ) -> Result<Var> {
        self.check_var(a, name)?;
        self.check_var(b, name)?;
        let kind = broadcast(self.value(a), self.value(b), name)?;
        let out = binary(self.value(a), self.value(b), kind, f);
        Ok(self.push(op(a, b), out, &[a, b]))
    }

    /// `a + b` (`b` may be a row vector broadcast over the rows of `a`).
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary_op(a, b, "add", Op::Add, |x, y| x + y)
    }

    /// `a − b` (`b` may be a broadcast row vector).
    pub fn sub(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary_op(a, b, "sub", Op::Sub, |x, y| x - y)
    }

    /// `a ∘ b`, elementwise (`b` may be a broadcast row vector).
    pub fn mul(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary_op(a, b, "mul", Op::Mul, |x, y| x * y)
    }

    /// `c·x`.
    pub fn scale(&mut self, x: Var, c: F) -> Var {
        let out = self.value(x).scale(c);
        self.push(Op::Scale(x, c), out, &[x])
    }

    /// `x + c`.
    pub fn add_scalar(&mut self, x: Var, c: F) -> Var {
        let out = self.value(x).map(|v| v + c);
        self.push(Op::AddScalar(x), out, &[x])
    }
}

/// Backward of `a + b`.
pub(crate) fn add_backward<F: Float>(
    sw: &mut Sweep<'_, '_, F>,
    a: Var,
    b: Var,
    g: Tensor<F>,
) -> Result<()> {
    if sw.wants(b) {
        sw.add(b, reduce_to(g.clone(), sw.value(b))?)?;
    }
    sw.add(a, g)
}

/// Backward of `a − b`.
pub(crate) fn sub_backward<F: Float>(
    sw: &mut Sweep<'_, '_, F>,
    a: Var,
    b: Var,
    g: Tensor<F>,
) -> Result<()> {
    if sw.wants(b) {
        sw.add(b, reduce_to(g.scale(-F::ONE), sw.value(b))?)?;
    }
    sw.add(a, g)
}

/// Backward of `a ∘ b`.
pub(crate) fn mul_backward<F: Float>(
    sw: &mut Sweep<'_, '_, F>,
    a: Var,
    b: Var,
    g: Tensor<F>,
) -> Result<()> {
    let (va, vb) = (sw.value(a), sw.value(b));
    let kind = broadcast(va, vb, "mul")?;
    if sw.wants(b) {
        sw.add(b, reduce_to(g.mul(va)?, vb)?)?;
    }
    if sw.wants(a) {
        sw.add(a, binary(&g, vb, kind, |x, y| x * y))?;
    }
    Ok(())
}

/// Backward of `c·x`: `c·g`, in place.
pub(crate) fn scale_backward<F: Float>(c: F, mut g: Tensor<F>) -> Tensor<F> {
    g.map_inplace(|x| x * c);
    g
}
