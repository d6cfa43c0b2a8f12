//! Warm-started refinement of one symmetric factor's eigenbasis, at GEMM speed (issue 16,
//! lever 2). The factors are moving averages and change slowly, so the previous basis `Q`
//! nearly diagonalises the new factor `F` (`[n, n]`). Each iteration rotates the `h` leading
//! columns (largest Rayleigh quotients, the *head* `H`) by one Jacobi-type step and completes
//! them with the closest orthonormal basis of the rest (the *tail* `T`):
//!
//! ```text
//! Y = F Q,  d = diag(QᵀY),  B_H = Q_Hᵀ Y                      Rayleigh quotients, head rows of QᵀFQ
//! τ_ij = (d_j − d_i) / (2 b_ij),  t_ij = sign(τ_ij) / (|τ_ij| + √(1 + τ_ij²))     i ∈ H, all j
//! ρ_i² = ‖y_i‖² − d_i² − b_ij²,  s_ij = |d_i − d_j| / (|d_i − d_j| + c (ρ_i + ρ_j)),  c = 0.1
//! Z_H = Q_H + Q K_H,  (K_H)_{ji} = −s_ij t_ij                  first-order corrected head vectors
//! Z_Hᵀ Z_H = L Lᵀ,  Q'_H = Z_H L⁻ᵀ                            Cholesky-QR of the head
//! C = Q'_Hᵀ Q_T,  P = Q_T − Q'_H C,  Q'_T = P (PᵀP)^(−1/2)     tail: Löwdin-orthonormal complement,
//!                 (PᵀP)^(−1/2) = I + Cᵀ g(CCᵀ) C,  g(s) = ((1 − s)^(−1/2) − 1) / s
//! Q ← [Q'_H | Q'_T],  Y ← [F Q'_H | F P + (F P Cᵀ) S C],  F P = Y_T − (F Q'_H) C,  d = diag(QᵀY)
//! off(Q) = ‖offdiag(QᵀFQ)‖_F / ‖F‖_F = √(‖F‖²_F − ‖d‖²) / ‖F‖_F           (Q orthonormal)
//! ```
//!
//! `t_ij` is the tangent of the Jacobi rotation that would zero `b_ij` alone: `≈ b_ij/(d_i − d_j)`
//! (first-order perturbation theory) for well-separated eigenvalues, at most 1 (π/4) where they
//! are close. Normalising `Z_H` turns an isolated pair's correction into that exact rotation.
//! All pairs move at once, so a pair that couples to other columns (`ρ`, from `‖y_i‖ = ‖B e_i‖`)
//! more strongly than its eigenvalues are separated is damped by `s_ij`: inside an exactly
//! repeated eigenvalue, whose vectors only need to stay in their eigenspace, `s_ij → 0`. With
//! it convergence is quadratic near a solution, repeated eigenvalues included (as in Ogita &
//! Aishima 2018, *Iterative refinement for symmetric eigenvalue decomposition*, whose rule skips
//! such pairs outright), and about 2–4× per iteration on the MLP's dense factor spectra, where
//! skipping them stalls (damping constant `c` and alternatives measured in
//! `docs/PERFORMANCE.md`).
//!
//! **Why only a head.** The tail holds the small eigenvalues; its off-diagonal block is left as
//! it is (it is bounded by the tail's Rayleigh quotients, `|b_ij| ≤ √(d_i d_j)` for a PSD
//! factor) and only re-orthogonalised against the rotated head. On the MLP's factors a head of
//! `n/8` columns reaches the same `off(Q)` as rotating all pairs, at a fraction of the cost:
//! one `n³` GEMM (`Y = FQ` of the previous basis) plus `O(n²h)` work per iteration, instead of
//! five (measured in `docs/PERFORMANCE.md`). `Y` of the new basis needs no second `n³` product:
//! `Q'_T` is linear in `P = Q_T − Q'_H C`, so `F Q'_T` follows from the columns `Y_T = F Q_T`
//! already formed and `F Q'_H` (`n² h`). The tail–tail block's share of the off-diagonal mass is known
//! exactly from `B_H`, `d` and `‖F‖` ([`tail_share`]); when it exceeds half (a repeated
//! eigenvalue cut by the head boundary, or a late iteration that has already fixed the head),
//! the iteration rotates every column. So do factors of at most [`FULL_ROTATION_UP_TO`] rows.
//!
//! **Robustness.** Both orthonormalisations act on well-conditioned matrices whatever `F` is:
//! `Z_Hᵀ Z_H = (I + K)ᵀ(I + K)` restricted to the head, `≥ I` for skew `K`; `PᵀP = I − CᵀC`,
//! refused (not inverted) if a singular value of `C` approaches 1. A singular factor (MNIST's
//! always-zero pixels give zero rows and columns), repeated eigenvalues or a zero factor cannot
//! break them. Entries at the products' rounding noise are not rotated (below). The previous
//! basis is checked to be orthonormal first (products with a probe vector, `O(n²)`).
//!
//! **The change of coordinates.** Each iteration is a change of coordinates, `Q' = Q R`, which
//! it keeps in factored form ([`Step`]: `K_H`, `L`, the tail completion); a layer stored in the
//! old basis moves to the new one through the same steps (`change.rs`, [`BasisChange`]), at
//! `O(rows·n·h)` per iteration instead of an `n³` product `R = QᵀQ'`.
//!
//! `off(Q)` from the Rayleigh quotients costs no extra GEMM but cancels below about `1e-7`; below
//! `1e-6` it is recomputed from `B = QᵀY` (one more product), so tight tolerances are honoured.
//! Exactly-zero rows and columns are deflated first (`deflate.rs`): the iteration runs on the
//! live block only.
//!
//! **Steering in f32** ([`Steering::F32`], the default when training in f32). Two kinds of
//! product run here. `Y = F Q`, `B_H = Q_Hᵀ Y`, the correction `Q K_H`, `F Q'_H` and the
//! update of `Y` only *steer*: they decide where the basis turns and measure how far it is from
//! diagonalising `F`. `Z_Hᵀ Z_H`, `C`, `P` and the tail completion make it *orthonormal*. The
//! first kind runs as f32 GEMMs (about 2.3× dgemm's rate here, and four fifths of the
//! multiply-adds of a one-iteration refresh of fc1's factor); the second stays f64, so
//! `‖QᵀQ − I‖` is the f64 path's. Rounding the steering products to f32 perturbs `B` by about
//! `ε₃₂‖F‖_F`, the size of the rounding the f32 statistics already put into `F` itself: each
//! basis vector moves by about `ε₃₂‖F‖/gap` (its distance to the nearest other eigenvalue, as
//! for any perturbation of `F`), and `d` and `off(Q)` are measured to about `1e-6 ‖F‖`, so
//! tolerances below [`F32_STEERING_FROM`] steer in f64. In either precision, entries
//! `|b_ij| ≤ √n·ε·‖F‖_F` (`ε` of the products' precision) are rounding noise and are not
//! rotated. `tests/curvature_warm_steering.rs` pins the f32-steered iteration to the
//! f64-steered one.

use super::change::BasisChange;
use super::deflate::Deflation;
use super::rowmat::RowMatrix;
use crate::kernels::cholesky::{cholesky_lower, solve_right_lower_t};
use crate::tensor::Float;
use nalgebra::{DMatrix, DVector, SymmetricEigen};
use rayon::prelude::*;
use std::fmt;

/// Factors up to this size rotate every column (no tail).
pub const FULL_ROTATION_UP_TO: usize = 64;
/// Above [`FULL_ROTATION_UP_TO`], the head is `n / HEAD_DIVISOR` columns (at least 64).
const HEAD_DIVISOR: usize = 8;
/// Below this `off(Q)` is measured from `B = QᵀFQ` directly (module docs).
const PRECISE_BELOW: f64 = 1e-6;
/// `c` of the damping `s_ij` (module docs): measured best of 0.1, 0.3 and 1 on the MLP's factors.
const CROWDING: f64 = 0.1;
/// Largest `‖Qᵀ(Q v) − v‖ / ‖v‖`, and deviation of a column norm from 1, accepted for the
/// previous basis: `SymmetricEigen` and this module deliver about `1e-14`.
const ORTHONORMAL_PROBE_TOL: f64 = 1e-10;
/// Largest squared singular value of `C = Q'_Hᵀ Q_T` for which the tail is completed.
const TAIL_OVERLAP_LIMIT: f64 = 1.0 - 1e-8;
/// Smallest tolerance refined with [`Steering::F32`]; tighter ones steer in f64, because f32
/// products measure `off(Q)` to about `1e-6` only.
pub const F32_STEERING_FROM: f64 = 1e-4;

/// The precision of the products that steer an iteration (module docs, "Steering in f32").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steering {
    /// Every product in f64.
    F64,
    /// `Y = F Q`, `B_H = Q_Hᵀ Y`, the correction `Q K_H`, `F Q'_H` and the update of `Y` in f32;
    /// the orthonormalisations (`Z_Hᵀ Z_H`, `C`, `P`, the tail completion) in f64. Applies to
    /// tolerances of at least [`F32_STEERING_FROM`].
    F32,
}

/// Why a warm refinement could not run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RefineFailure {
    /// The factor contains NaN or ±Inf.
    NonFinite,
    /// The previous basis is not orthonormal (or not finite).
    NotOrthonormal,
    /// Cholesky-QR of the head met a non-positive pivot.
    Cholesky,
    /// The rotated head nearly contains an old tail vector: no well-conditioned complement.
    TailCollapsed,
}

impl fmt::Display for RefineFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RefineFailure::NonFinite => "non-finite factor",
            RefineFailure::NotOrthonormal => "previous basis not orthonormal",
            RefineFailure::Cholesky => "Cholesky-QR of the rotated head failed",
            RefineFailure::TailCollapsed => "rotated head nearly contains a tail vector",
        })
    }
}

/// A refined basis of one factor.
#[derive(Clone, Debug, PartialEq)]
pub struct Refined {
    /// Orthonormal columns, `[n, n]`: the head by decreasing Rayleigh quotient, then the tail
    /// (the previous order when no iteration ran).
    pub q: DMatrix<f64>,
    /// Rayleigh quotients `diag(QᵀFQ)`, clamped `≥ 0`, in the order of `q`'s columns.
    pub d: DVector<f64>,
    /// `off(Q) = ‖offdiag(QᵀFQ)‖_F / ‖F‖_F` reached (0 for a zero factor).
    pub off_diagonal: f64,
    /// Iterations run.
    pub iterations: usize,
    /// The change of coordinates from `previous` to `q`, `R = previousᵀ q`, as the iterations'
    /// own steps ([`BasisChange`]); `None` when the deflated coordinates of `previous` are not
    /// the signed unit vectors a deflated refresh leaves (then only the dense product gives it).
    pub change: Option<BasisChange>,
}

/// Rotates `previous` towards the eigenvectors of the symmetric `f`: one iteration (module docs),
/// then more while `off(Q) > tolerance`, at most `max_iterations` in all (0: only measure), and
/// returns the last basis with its Rayleigh quotients and `off(Q)`; the caller decides whether
/// it is good enough.
///
/// # Panics
/// When `f` or `previous` is not square of the same size (the caller checks dims).
///
/// ```
/// use nalgebra::{DMatrix, dvector};
/// use tekfac::curvature::{off_diagonal_mass, refine_eigenbasis};
/// // diag(3, 1) seen from a basis rotated by 0.1 rad.
/// let (c, s) = (0.1f64.cos(), 0.1f64.sin());
/// let q = DMatrix::from_row_slice(2, 2, &[c, -s, s, c]);
/// let f = DMatrix::from_diagonal(&dvector![3.0, 1.0]);
/// let refined = refine_eigenbasis(&f, &q, 1e-6, 3).unwrap();
/// assert!(off_diagonal_mass(&f, &refined.q) < 1e-12);
/// assert!((refined.d[0] - 3.0).abs() < 1e-12 && (refined.d[1] - 1.0).abs() < 1e-12);
/// ```
pub fn refine_eigenbasis(
    f: &DMatrix<f64>,
    previous: &DMatrix<f64>,
    tolerance: f64,
    max_iterations: usize,
) -> Result<Refined, RefineFailure> {
    refine_eigenbasis_with(f, previous, tolerance, max_iterations, Steering::F64)
}

/// [`refine_eigenbasis`] with the steering products in the precision `steering` asks for
/// (f64 below [`F32_STEERING_FROM`] whatever it asks).
///
/// # Panics
/// When `f` or `previous` is not square of the same size (the caller checks dims).
pub fn refine_eigenbasis_with(
    f: &DMatrix<f64>,
    previous: &DMatrix<f64>,
    tolerance: f64,
    max_iterations: usize,
    steering: Steering,
) -> Result<Refined, RefineFailure> {
    let stop = Stopping {
        keep: tolerance,
        tolerance,
        min: 1,
        max: max_iterations,
    };
    refine_within(f, previous, stop, steering)
}

/// When a warm refinement stops: the refresh policy's part of
/// [`WarmStart`](super::WarmStart) (`warm.rs`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Stopping {
    /// Largest `off(Q)` of `previous` at which it is kept without any iteration (only its
    /// Rayleigh quotients measured). At most `tolerance`; irrelevant when `min ≥ 1`.
    pub keep: f64,
    /// Once an iteration has run, the iterations stop at `off(Q) ≤ tolerance`.
    pub tolerance: f64,
    /// Iterations run whatever `off(Q)` is.
    pub min: usize,
    /// Iterations at most (0: only measure).
    pub max: usize,
}

impl Stopping {
    /// Whether another iteration runs after `done` of them, at `off(Q) = off`: below `min`
    /// always, at `max` never, else while `off(Q)` exceeds `keep` (none run yet) or
    /// `tolerance` (after the first).
    fn iterates(&self, done: usize, off: f64) -> bool {
        let target = if done == 0 { self.keep } else { self.tolerance };
        done < self.max && (done < self.min || off > target)
    }
}

/// [`refine_eigenbasis_with`] with the refresh policy's stopping rule (`warm.rs`): `previous`
/// kept when it is within `stop.keep` and `stop.min` is 0, else iterated as `stop` says.
pub(super) fn refine_within(
    f: &DMatrix<f64>,
    previous: &DMatrix<f64>,
    stop: Stopping,
    steering: Steering,
) -> Result<Refined, RefineFailure> {
    let n = f.nrows();
    assert!(
        f.is_square() && previous.shape() == (n, n),
        "refine_eigenbasis: f and previous must be square of the same size"
    );
    if f.iter().any(|x| !x.is_finite()) {
        return Err(RefineFailure::NonFinite);
    }
    // NOTE: the precision follows `tolerance` alone: `keep` only decides whether the first
    // iteration runs, and f32 steering measures that first `off(Q)` to about 1e-6 (module
    // docs), far inside the default keep thresholds (0.025 for EKFAC, 0.05 for TEKFAC).
    let refine = match steering {
        Steering::F32 if stop.tolerance >= F32_STEERING_FROM => refine_live::<f32>,
        _ => refine_live::<f64>,
    };
    let deflation = Deflation::of(f);
    if deflation.is_trivial() {
        return refine(f, previous, stop);
    }
    let f_live = deflation.restrict(f);
    let (start, kept) = deflation.restrict_basis(previous);
    let live = refine(&f_live, &start, stop)?;
    let (q, d) = deflation.embed(&live.q, &live.d);
    let change = live.change.and_then(|c| {
        let dead = deflation.dead_columns(previous, &kept)?;
        Some(c.embedded(n, kept, dead))
    });
    Ok(Refined {
        q,
        d,
        change,
        ..live
    })
}

/// [`refine_within`] on a factor without exactly-zero rows (or its live block), with the
/// steering products in `S`.
fn refine_live<S: Float>(
    f: &DMatrix<f64>,
    previous: &DMatrix<f64>,
    stop: Stopping,
) -> Result<Refined, RefineFailure> {
    let mut q = RowMatrix::from_dmatrix(previous);
    if !is_orthonormal(&q) {
        return Err(RefineFailure::NotOrthonormal);
    }
    let f = RowMatrix::symmetric_part(f);
    let norm = f.frobenius();
    if norm == 0.0 {
        // NOTE: every basis diagonalises a zero factor (deflation leaves an empty live block).
        return Ok(Refined {
            q: previous.clone(),
            d: DVector::zeros(previous.ncols()),
            off_diagonal: 0.0,
            iterations: 0,
            change: Some(BasisChange::of_steps(previous.ncols(), Vec::new())),
        });
    }
    let f = f.cast::<S>();
    let mut y = RowMatrix::product(&f, false, &q.cast(), false);
    let (mut d, mut off) = measure(&q, &y, norm);
    let mut steps = Vec::new();
    while stop.iterates(steps.len(), off) {
        let step;
        (q, y, step) = rotate(&f, &q, &y, &d, norm)?;
        steps.push(step);
        (d, off) = measure(&q, &y, norm);
    }
    Ok(Refined {
        q: q.to_dmatrix(),
        d: DVector::from_iterator(d.len(), d.into_iter().map(|x| x.max(0.0))),
        off_diagonal: off,
        iterations: steps.len(),
        change: Some(BasisChange::of_steps(q.cols, steps)),
    })
}

/// `(d, off(Q))` for `Y = F Q`: `off` from the Rayleigh quotients, or from `B = QᵀY` itself
/// (one more product) once it falls below [`PRECISE_BELOW`], where the former cancels.
fn measure<S: Float>(q: &RowMatrix, y: &RowMatrix<S>, norm: f64) -> (Vec<f64>, f64) {
    let d = q.column_dots(y);
    let off = off_of_rayleigh(norm, &d);
    if off >= PRECISE_BELOW {
        return (d, off);
    }
    let b = RowMatrix::product(&q.cast(), true, y, false);
    (d, off_of_matrix(&b))
}

/// `‖offdiag(QᵀFQ)‖_F / ‖QᵀFQ‖_F` by two full products, for any `q` (0 when `QᵀFQ = 0`): the
/// quality of a basis, measured without assuming it orthonormal.
pub fn off_diagonal_mass(f: &DMatrix<f64>, q: &DMatrix<f64>) -> f64 {
    let q = RowMatrix::from_dmatrix(q);
    let f = RowMatrix::symmetric_part(f);
    off_of_matrix(&RowMatrix::product(
        &q,
        true,
        &RowMatrix::product(&f, false, &q, false),
        false,
    ))
}

/// `‖offdiag(B)‖_F / ‖B‖_F` (0 for `B = 0`), summing the off-diagonal squares themselves so
/// that nothing cancels.
fn off_of_matrix<T: Float>(b: &RowMatrix<T>) -> f64 {
    let total = b.frobenius().powi(2);
    let off: f64 = (0..b.rows)
        .flat_map(|i| (0..b.cols).map(move |j| (i, j)))
        .filter(|(i, j)| i != j)
        .map(|(i, j)| b.at(i, j).powi(2))
        .sum();
    if total == 0.0 {
        0.0
    } else {
        (off / total).sqrt()
    }
}

/// The number of head columns an iteration rotates for an `n`-row (live) factor: all of them up
/// to [`FULL_ROTATION_UP_TO`], else `n / 8`, at least 64 (module docs).
pub fn refine_head_columns(n: usize) -> usize {
    if n <= FULL_ROTATION_UP_TO {
        n
    } else {
        (n / HEAD_DIVISOR).max(FULL_ROTATION_UP_TO)
    }
}

/// One iteration (module docs): the rotated head, then the completed tail, as
/// `Q' = [Q'_H | Q'_T]`, with `Y' = F Q'` for the next iteration ([`TailCompletion::apply`]) and
/// the iteration as a [`Step`] (`Q' = Q R` with `R` kept in factored form). The products with
/// `F`, `Y` and `K_H` are formed in `S`, the orthonormalisations in f64.
fn rotate<S: Float>(
    f: &RowMatrix<S>,
    q: &RowMatrix,
    y: &RowMatrix<S>,
    d: &[f64],
    norm: f64,
) -> Result<(RowMatrix, RowMatrix<S>, Step), RefineFailure> {
    let n = q.cols;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| d[j].total_cmp(&d[i]));
    let mut h = refine_head_columns(n);
    let mut q_head = q.columns(&order[..h]);
    let mut b_head = RowMatrix::product(&q_head.cast(), true, y, false);
    if h < n && tail_share(&b_head, d, &order, norm) > 0.5 {
        h = n;
        q_head = q.columns(&order);
        b_head = RowMatrix::product(&q_head.cast(), true, y, false);
    }
    let (head, tail) = order.split_at(h);
    let coupling = coupling_radii(y, d);
    let k = head_correction(&b_head, d, &coupling, head, norm);
    let mut z = q_head;
    z.add_cast(1.0, &RowMatrix::product(&q.cast(), false, &k, false));
    let (rotated, l) = orthonormalise_head(z)?;
    let y_head = RowMatrix::product(f, false, &rotated.cast(), false);
    let mut l_inv_t = RowMatrix::identity(h);
    solve_right_lower_t(&mut l_inv_t.data, h, &l, h);
    let mut step = Step {
        head: head.to_vec(),
        tail: tail.to_vec(),
        k: k.cast::<f64>().into_owned(),
        l_inv_t,
        completion: None,
    };
    if tail.is_empty() {
        return Ok((rotated, y_head, step));
    }
    let (completion, q_tail) = TailCompletion::of(&rotated, q.columns(tail))?;
    // `F Q'_T` without an `n³` product: `Q'_T` is linear in `Q_T` and `Q'_H`, so it is the same
    // completion applied to `Y_T = F Q_T` and `F Q'_H`.
    let y_tail = completion.apply(y.columns(tail), &y_head);
    step.completion = Some(completion);
    Ok((
        RowMatrix::beside(&rotated, &q_tail),
        RowMatrix::beside(&y_head, &y_tail),
        step,
    ))
}

/// One iteration as a change of coordinates, `Q' = Q R`, kept in the factors the iteration
/// formed: `R_H = (E_H + K_H) L⁻ᵀ` (the head columns `E_H` of `I`, corrected and
/// orthonormalised), and the tail completed against it. [`apply`](Self::apply) forms `X R` for
/// any `X` in `O(rows·n·h)`, the same algebra with `X` in place of `Q`; `X = Q` gives `Q'`.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Step {
    /// The head columns of `Q`, by decreasing Rayleigh quotient.
    head: Vec<usize>,
    /// The rest, in the order they are completed.
    tail: Vec<usize>,
    /// `K_H`, `[n, h]`.
    k: RowMatrix,
    /// `L⁻ᵀ` for `L` of `Z_Hᵀ Z_H = L Lᵀ`, `[h, h]`.
    l_inv_t: RowMatrix,
    /// The tail completion (`None` when every column is in the head).
    completion: Option<TailCompletion>,
}

impl Step {
    /// `X R`, `[rows, n]`, with the products in `T`:
    /// `X'_H = (X_H + X K_H) L⁻ᵀ`, `X'_T = X_T + ((X_T Cᵀ − X'_H CCᵀ) S − X'_H) C`.
    pub fn apply<T: Float>(&self, x: &RowMatrix<T>) -> RowMatrix<T> {
        let mut head = x.columns(&self.head);
        head.add_product(1.0, x, false, &self.k.cast::<T>(), false);
        let head = RowMatrix::product(&head, false, &self.l_inv_t.cast::<T>(), false);
        match &self.completion {
            None => head,
            Some(c) => {
                let tail = c.apply(x.columns(&self.tail), &head);
                RowMatrix::beside(&head, &tail)
            }
        }
    }

    /// Multiply-adds of [`apply`](Self::apply) on `rows` rows.
    pub fn multiply_adds(&self, rows: usize) -> f64 {
        let (h, t) = (self.head.len() as f64, self.tail.len() as f64);
        rows as f64 * ((h + t) * h + h * h + 2.0 * t * h + 2.0 * h * h)
    }
}

/// `off_TT / off`: the share of the off-diagonal mass in the tail–tail block, which a head
/// rotation leaves alone. With `B_H` the head rows (`h × n`) of `B = QᵀFQ` and `‖B‖ = ‖F‖`,
/// `‖B_TT‖² = ‖F‖² − 2‖B_H‖² + ‖B_HH‖²` and `off_TT² = ‖B_TT‖² − Σ_{j∈T} d_j²`.
fn tail_share<S: Float>(b_head: &RowMatrix<S>, d: &[f64], order: &[usize], norm: f64) -> f64 {
    let h = b_head.rows;
    let head_rows = b_head.frobenius().powi(2);
    let head_head: f64 = (0..h)
        .flat_map(|r| order[..h].iter().map(move |&c| (r, c)))
        .map(|(r, c)| b_head.at(r, c).powi(2))
        .sum();
    let tail_diagonal: f64 = order[h..].iter().map(|&j| d[j] * d[j]).sum();
    let off_tt = (norm * norm - 2.0 * head_rows + head_head - tail_diagonal).max(0.0);
    let off = (norm * norm - d.iter().map(|x| x * x).sum::<f64>()).max(0.0);
    if off == 0.0 {
        0.0
    } else {
        (off_tt / off).sqrt()
    }
}

/// `r_i² = ‖offdiag row i of B‖² = ‖y_i‖² − d_i²` (because `‖B e_i‖ = ‖Qᵀ y_i‖ = ‖y_i‖`).
fn coupling_radii<S: Float>(y: &RowMatrix<S>, d: &[f64]) -> Vec<f64> {
    y.column_dots(y)
        .iter()
        .zip(d)
        .map(|(yy, di)| (yy - di * di).max(0.0))
        .collect()
}

/// `K_H`, `[n, h]`: column `c` holds `(K_H)_{j c} = −s_ij t_ij` for the head index `i = head[c]`
/// and every row `j ≠ i` (module docs), zero where `b_ij` is rounding noise of the precision
/// `S` it was formed in. `r2` holds `r_i²`.
fn head_correction<S: Float>(
    b_head: &RowMatrix<S>,
    d: &[f64],
    r2: &[f64],
    head: &[usize],
    norm: f64,
) -> RowMatrix<S> {
    let (h, n) = (b_head.rows, b_head.cols);
    let noise = (n as f64).sqrt() * S::MACHINE_EPSILON * norm;
    let mut k = RowMatrix::zeros(n, h);
    k.data.par_chunks_mut(h).enumerate().for_each(|(j, row)| {
        for (c, kjc) in row.iter_mut().enumerate() {
            let (i, b) = (head[c], b_head.at(c, j));
            if i != j && b.abs() > noise {
                let crowding = (r2[i] - b * b).max(0.0).sqrt() + (r2[j] - b * b).max(0.0).sqrt();
                let gap = (d[i] - d[j]).abs();
                let damping = if gap > 0.0 {
                    gap / (gap + CROWDING * crowding)
                } else {
                    0.0
                };
                *kjc = S::from_f64(-damping * jacobi_tangent(d[i], d[j], b));
            }
        }
    });
    k
}

/// `t = tan θ` of the Jacobi rotation zeroing `b` between diagonal entries `di` (row) and `dj`.
fn jacobi_tangent(di: f64, dj: f64, b: f64) -> f64 {
    let tau = (dj - di) / (2.0 * b);
    // NOTE: signum keeps the sign of a zero τ (equal diagonals): θ = ±π/4, t = ±1; for huge
    // |τ| the square root overflows to ∞ and t = 0, as it should.
    tau.signum() / (tau.abs() + (1.0 + tau * tau).sqrt())
}

/// Cholesky-QR: `(Z L⁻ᵀ, L)` with `ZᵀZ = L Lᵀ` (Gram–Schmidt order: the largest `d` first).
fn orthonormalise_head(mut z: RowMatrix) -> Result<(RowMatrix, Vec<f64>), RefineFailure> {
    let gram = RowMatrix::product(&z, true, &z, false);
    let l = cholesky_lower(&gram.data, z.cols).map_err(|_| RefineFailure::Cholesky)?;
    solve_right_lower_t(&mut z.data, z.rows, &l, z.cols);
    Ok((z, l))
}

/// The tail completion of one iteration: `C` and `CCᵀ` of the rotated head and the old tail, and
/// `S = g(CCᵀ)`, applied to the basis ([`TailCompletion::of`]) and to its product with the factor.
#[derive(Clone, Debug, PartialEq)]
struct TailCompletion {
    /// `C = Q'_Hᵀ Q_T`, `[h, n − h]`.
    c: RowMatrix,
    /// `CCᵀ`, `[h, h]`.
    cct: RowMatrix,
    /// `S = g(CCᵀ)`, `[h, h]`.
    s: RowMatrix,
}

impl TailCompletion {
    /// The completion of the old tail `q_tail` against the rotated `head`, and the completed
    /// tail `Q'_T`: the orthonormal basis of the complement of `head` closest to `q_tail`,
    /// `P (PᵀP)^(−1/2) = P + (P Cᵀ) S C` with `P = (I − Q'_H Q'_Hᵀ) Q_T` (module docs).
    fn of(head: &RowMatrix, q_tail: RowMatrix) -> Result<(Self, RowMatrix), RefineFailure> {
        let c = RowMatrix::product(head, true, &q_tail, false);
        let cct = RowMatrix::product(&c, false, &c, true);
        let s = overlap_correction(&cct)?;
        let completion = TailCompletion { c, cct, s };
        let q_tail = completion.apply(q_tail, head);
        Ok((completion, q_tail))
    }

    /// `X_T + ((X_T Cᵀ − X_H CCᵀ) S − X_H) C`, the completion applied to `X = Q` (`X_T = Q_T`,
    /// `X_H = Q'_H`: the completed tail) or to `X = F Q` (its product with the factor): with
    /// `X_P = X_T − X_H C` (`P`, or `F P`), `X_P + (X_P Cᵀ) S C` rearranged so that only three
    /// `n × h × (n − h)` products remain, `X_P Cᵀ = X_T Cᵀ − X_H (CCᵀ)` among them. `T` is the
    /// precision of the products.
    fn apply<T: Float>(&self, mut x_tail: RowMatrix<T>, x_head: &RowMatrix<T>) -> RowMatrix<T> {
        let (c, cct, s) = (self.c.cast::<T>(), self.cct.cast::<T>(), self.s.cast::<T>());
        let mut pc = RowMatrix::product(&x_tail, false, &c, true);
        pc.add_product(-1.0, x_head, false, &cct, false);
        let mut w = RowMatrix::product(&pc, false, &s, false);
        w.add_cast(-1.0, x_head);
        x_tail.add_product(1.0, &w, false, &c, false);
        x_tail
    }
}

/// `g(CCᵀ) = X diag(g(σ²)) Xᵀ` for `CCᵀ = X diag(σ²) Xᵀ`, `g(s) = 1/(√(1−s)(1 + √(1−s)))`
/// (the cancellation-free form of `((1 − s)^(−1/2) − 1)/s`, `g(0) = 1/2`).
fn overlap_correction(cct: &RowMatrix) -> Result<RowMatrix, RefineFailure> {
    let eig = SymmetricEigen::new(RowMatrix::symmetric_part(&cct.to_dmatrix()).to_dmatrix());
    if eig
        .eigenvalues
        .iter()
        .any(|&s| s.is_nan() || s >= TAIL_OVERLAP_LIMIT)
    {
        return Err(RefineFailure::TailCollapsed);
    }
    let g = eig.eigenvalues.map(|s| {
        let r = (1.0 - s.max(0.0)).sqrt();
        1.0 / (r * (1.0 + r))
    });
    let x = &eig.eigenvectors;
    Ok(RowMatrix::from_dmatrix(
        &(x * DMatrix::from_diagonal(&g) * x.transpose()),
    ))
}

/// `√(‖F‖² − ‖d‖²) / ‖F‖`: the off-diagonal mass of an orthonormal basis with Rayleigh
/// quotients `d`, because `‖QᵀFQ‖_F = ‖F‖_F` (0 for a zero factor).
pub(super) fn off_of_rayleigh(norm: f64, d: &[f64]) -> f64 {
    if norm == 0.0 {
        return 0.0;
    }
    let diagonal = d.iter().map(|x| x * x).sum::<f64>();
    ((norm * norm - diagonal).max(0.0)).sqrt() / norm
}

/// [`is_orthonormal`] of a basis in nalgebra's layout (a restored checkpoint's, `state.rs`).
pub(super) fn probe_orthonormal(q: &DMatrix<f64>) -> bool {
    q.is_square() && is_orthonormal(&RowMatrix::from_dmatrix(q))
}

/// True when every column has unit norm and `Qᵀ(Q v) = v` for a fixed probe `v`, both to
/// [`ORTHONORMAL_PROBE_TOL`] (`O(n²)`; false for NaN).
fn is_orthonormal(q: &RowMatrix) -> bool {
    let n = q.cols;
    let v = RowMatrix {
        rows: n,
        cols: 1,
        data: (0..n).map(|i| (0.7 * i as f64 + 0.3).sin()).collect(),
    };
    let back = RowMatrix::product(q, true, &RowMatrix::product(q, false, &v, false), false);
    let err = back
        .data
        .iter()
        .zip(&v.data)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>();
    let norms = q.column_dots(q);
    norms
        .iter()
        .all(|x| (x - 1.0).abs() <= ORTHONORMAL_PROBE_TOL)
        && err.sqrt() <= ORTHONORMAL_PROBE_TOL * v.frobenius()
}
