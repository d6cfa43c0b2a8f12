//! The only call site of matrixmultiply: `C = α·op(A)·op(B) + β·C` with strides.
//!
//! `op(X)` is `X` or `Xᵀ`; a transpose is expressed by swapping the row and column strides, so no
//! copy is ever made.
//!
//! Threads: matrixmultiply runs single-threaded (its `threading` feature is off), and
//! [`in_panels`] cuts a large product into one panel of `C` per rayon thread, each a
//! single-threaded matrixmultiply call. So the whole process has one thread pool, rayon's: a
//! product started from a rayon task (a layer's per-example products, a curvature block) never
//! competes with a second pool, and no thread spins in `sched_yield` waiting for a partner.
//! Panels are cut at multiples of 16 rows or columns, which keeps every element's arithmetic
//! exactly that of one unsplit call: results do not depend on the number of threads.

use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// One product `C ← α·A·B + β·C` on raw strided buffers, as matrixmultiply takes it: `A` is
/// `m × k`, `B` is `k × n`, `C` is `m × n`, each with a row stride `rs*` and a column stride
/// `cs*` (in elements).
#[derive(Clone, Copy)]
pub(crate) struct RawProduct<F> {
    pub(crate) m: usize,
    pub(crate) k: usize,
    pub(crate) n: usize,
    pub(crate) alpha: F,
    pub(crate) a: *const F,
    pub(crate) rsa: isize,
    pub(crate) csa: isize,
    pub(crate) b: *const F,
    pub(crate) rsb: isize,
    pub(crate) csb: isize,
    pub(crate) beta: F,
    pub(crate) c: *mut F,
    pub(crate) rsc: isize,
    pub(crate) csc: isize,
}

// SAFETY: a `RawProduct` is built only inside `Float::gemm`, whose caller guarantees that the
// buffers are valid for the whole call; `in_panels` hands each thread a disjoint block of `C`.
unsafe impl<F: Send> Send for RawProduct<F> {}
// SAFETY: as above; the shared operands `A` and `B` are only read.
unsafe impl<F: Sync> Sync for RawProduct<F> {}

impl<F> RawProduct<F> {
    /// Columns `start..start + width` of `B` and `C`.
    ///
    /// # Safety
    /// `start + width ≤ n`.
    unsafe fn columns(self, start: usize, width: usize) -> Self {
        // SAFETY: the columns lie inside `B` and `C` (caller's contract).
        unsafe {
            RawProduct {
                n: width,
                b: self.b.offset(start as isize * self.csb),
                c: self.c.offset(start as isize * self.csc),
                ..self
            }
        }
    }

    /// Rows `start..start + height` of `A` and `C`.
    ///
    /// # Safety
    /// `start + height ≤ m`.
    unsafe fn rows(self, start: usize, height: usize) -> Self {
        // SAFETY: the rows lie inside `A` and `C` (caller's contract).
        unsafe {
            RawProduct {
                m: height,
                a: self.a.offset(start as isize * self.rsa),
                c: self.c.offset(start as isize * self.rsc),
                ..self
            }
        }
    }
}

/// Multiply-adds below which a product stays on the calling thread: `2²⁰` take ≈ 20 µs on one
/// core, against a few µs to hand a panel to another thread.
const PAR_MIN_MACS: usize = 1 << 20;

/// Panel edge granularity: a multiple of every matrixmultiply register tile (4 to 16 rows or
/// columns; its row blocks of 64 are multiples of the tile too). So every tile of a panel sits
/// exactly where it sits in the unsplit product, with the same full or partial shape, and the
/// `k` blocking depends on `k` alone: each element of `C` is computed by the same operations in
/// the same order whatever the split. (Finer than 64, so that two panels of 784 columns are
/// 400 + 384 rather than 448 + 336.)
const PANEL_ALIGN: usize = 16;

/// Runs `kernel`, one single-threaded matrixmultiply call, on the whole product `p`, or, when
/// `p` is large, on one panel of `C` per rayon thread. Panels split the longer of `m` and `n`,
/// so the operand that every panel packs again is the smaller one (`A` when splitting columns,
/// `B` when splitting rows).
///
/// # Safety
/// `p` must describe valid, non-aliasing matrices (the contract of [`Float::gemm`]).
pub(crate) unsafe fn in_panels<F: Float>(p: RawProduct<F>, kernel: impl Fn(RawProduct<F>) + Sync) {
    let by_columns = p.n >= p.m;
    let len = if by_columns { p.n } else { p.m };
    let macs = p.m.saturating_mul(p.k).saturating_mul(p.n);
    let panels = rayon::current_num_threads()
        .min(len / PANEL_ALIGN)
        .min(macs / PAR_MIN_MACS);
    if panels < 2 {
        return kernel(p);
    }
    let width = len.div_ceil(panels).next_multiple_of(PANEL_ALIGN);
    (0..len.div_ceil(width)).into_par_iter().for_each(|i| {
        let (start, w) = (i * width, width.min(len - i * width));
        // SAFETY: `start + w ≤ len`; panels are disjoint blocks of `C`.
        let panel = unsafe {
            if by_columns {
                p.columns(start, w)
            } else {
                p.rows(start, w)
            }
        };
        kernel(panel)
    });
}

/// A row-major matrix operand: data, rows, cols, and whether to use its transpose.
#[derive(Clone, Copy)]
pub struct MatRef<'a, F> {
    /// Row-major elements, `rows * cols` of them.
    pub data: &'a [F],
    /// Stored rows.
    pub rows: usize,
    /// Stored columns.
    pub cols: usize,
    /// Use the transpose of the stored matrix.
    pub t: bool,
}

impl<'a, F: Float> MatRef<'a, F> {
    /// Wraps a row-major buffer.
    pub fn new(data: &'a [F], rows: usize, cols: usize, t: bool) -> Self {
        assert_eq!(
            data.len(),
            rows * cols,
            "MatRef: buffer length must equal rows * cols"
        );
        MatRef {
            data,
            rows,
            cols,
            t,
        }
    }

    /// Rows and columns of `op(X)`.
    pub fn op_dims(&self) -> (usize, usize) {
        if self.t {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }

    /// Row and column strides of `op(X)`.
    fn strides(&self) -> (isize, isize) {
        if self.t {
            (1, self.cols as isize)
        } else {
            (self.cols as isize, 1)
        }
    }
}

/// `c ← α·op(a)·op(b) + β·c`, where `c` is row-major `m × n`.
///
/// # Panics
/// When the inner dimensions or `c`'s length do not match (callers check shapes first and
/// return a `ShapeMismatch`; reaching this panic is a bug).
pub fn gemm_into<F: Float>(alpha: F, a: MatRef<'_, F>, b: MatRef<'_, F>, beta: F, c: &mut [F]) {
    let (m, n) = product_dims(&a, &b);
    assert_eq!(c.len(), m * n, "gemm: output buffer must be m * n");
    // SAFETY: `c` is an exclusive borrow of exactly `m·n` initialised elements.
    unsafe { gemm_ptr(alpha, a, b, beta, c.as_mut_ptr()) }
}

/// `α·op(a)·op(b)` in a new row-major `m × n` buffer that the product writes once: no zero fill
/// beforehand (a `memset` of the whole output, and the page faults of touching it first).
///
/// # Panics
/// When the inner dimensions do not match (callers check shapes first).
pub fn gemm_new<F: Float>(alpha: F, a: MatRef<'_, F>, b: MatRef<'_, F>) -> Vec<F> {
    let (m, n) = product_dims(&a, &b);
    // SAFETY: `gemm_uninit` writes every element of its output.
    unsafe { super::written_by(m * n, |c| gemm_uninit(alpha, a, b, c)) }
}

/// `c ← α·op(a)·op(b)` into a row-major `m × n` buffer that need not be initialised; every
/// element is written.
///
/// # Panics
/// When the inner dimensions or `c`'s length do not match.
pub(crate) fn gemm_uninit<F: Float>(
    alpha: F,
    a: MatRef<'_, F>,
    b: MatRef<'_, F>,
    c: &mut [MaybeUninit<F>],
) {
    let (m, n) = product_dims(&a, &b);
    assert_eq!(c.len(), m * n, "gemm: output buffer must be m * n");
    // SAFETY: with β = 0 matrixmultiply writes every element of C and never reads it (its
    // documented contract: "if β is zero, then C does not need to be initialized"); `gemm_ptr`
    // zero-fills C itself when `k = 0`. `c` is an exclusive borrow of `m·n` elements.
    unsafe { gemm_ptr(alpha, a, b, F::ZERO, c.as_mut_ptr().cast()) }
}

/// `(m, n)` of `op(a)·op(b)`, asserting that the inner dimensions agree.
fn product_dims<F: Float>(a: &MatRef<'_, F>, b: &MatRef<'_, F>) -> (usize, usize) {
    let (m, k) = a.op_dims();
    let (k2, n) = b.op_dims();
    assert_eq!(k, k2, "gemm: inner dimensions must agree");
    (m, n)
}

/// `c ← α·op(a)·op(b) + β·c` into a row-major `m × n` buffer at `c`.
///
/// # Safety
/// `c` must be valid for writes of `m·n` elements and not overlap `a` or `b`; its elements must
/// be initialised unless `β = 0`.
unsafe fn gemm_ptr<F: Float>(alpha: F, a: MatRef<'_, F>, b: MatRef<'_, F>, beta: F, c: *mut F) {
    let (m, k) = a.op_dims();
    let n = b.op_dims().1;
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // NOTE: matrixmultiply with k = 0 still scales C by β; do it here to be explicit (and
        // so that β = 0 writes zeros without reading C).
        for i in 0..m * n {
            // SAFETY: `i < m·n` (caller's contract).
            unsafe {
                let x = c.add(i);
                x.write(if beta == F::ZERO {
                    F::ZERO
                } else {
                    beta * x.read()
                });
            }
        }
        return;
    }
    let (rsa, csa) = a.strides();
    let (rsb, csb) = b.strides();
    // SAFETY: MatRef::new guarantees that a and b describe valid m×k and k×n matrices with
    // these strides; the caller guarantees c.
    unsafe {
        F::gemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            rsa,
            csa,
            b.data.as_ptr(),
            rsb,
            csb,
            beta,
            c,
            n as isize,
            1,
        );
    }
}

/// `op(a)·op(b)` for rank-2 tensors, with a clear error on mismatched inner dimensions.
///
/// ```
/// use tekfac::Tensor;
/// use tekfac::kernels::gemm::matmul;
///
/// let a = Tensor::<f32>::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
/// let ata = matmul(&a, true, &a, false)?; // aᵀ·a, [3, 3]
/// assert_eq!(ata.dims(), &[3, 3]);
/// assert_eq!(ata.data()[0], 1.0 * 1.0 + 4.0 * 4.0);
/// # Ok::<(), tekfac::Error>(())
/// ```
pub fn matmul<F: Float>(a: &Tensor<F>, ta: bool, b: &Tensor<F>, tb: bool) -> Result<Tensor<F>> {
    let (ar, ac) = a.shape().dims2("matmul")?;
    let (br, bc) = b.shape().dims2("matmul")?;
    let a = MatRef::new(a.data(), ar, ac, ta);
    let bm = MatRef::new(b.data(), br, bc, tb);
    let (m, k) = a.op_dims();
    let (k2, n) = bm.op_dims();
    if k != k2 {
        let left = crate::tensor::Shape::new(&[m, k])?;
        let right = crate::tensor::Shape::new(&[k2, n])?;
        return Err(Error::ShapeMismatch {
            op: "matmul",
            why: "inner dims differ",
            left,
            right,
        });
    }
    Tensor::from_vec(gemm_new(F::ONE, a, bm), &[m, n])
}

/// `c ← α·op(a[:, a_cols])·op(b[:, b_cols]) + β·c`: the same product on column ranges of the
/// stored row-major matrices, read in place through their row stride (no copy). A gram `XᵀX`
/// split into column panels multiplies only its upper block triangle this way.
///
/// # Panics
/// When a range leaves its matrix, or the inner dimensions or `c`'s length do not match
/// (callers check shapes first; reaching this panic is a bug).
pub fn gemm_columns_into<F: Float>(
    alpha: F,
    a: MatRef<'_, F>,
    a_cols: std::ops::Range<usize>,
    b: MatRef<'_, F>,
    b_cols: std::ops::Range<usize>,
    beta: F,
    c: &mut [F],
) {
    assert!(
        a_cols.end <= a.cols && b_cols.end <= b.cols && !a_cols.is_empty() && !b_cols.is_empty(),
        "gemm_columns_into: column ranges must be non-empty and inside their matrices"
    );
    let panel = |x: &MatRef<'_, F>, cols: &std::ops::Range<usize>| {
        let width = cols.end - cols.start;
        let (rows, cols_of_op) = if x.t {
            (width, x.rows)
        } else {
            (x.rows, width)
        };
        let (rs, cs) = x.strides();
        (rows, cols_of_op, rs, cs)
    };
    let (m, k, rsa, csa) = panel(&a, &a_cols);
    let (k2, n, rsb, csb) = panel(&b, &b_cols);
    assert_eq!(k, k2, "gemm_columns_into: inner dimensions must agree");
    assert_eq!(
        c.len(),
        m * n,
        "gemm_columns_into: output buffer must be m * n"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.iter_mut().for_each(|x| *x = beta * *x);
        return;
    }
    // SAFETY: a column range `c0..c1` of a row-major `rows × cols` buffer starts at `data[c0]`
    // and reads `data[r·cols + c0 + j]` for `r < rows`, `j < c1 − c0`: inside the buffer
    // because `c1 ≤ cols` (asserted) and `data.len() = rows·cols` (MatRef::new); the strides
    // are those of the whole matrix. `c` is a distinct `m × n` &mut borrow.
    unsafe {
        F::gemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr().add(a_cols.start),
            rsa,
            csa,
            b.data.as_ptr().add(b_cols.start),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// A row-major block inside a larger buffer: `rows × cols` elements starting at `offset`, with
/// consecutive rows `ld` elements apart (the leading dimension); `t` uses its transpose. Blocked
/// factorisations (`kernels::cholesky`) multiply such sub-blocks in place.
#[derive(Clone, Copy)]
pub struct Strided<'a, F> {
    /// The whole buffer.
    pub data: &'a [F],
    /// Index of the block's first element.
    pub offset: usize,
    /// Stored rows of the block.
    pub rows: usize,
    /// Stored columns of the block.
    pub cols: usize,
    /// Distance between consecutive rows, `≥ cols`.
    pub ld: usize,
    /// Use the transpose of the stored block.
    pub t: bool,
}

impl<'a, F: Float> Strided<'a, F> {
    /// Wraps a block of `data`.
    ///
    /// # Panics
    /// When the block does not lie inside `data` or `ld < cols`.
    pub fn new(data: &'a [F], offset: usize, rows: usize, cols: usize, ld: usize, t: bool) -> Self {
        assert!(
            block_fits(data.len(), offset, rows, cols, ld),
            "Strided: block must lie inside the buffer with ld >= cols"
        );
        Strided {
            data,
            offset,
            rows,
            cols,
            ld,
            t,
        }
    }

    /// A whole contiguous row-major `rows × cols` matrix.
    pub fn whole(data: &'a [F], rows: usize, cols: usize, t: bool) -> Self {
        Self::new(data, 0, rows, cols, cols, t)
    }

    fn op_dims(&self) -> (usize, usize) {
        if self.t {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }

    fn strides(&self) -> (isize, isize) {
        if self.t {
            (1, self.ld as isize)
        } else {
            (self.ld as isize, 1)
        }
    }
}

/// True when a `rows × cols` block from `offset` with row stride `ld` lies inside `len` elements.
fn block_fits(len: usize, offset: usize, rows: usize, cols: usize, ld: usize) -> bool {
    ld >= cols && (rows == 0 || cols == 0 || offset + (rows - 1) * ld + cols <= len)
}

/// `c_block ← α·op(a)·op(b) + β·c_block`, where `c_block` is the row-major `m × n` block of `c`
/// that starts at `c_offset` with rows `c_ld` apart.
///
/// # Panics
/// When the inner dimensions disagree or the output block does not lie inside `c`.
pub fn gemm_strided_into<F: Float>(
    alpha: F,
    a: Strided<'_, F>,
    b: Strided<'_, F>,
    beta: F,
    c: &mut [F],
    c_offset: usize,
    c_ld: usize,
) {
    let (m, n) = strided_dims(&a, &b);
    assert!(
        block_fits(c.len(), c_offset, m, n, c_ld),
        "gemm_strided: output block must lie inside c with c_ld >= n"
    );
    // SAFETY: the assert above puts the whole output block inside `c`, an exclusive borrow of
    // initialised elements.
    unsafe { gemm_strided_ptr(alpha, a, b, beta, c.as_mut_ptr().add(c_offset), c_ld) }
}

/// `α·op(a)·op(b)` of two strided blocks in a new row-major `m × n` buffer that the product
/// writes once (no zero fill beforehand, as [`gemm_new`]).
///
/// # Panics
/// When the inner dimensions disagree.
pub fn gemm_strided_new<F: Float>(alpha: F, a: Strided<'_, F>, b: Strided<'_, F>) -> Vec<F> {
    let (m, n) = strided_dims(&a, &b);
    // SAFETY: with β = 0 `gemm_strided_ptr` writes every element of the `m × n` block (row
    // stride `n`) and reads none.
    unsafe {
        super::written_by(m * n, |c| {
            gemm_strided_ptr(alpha, a, b, F::ZERO, c.as_mut_ptr().cast(), n)
        })
    }
}

/// `(m, n)` of `op(a)·op(b)` for strided blocks, asserting that the inner dimensions agree.
fn strided_dims<F: Float>(a: &Strided<'_, F>, b: &Strided<'_, F>) -> (usize, usize) {
    let (m, k) = a.op_dims();
    let (k2, n) = b.op_dims();
    assert_eq!(k, k2, "gemm_strided: inner dimensions must agree");
    (m, n)
}

/// `c_block ← α·op(a)·op(b) + β·c_block` for the `m × n` block at `c` with rows `c_ld` apart.
///
/// # Safety
/// The block must be valid for writes, not overlap `a` or `b`, and be initialised unless β = 0.
unsafe fn gemm_strided_ptr<F: Float>(
    alpha: F,
    a: Strided<'_, F>,
    b: Strided<'_, F>,
    beta: F,
    c: *mut F,
    c_ld: usize,
) {
    let (m, k) = a.op_dims();
    let n = b.op_dims().1;
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for r in 0..m {
            for j in 0..n {
                // SAFETY: `(r, j)` lies inside the block (caller's contract).
                unsafe {
                    let x = c.add(r * c_ld + j);
                    x.write(if beta == F::ZERO {
                        F::ZERO
                    } else {
                        beta * x.read()
                    });
                }
            }
        }
        return;
    }
    let (rsa, csa) = a.strides();
    let (rsb, csb) = b.strides();
    // SAFETY: `Strided::new` guarantees that every element the strides can reach lies inside
    // its buffer; the caller guarantees the output block.
    unsafe {
        F::gemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr().add(a.offset),
            rsa,
            csa,
            b.data.as_ptr().add(b.offset),
            rsb,
            csb,
            beta,
            c,
            c_ld as isize,
            1,
        );
    }
}
