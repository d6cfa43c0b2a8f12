//! Dense layers trained in their Kronecker eigenbasis (EKFAC, TEKFAC). The plain update
//!
//! ```text
//! U = Q_G [ (Q_Gᵀ (∇W̄ + wd·W̄) Q_A) ⊘ (D + λ) ] Q_Aᵀ
//! ```
//!
//! is an orthogonal change of coordinates away from an elementwise one. Holding the layer as
//! `W̄ = Q_G W̃ Q_Aᵀ` (`ops/eigen_dense.rs`), the tape hands out `M = ∂L/∂W̃ = Q_Gᵀ ∇W̄ Q_A` and
//! the step is
//!
//! ```text
//! Ũ = (M + wd·W̃) ⊘ (D + λ),    m̃ ← μ·m̃ + ν·Ũ,    W̃ ← W̃ − η·m̃
//! ```
//!
//! the plain step seen in the basis: with `Q = Q_G ⊗ Q_A` orthogonal and `vec W̃ = Qᵀ vec W̄`,
//! `wd·W̃ = Qᵀ(wd·W̄)`, `Ũ = Qᵀ U`, `⟨Ũ, M + wd·W̃⟩ = ⟨U, ∇W̄ + wd·W̄⟩` (so KL-clipping's `ν`
//! is unchanged), and momentum, being linear, stays `m̃ = Qᵀ m` (docs/math.md §6).
//!
//! **Refresh.** When the basis moves from `Q` to `Q'`, the stored `W̃`, `m̃` and this step's
//! gradient (computed in the old coordinates) move with `R_G = Q_Gᵀ Q_G'`, `R_A = Q_Aᵀ Q_A'`:
//! `W̃' = R_Gᵀ W̃ R_A`, once per refresh. After a warm refresh each side goes through the
//! refinement's own iterations ([`BasisChange`], `curvature/change.rs`: `O(rows·n·h)` per
//! iteration) when that costs fewer multiply-adds than forming `R` (`n³`) and multiplying by it;
//! after an exact one, by the product. A layer enters its basis from `W̄` with
//! `W̃ = Q_Gᵀ W̄ Q_A`.
//!
//! **When it pays** ([`pays`]), per layer, by multiply-adds per step at batch `n`: the basis
//! costs `n·(2 d_in'² + 2 d_out²)` (`â`, `Q_Gᵀ` forward; `ĝ`, the input gradient backward); the
//! plain path `n·(d_in'² + d_out² + d_out d_in')` (the low-rank rotation in) plus
//! `d_out d_in' (d_out + d_in')` (the rotation out). On the MLP preset at batch 128, fc1 and fc2
//! train in their basis and fc3 (10 outputs) does not; convolutions always take the plain path.

use super::NaturalGradient;
use super::update::LayerGrad;
use crate::curvature::{BasisChange, FastBasis};
use crate::kernels::gemm::{MatRef, gemm_into};
use crate::kernels::transpose::transpose_new;
use crate::params::{LayerEigenbasis, LayerId, LayerInfo, LayerKind, ParamStore};
use crate::tensor::Float;

/// True when training `info` in its eigenbasis costs fewer multiply-adds per step at batch `n`
/// than the plain path (module docs).
pub fn pays(info: &LayerInfo, n: usize) -> bool {
    if !matches!(info.kind, LayerKind::Dense) {
        return false;
    }
    let (o, i, n) = (info.d_out as f64, info.d_in_bar() as f64, n as f64);
    n * (i * i + o * o - o * i) < o * i * (o + i)
}

/// An orthogonal change of a layer's stored coordinates: `X ↦ L X R`.
pub(super) struct Rebase<'c, F: Float> {
    left: Side<'c, F>,
    right: Side<'c, F>,
    d_out: usize,
    d_in_bar: usize,
}

/// One side of a [`Rebase`]: a row-major matrix, the `R` of a warm refresh as its iterations
/// (on the left, `Rᵀ X = (Xᵀ R)ᵀ`), or nothing (a factor whose basis was kept, `R = I`).
enum Side<'c, F> {
    Matrix(Vec<F>),
    Change(&'c BasisChange),
    Identity,
}

impl<'c, F: Float> Rebase<'c, F> {
    /// From the standard coordinates into `to`: `X ↦ Q_Gᵀ X Q_A`.
    fn enter(to: &FastBasis<F>) -> Self {
        let (d_out, d_in_bar) = to.dims();
        Rebase {
            left: Side::Matrix(transpose_new(to.q_g(), d_out, d_out, F::ONE)),
            right: Side::Matrix(to.q_a().to_vec()),
            d_out,
            d_in_bar,
        }
    }

    /// From the basis `from` to the basis `to`: `X ↦ R_Gᵀ X R_A`, `R = Q_fromᵀ Q_to`, for
    /// `count` matrices. A side whose warm refresh left its iterations (`changes`, `[R_A, R_G]`)
    /// applies them when that costs fewer multiply-adds than the product (module docs).
    fn between(
        from: &LayerEigenbasis<F>,
        to: &FastBasis<F>,
        changes: Option<&'c [Option<BasisChange>; 2]>,
        count: usize,
    ) -> Self {
        let (d_out, d_in_bar) = to.dims();
        let change = |k: usize, rows: usize, n: usize| {
            let c = changes?[k].as_ref().filter(|c| c.dim() == n)?;
            let n = n as f64;
            let product = n * n * n + (count * rows) as f64 * n * n;
            (c.multiply_adds(count * rows) < product).then_some(c)
        };
        let right = match change(0, d_out, d_in_bar) {
            Some(c) if c.is_identity() => Side::Identity,
            Some(c) => Side::Change(c),
            None => Side::Matrix(product(&from.q_a, true, to.q_a(), false, d_in_bar)), // R_A
        };
        let left = match change(1, d_in_bar, d_out) {
            Some(c) if c.is_identity() => Side::Identity,
            Some(c) => Side::Change(c),
            None => Side::Matrix(product(to.q_g(), true, &from.q_g, false, d_out)), // R_Gᵀ
        };
        Rebase {
            left,
            right,
            d_out,
            d_in_bar,
        }
    }

    /// From the basis `from` back to the standard coordinates: `X ↦ Q_G X Q_Aᵀ`.
    fn leave(from: &LayerEigenbasis<F>, d_out: usize, d_in_bar: usize) -> Self {
        Rebase {
            left: Side::Matrix(from.q_g.clone()),
            right: Side::Matrix(transpose_new(&from.q_a, d_in_bar, d_in_bar, F::ONE)),
            d_out,
            d_in_bar,
        }
    }

    /// `L X R` for each row-major `[d_out, d_in']` matrix of `stacked` (`[X₁; X₂; …]`, `count`
    /// of them), all in one product per side (a change on the left works on their transposes,
    /// transposed as one batch).
    pub(super) fn apply(&self, stacked: Vec<F>, count: usize) -> Vec<F> {
        let (o, i) = (self.d_out, self.d_in_bar);
        assert_eq!(
            stacked.len(),
            count * o * i,
            "Rebase::apply: whole matrices"
        );
        let left: Vec<F> = match &self.left {
            Side::Matrix(l) => {
                let mut out = vec![F::ZERO; count * o * i];
                let l = MatRef::new(l, o, o, false);
                for (x, out) in stacked.chunks_exact(o * i).zip(out.chunks_exact_mut(o * i)) {
                    gemm_into(F::ONE, l, MatRef::new(x, o, i, false), F::ZERO, out);
                }
                out
            }
            Side::Change(c) => {
                // NOTE: Rᵀ X = (Xᵀ R)ᵀ, for all the Xᵀ stacked at once.
                let turned = c.apply(transpose_new(&stacked, o, i, F::ONE), count * i);
                transpose_new(&turned, i, o, F::ONE)
            }
            Side::Identity => stacked,
        };
        match &self.right {
            Side::Matrix(r) => {
                let mut out = vec![F::ZERO; count * o * i];
                let x = MatRef::new(&left, count * o, i, false);
                gemm_into(F::ONE, x, MatRef::new(r, i, i, false), F::ZERO, &mut out);
                out
            }
            Side::Change(c) => c.apply(left, count * o),
            Side::Identity => left,
        }
    }
}

impl<F: Float> NaturalGradient<F> {
    /// For every layer, whether this step's update takes it in its eigenbasis: decided anew
    /// whenever the layer's basis changed (EKFAC/TEKFAC dense layers with a basis, when
    /// [`pays`] at the batch size of the pass), else kept, so a layer does not flap between
    /// the two paths.
    pub(super) fn wanted_in_basis(&self, params: &ParamStore<F>) -> Vec<bool> {
        let on = self.config.eigenbasis_layers && self.variant.corrects_eigenvalues();
        (0..self.layers.len())
            .map(|i| {
                let fast = &self.fast[i];
                if fast.basis().is_none() {
                    return false;
                }
                if fast.basis_revision() == self.basis_revision[i] {
                    return params.eigenbasis(LayerId(i)).is_some();
                }
                on && self.batch.is_some_and(|n| pays(&self.layers[i], n))
            })
            .collect()
    }

    /// True when layer `i` is stored in its eigenbasis and keeps that basis this step: its
    /// update is then formed in place ([`LayerGrad::InBasis`]), nothing is gathered or rebased.
    pub(super) fn stays_in_basis(&self, i: usize, params: &ParamStore<F>, wanted: &[bool]) -> bool {
        wanted[i]
            && params.eigenbasis(LayerId(i)).is_some()
            && self.basis_revision[i] == self.fast[i].basis_revision()
    }

    /// Moves each layer's stored weights, momentum and this step's gathered gradient (in the
    /// coordinates the pass was computed in) into the coordinates of this step's update: into a
    /// (new) eigenbasis, between bases after a refresh, or back to the standard ones.
    pub(super) fn rebase_layers(
        &mut self,
        params: &mut ParamStore<F>,
        grads: &mut [LayerGrad<'_, F>],
        wanted: &[bool],
    ) {
        for i in 0..self.layers.len() {
            let id = LayerId(i);
            let revision = self.fast[i].basis_revision();
            let current = params.eigenbasis(id);
            let (o, ib) = (self.layers[i].d_out, self.layers[i].d_in_bar());
            let rebase = match (wanted[i], current) {
                (true, Some(_)) if self.basis_revision[i] == revision => continue,
                (true, None) => Rebase::enter(self.fast[i].basis().expect("wanted has a basis")),
                (true, Some(from)) => {
                    let to = self.fast[i].basis().expect("wanted has a basis");
                    // NOTE: the refresh's change leads from the stored basis to `to` only when
                    // the hot path holds the block's current basis.
                    let current = Some(self.blocks[i].basis_revision()) == revision;
                    let changes = (self.basis_revision[i])
                        .filter(|_| current)
                        .and_then(|r| self.blocks[i].basis_change(r));
                    let count = 2 + usize::from(self.momentum[i].is_some());
                    Rebase::between(from, to, changes, count)
                }
                (false, None) => {
                    self.basis_revision[i] = revision;
                    continue;
                }
                (false, Some(from)) => Rebase::leave(from, o, ib),
            };
            let LayerGrad::Full(grad) = &mut grads[i] else {
                unreachable!("a layer changing coordinates gathers its gradient")
            };
            let mut stacked = params.block(id);
            stacked.extend_from_slice(grad);
            let momentum = self.momentum[i].take();
            stacked.extend(momentum.iter().flatten());
            let count = 2 + usize::from(momentum.is_some());
            let moved = rebase.apply(stacked, count);
            let mut moved = moved.chunks_exact(o * ib);
            params.set_block(id, moved.next().expect("the weights"));
            grad.copy_from_slice(moved.next().expect("the gradient"));
            self.momentum[i] = moved.next().map(<[F]>::to_vec);
            let basis = wanted[i].then(|| {
                let b = self.fast[i].basis().expect("wanted has a basis");
                LayerEigenbasis {
                    q_a: b.q_a().to_vec(),
                    q_g: b.q_g().to_vec(),
                }
            });
            params
                .set_eigenbasis(id, basis)
                .expect("a dense layer's own basis fits it");
            self.basis_revision[i] = revision;
        }
    }
}

/// `op(a)·op(b)` for `n × n` row-major matrices.
fn product<F: Float>(a: &[F], ta: bool, b: &[F], tb: bool, n: usize) -> Vec<F> {
    let mut out = vec![F::ZERO; n * n];
    let (a, b) = (MatRef::new(a, n, n, ta), MatRef::new(b, n, n, tb));
    gemm_into(F::ONE, a, b, F::ZERO, &mut out);
    out
}
