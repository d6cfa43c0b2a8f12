//! The training hot path of preconditioning, apart from the readable f64 block: the same update
//! as [`CurvatureBlock::precondition`](super::CurvatureBlock::precondition), in the training
//! precision `F` through matrixmultiply, on row-major slices straight from the parameter tensors.
//!
//! ```text
//! U = Q_G [ (Q_Gᵀ ∇W̄ Q_A) ⊘ damped(D) ] Q_Aᵀ        four GEMMs in F; the state stays f64
//! Q_Gᵀ ∇W̄ Q_A = (g Q_G)ᵀ (ā Q_A)                      when ∇W̄ = gᵀ ā has few rows (dense)
//! U = Ĝ⁻¹ ∇W̄ Â⁻¹ = (g Ĝ⁻¹)ᵀ (ā Â⁻¹)                    factored damping (K-FAC, TKFAC), no rotation
//! ```
//!
//! [`FastBasis`] holds `F` copies of the eigenvectors and the GEMM kernels. [`FastBlock`] is one
//! layer's hot-path state: the basis, the damped diagonal and, for a factored damping, the
//! inverse damped factors, rebuilt from the f64 [`CurvatureBlock`] only when its basis, its
//! diagonal or the damping changed ([`FastBlock::sync`]). Tests pin every path here to the f64
//! one (`tests/ng_fast_paths.rs`).

use super::block::CurvatureBlock;
use super::damping::Damping;
use crate::error::{Error, Result};
use crate::kernels::gemm::{MatRef, gemm_into};
use crate::kernels::transpose::transpose_new;
use crate::tensor::{Float, Shape};

/// Row-major `F` copies of a basis's eigenvectors.
#[derive(Clone, Debug, PartialEq)]
pub struct FastBasis<F: Float = f32> {
    q_a: Vec<F>,
    q_g: Vec<F>,
    d_out: usize,
    d_in: usize,
}

impl<F: Float> FastBasis<F> {
    /// Copies `basis`'s `Q_A` and `Q_G` to row-major `F`.
    pub fn new(basis: &super::basis::KroneckerBasis) -> Self {
        let (d_out, d_in) = basis.dims();
        // NOTE: the column-major storage cast to `F` is row-major `Qᵀ`; the tiled transpose
        // turns it over.
        let rows = |m: &nalgebra::DMatrix<f64>| -> Vec<F> {
            let cast: Vec<F> = m.iter().map(|&x| F::from_f64(x)).collect();
            transpose_new(&cast, m.ncols(), m.nrows(), F::ONE)
        };
        FastBasis {
            q_a: rows(&basis.q_a),
            q_g: rows(&basis.q_g),
            d_out,
            d_in,
        }
    }

    /// `(d_out, d_in')`.
    pub fn dims(&self) -> (usize, usize) {
        (self.d_out, self.d_in)
    }

    /// `Q_G [(Q_Gᵀ grad Q_A) ⊘ damped] Q_Aᵀ` for row-major `[d_out, d_in']` slices.
    ///
    /// # Panics
    /// When `grad` or `damped` is not `d_out·d_in'` long (the caller checks shapes).
    pub fn precondition(&self, grad: &[F], damped: &[F]) -> Vec<F> {
        let (o, i) = (self.d_out, self.d_in);
        assert!(
            grad.len() == o * i && damped.len() == o * i,
            "FastBasis::precondition: shapes are checked by the caller"
        );
        let mut tmp = vec![F::ZERO; o * i];
        let mut x = vec![F::ZERO; o * i];
        let grad = MatRef::new(grad, o, i, false);
        gemm_into(F::ONE, self.q_g_ref(true), grad, F::ZERO, &mut tmp);
        let tmp_ref = MatRef::new(&tmp, o, i, false);
        gemm_into(F::ONE, tmp_ref, self.q_a_ref(false), F::ZERO, &mut x);
        self.scale_and_rotate_out(x, tmp, damped)
    }

    /// The same update for a gradient given in its low-rank form `∇W̄ = gᵀ ā` (`g` is
    /// `[rows, d_out]`, `ā` is `[rows, d_in']`, row-major), rotated in as
    /// `Q_Gᵀ ∇W̄ Q_A = (g Q_G)ᵀ (ā Q_A)` — cheaper than two full rotations when
    /// `rows·(d_out² + d_in'² + d_out·d_in') < d_out·d_in'·(d_out + d_in')`
    /// ([`low_rank_pays`](Self::low_rank_pays); a dense layer at batch 128).
    ///
    /// # Panics
    /// When the slices do not match `rows` and the basis (the caller checks shapes).
    pub fn precondition_low_rank(&self, a: &[F], g: &[F], rows: usize, damped: &[F]) -> Vec<F> {
        let (o, i) = (self.d_out, self.d_in);
        assert!(
            a.len() == rows * i && g.len() == rows * o && damped.len() == o * i,
            "FastBasis::precondition_low_rank: shapes are checked by the caller"
        );
        let mut gq = vec![F::ZERO; rows * o];
        let mut aq = vec![F::ZERO; rows * i];
        let g = MatRef::new(g, rows, o, false);
        gemm_into(F::ONE, g, self.q_g_ref(false), F::ZERO, &mut gq);
        let a = MatRef::new(a, rows, i, false);
        gemm_into(F::ONE, a, self.q_a_ref(false), F::ZERO, &mut aq);
        let mut x = vec![F::ZERO; o * i];
        let (gq, aq) = (
            MatRef::new(&gq, rows, o, true),
            MatRef::new(&aq, rows, i, false),
        );
        gemm_into(F::ONE, gq, aq, F::ZERO, &mut x);
        self.scale_and_rotate_out(x, vec![F::ZERO; o * i], damped)
    }

    /// `(Q_G diag(1/du) Q_Gᵀ, Q_A diag(1/dv) Q_Aᵀ)`, row-major: the inverses of the damped
    /// factors of a factored damping (`du`, `dv` from
    /// [`CurvatureBlock::damped_factors`](super::CurvatureBlock::damped_factors)).
    pub fn inverse_factors(&self, du: &[F], dv: &[F]) -> (Vec<F>, Vec<F>) {
        let inverse = |q: &[F], n: usize, d: &[F]| -> Vec<F> {
            let mut scaled = q.to_vec();
            for row in scaled.chunks_exact_mut(n) {
                row.iter_mut().zip(d).for_each(|(x, &d)| *x /= d);
            }
            let mut out = vec![F::ZERO; n * n];
            let (qs, qt) = (
                MatRef::new(&scaled, n, n, false),
                MatRef::new(q, n, n, true),
            );
            gemm_into(F::ONE, qs, qt, F::ZERO, &mut out);
            out
        };
        (
            inverse(&self.q_g, self.d_out, du),
            inverse(&self.q_a, self.d_in, dv),
        )
    }

    /// `U = Ĝ⁻¹ ∇W̄ Â⁻¹ = (g Ĝ⁻¹)ᵀ (ā Â⁻¹)` for `∇W̄ = gᵀā` and a factored damping: three GEMMs
    /// of `rows`-row operands, no rotation (K-FAC's and TKFAC's update in low rank).
    ///
    /// # Panics
    /// When the slices do not match `rows` and the basis (the caller checks shapes).
    pub fn precondition_kronecker_low_rank(
        &self,
        a: &[F],
        g: &[F],
        rows: usize,
        inv_g: &[F],
        inv_a: &[F],
    ) -> Vec<F> {
        let (o, i) = (self.d_out, self.d_in);
        assert!(
            a.len() == rows * i && g.len() == rows * o && inv_g.len() == o * o,
            "FastBasis::precondition_kronecker_low_rank: shapes are checked by the caller"
        );
        let mut gi = vec![F::ZERO; rows * o];
        let mut ai = vec![F::ZERO; rows * i];
        let inv_g = MatRef::new(inv_g, o, o, false);
        gemm_into(
            F::ONE,
            MatRef::new(g, rows, o, false),
            inv_g,
            F::ZERO,
            &mut gi,
        );
        let inv_a = MatRef::new(inv_a, i, i, false);
        gemm_into(
            F::ONE,
            MatRef::new(a, rows, i, false),
            inv_a,
            F::ZERO,
            &mut ai,
        );
        let mut u = vec![F::ZERO; o * i];
        let (gi, ai) = (
            MatRef::new(&gi, rows, o, true),
            MatRef::new(&ai, rows, i, false),
        );
        gemm_into(F::ONE, gi, ai, F::ZERO, &mut u);
        u
    }

    /// True when [`precondition_low_rank`](Self::precondition_low_rank) with `rows` rows costs
    /// fewer FLOPs than [`precondition`](Self::precondition)'s two full rotations in.
    pub fn low_rank_pays(&self, rows: usize) -> bool {
        let (o, i) = (self.d_out as f64, self.d_in as f64);
        rows as f64 * (o * o + i * i + o * i) < o * i * (o + i)
    }

    /// `Q_G (x ⊘ damped) Q_Aᵀ`, with `tmp` as scratch of the same size.
    fn scale_and_rotate_out(&self, mut x: Vec<F>, mut tmp: Vec<F>, damped: &[F]) -> Vec<F> {
        let (o, i) = (self.d_out, self.d_in);
        x.iter_mut().zip(damped).for_each(|(x, &d)| *x /= d);
        let x_ref = MatRef::new(&x, o, i, false);
        gemm_into(F::ONE, self.q_g_ref(false), x_ref, F::ZERO, &mut tmp);
        let tmp_ref = MatRef::new(&tmp, o, i, false);
        gemm_into(F::ONE, tmp_ref, self.q_a_ref(true), F::ZERO, &mut x);
        x
    }

    /// `Q_G`, `[d_out, d_out]`, row-major.
    pub fn q_g(&self) -> &[F] {
        &self.q_g
    }

    /// `Q_A`, `[d_in', d_in']`, row-major.
    pub fn q_a(&self) -> &[F] {
        &self.q_a
    }

    fn q_g_ref(&self, transposed: bool) -> MatRef<'_, F> {
        MatRef::new(&self.q_g, self.d_out, self.d_out, transposed)
    }

    fn q_a_ref(&self, transposed: bool) -> MatRef<'_, F> {
        MatRef::new(&self.q_a, self.d_in, self.d_in, transposed)
    }
}

/// Rows per task of [`damped_rows`]. NOTE: a band reads `BAND` consecutive values of each
/// column of the column-major `D`, and consecutive columns lie a whole column apart (4 KiB for
/// 512 rows), so wider bands read longer runs per column; 64 rows took about a fifth less time
/// than 16 on fc1's `[512, 785]` in a stand-alone measurement (docs/PERFORMANCE.md), while the
/// 64 rows of `out` a band writes (4 KiB of lines) stay in L1.
const BAND: usize = 64;

/// The damped diagonal of `block` under `damping` as row-major `F`, `[d_out, d_in']`, written
/// into `out`'s allocation: what [`CurvatureBlock::damped_eigenvalues`] returns, transposed and
/// cast. EKFAC's and TEKFAC's `D + λ` (their [`Damping::Additive`]) is formed here in one pass
/// over `s*`/`Θ`, in bands of [`BAND`] rows across threads, the same f64 sum entry by entry and
/// one cast; every other damping, and any λ or entry the block refuses, goes through the block
/// itself (so its errors are the block's). `tests/ng_fast_paths.rs` pins the two to the same bits.
fn damped_rows<F: Float>(
    block: &CurvatureBlock,
    damping: &Damping,
    mut out: Vec<F>,
) -> Result<Vec<F>> {
    use rayon::prelude::*;
    let plain = |block: &CurvatureBlock| -> Result<Vec<F>> {
        let damped = block.damped_eigenvalues(damping)?;
        Ok(damped.transpose().iter().map(|&x| F::from_f64(x)).collect())
    };
    let (Damping::Additive(lambda), Some(d)) = (damping, block.corrected_eigenvalues()) else {
        return plain(block);
    };
    let (lambda, (rows, cols)) = (*lambda, d.shape());
    if !(lambda.is_finite() && lambda >= 0.0) || cols == 0 {
        return plain(block);
    }
    out.resize(rows * cols, F::ZERO);
    // `d` is column-major: a band of BAND rows reads BAND consecutive values of each column.
    let positive = out
        .par_chunks_mut(BAND * cols)
        .enumerate()
        .map(|(band, chunk)| {
            let r0 = band * BAND;
            let mut positive = true;
            for c in 0..cols {
                let column = &d.as_slice()[c * rows + r0..c * rows + r0 + chunk.len() / cols];
                for (k, &x) in column.iter().enumerate() {
                    let x = x + lambda;
                    positive &= x.is_finite() && x > 0.0;
                    chunk[k * cols + c] = F::from_f64(x);
                }
            }
            positive
        })
        .reduce(|| true, |a, b| a && b);
    if positive { Ok(out) } else { plain(block) }
}

/// One layer's hot-path state, kept in step with its f64 [`CurvatureBlock`] by
/// [`sync`](Self::sync): the basis in `F`, the damped diagonal, and the inverse damped factors
/// of a factored damping.
#[derive(Clone, Debug)]
pub struct FastBlock<F: Float = f32> {
    name: String,
    d_out: usize,
    d_in_bar: usize,
    basis: Option<FastBasis<F>>,
    /// The block revision the basis was copied at.
    basis_revision: Option<u64>,
    prepared: Option<Prepared<F>>,
}

/// What one damping needs on the hot path, built at one block revision.
#[derive(Clone, Debug)]
struct Prepared<F> {
    damping: Damping,
    revision: u64,
    /// The damped diagonal, row-major `[d_out, d_in']`.
    damped: Vec<F>,
    /// For a factored damping (K-FAC, TKFAC): `Ĝ⁻¹` `[d_out]²` and `Â⁻¹` `[d_in']²`, row-major.
    inverses: Option<(Vec<F>, Vec<F>)>,
}

impl<F: Float> FastBlock<F> {
    /// An empty hot path for `block` (nothing to precondition with before its first refresh).
    pub fn new(block: &CurvatureBlock) -> Self {
        let (d_out, d_in_bar) = block.dims();
        FastBlock {
            name: block.name().to_string(),
            d_out,
            d_in_bar,
            basis: None,
            basis_revision: None,
            prepared: None,
        }
    }

    /// Brings the hot path up to date with `block` under `damping`: copies the basis after a
    /// refresh, and rebuilds the damped diagonal (and a factored damping's inverse factors)
    /// whenever the block's diagonal or the damping changed. Cheap when nothing changed.
    ///
    /// Errors like [`CurvatureBlock::damped_eigenvalues`] (no basis yet, invalid λ, a damped
    /// entry that is not positive).
    pub fn sync(&mut self, block: &CurvatureBlock, damping: &Damping) -> Result<()> {
        let revision = block.revision();
        if matches!(&self.prepared, Some(p) if p.revision == revision && p.damping == *damping) {
            return Ok(());
        }
        self.sync_basis(block);
        let reuse = self.prepared.take().map(|p| p.damped).unwrap_or_default();
        let damped = damped_rows(block, damping, reuse)?;
        // NOTE: a factored damping inverts as `Ĝ⁻¹ ⊗ Â⁻¹`, so a low-rank gradient needs no
        // rotation at all: U = (Ĝ⁻¹gᵀ)(āÂ⁻¹).
        let inverses = match (block.damped_factors(damping), self.basis.as_ref()) {
            (Some((du, dv)), Some(basis)) => {
                let cast = |d: &nalgebra::DVector<f64>| -> Vec<F> {
                    d.iter().map(|&x| F::from_f64(x)).collect()
                };
                Some(basis.inverse_factors(&cast(&du), &cast(&dv)))
            }
            _ => None,
        };
        self.prepared = Some(Prepared {
            damping: *damping,
            revision,
            damped,
            inverses,
        });
        Ok(())
    }

    /// Copies `block`'s basis into `F` if it changed since the last copy (the re-scaling step
    /// of the f32 statistics path needs the basis before the step's damping is known).
    pub fn sync_basis(&mut self, block: &CurvatureBlock) {
        if self.basis_revision != Some(block.basis_revision()) {
            self.basis = block.basis().map(FastBasis::new);
            self.basis_revision = Some(block.basis_revision());
        }
    }

    /// `(d_out, d_in')`.
    pub fn dims(&self) -> (usize, usize) {
        (self.d_out, self.d_in_bar)
    }

    /// The damping the last [`sync`](Self::sync) prepared, `None` before the first.
    pub fn damping(&self) -> Option<Damping> {
        self.prepared.as_ref().map(|p| p.damping)
    }

    /// `U = Q_G [(Q_Gᵀ ∇W̄ Q_A) ⊘ damped(D)] Q_Aᵀ` on a row-major `[d_out, d_in']` gradient.
    pub fn precondition(&self, grad: &[F]) -> Result<Vec<F>> {
        const OP: &str = "FastBlock::precondition";
        if grad.len() != self.d_out * self.d_in_bar {
            let got = Shape::new(&[grad.len()])?;
            return Err(self.shape_error(OP, "gradient length differs from the block's", got));
        }
        let (basis, prepared) = self.ready(OP)?;
        Ok(basis.precondition(grad, &prepared.damped))
    }

    /// The same update for a gradient in its low-rank form `∇W̄ = gᵀ ā` (`a`: `[rows, d_in']`,
    /// `g`: `[rows, d_out]`, row-major), without forming `∇W̄`: through the inverse damped
    /// factors when the damping is factored, else rotated in from the rows.
    pub fn precondition_low_rank(&self, a: &[F], g: &[F], rows: usize) -> Result<Vec<F>> {
        const OP: &str = "FastBlock::precondition_low_rank";
        if a.len() != rows * self.d_in_bar || g.len() != rows * self.d_out {
            let got = Shape::new(&[rows, a.len() / rows.max(1), g.len() / rows.max(1)])?;
            return Err(self.shape_error(OP, "rows of ā and g differ from the block's", got));
        }
        let (basis, prepared) = self.ready(OP)?;
        Ok(match &prepared.inverses {
            Some((inv_g, inv_a)) => basis.precondition_kronecker_low_rank(a, g, rows, inv_g, inv_a),
            None => basis.precondition_low_rank(a, g, rows, &prepared.damped),
        })
    }

    /// `Ũ = M ⊘ damped(D)` for a gradient `M` already in the eigenbasis, row-major
    /// `[d_out, d_in']`: the update of a layer stored in its basis (`ops/eigen_dense.rs`), whose
    /// tape gradient is `M = Q_Gᵀ ∇W̄ Q_A`, so that `U = Q_G Ũ Q_Aᵀ` is never formed.
    pub fn precondition_in_basis(&self, m: &[F]) -> Result<Vec<F>> {
        const OP: &str = "FastBlock::precondition_in_basis";
        if m.len() != self.d_out * self.d_in_bar {
            let got = Shape::new(&[m.len()])?;
            return Err(self.shape_error(OP, "gradient length differs from the block's", got));
        }
        let (_, prepared) = self.ready(OP)?;
        Ok(m.iter()
            .zip(&prepared.damped)
            .map(|(&m, &d)| m / d)
            .collect())
    }

    /// The damped diagonal `D + λ`, row-major `[d_out, d_in']`, that
    /// [`precondition_in_basis`](Self::precondition_in_basis) divides by: for an update fused
    /// with the optimizer's step (`optim/natural/update.rs`).
    pub fn damped_in_basis(&self) -> Result<&[F]> {
        let (_, prepared) = self.ready("FastBlock::damped_in_basis")?;
        Ok(&prepared.damped)
    }

    /// The basis in `F`, `None` before the block's first refresh.
    pub fn basis(&self) -> Option<&FastBasis<F>> {
        self.basis.as_ref()
    }

    /// The block's basis revision the `F` basis was copied at (see
    /// [`CurvatureBlock::basis_revision`]).
    pub fn basis_revision(&self) -> Option<u64> {
        self.basis_revision
    }

    /// True when the low-rank form with `rows` rows is the cheaper way in (after a refresh).
    pub fn low_rank_pays(&self, rows: usize) -> bool {
        self.basis.as_ref().is_some_and(|b| b.low_rank_pays(rows))
    }

    fn ready(&self, op: &'static str) -> Result<(&FastBasis<F>, &Prepared<F>)> {
        match (&self.basis, &self.prepared) {
            (Some(basis), Some(prepared)) => Ok((basis, prepared)),
            _ => {
                let msg = format!(
                    "layer {}: sync() after the block's first refresh runs before precondition",
                    self.name
                );
                Err(Error::invalid(op, msg))
            }
        }
    }

    fn shape_error(&self, op: &'static str, why: &'static str, got: Shape) -> Error {
        super::block::block_shape_error(op, why, (self.d_out, self.d_in_bar), got)
    }
}
