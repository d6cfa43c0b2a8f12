//! Random label-preserving transforms of training images: horizontal flip and translation.
//!
//! The two transforms of torchvision that small-image recipes use, with the same meaning:
//! - **flip** — `RandomHorizontalFlip(p = 0.5)`: mirror the image left–right with probability ½.
//!   Label-preserving for clothes (Fashion-MNIST), *not* for digits (a mirrored 3 is no digit).
//! - **shift `s`** — `RandomCrop(size, padding = s)` with zero fill: move the image by
//!   `dy, dx` drawn uniformly from `−s..=s`, filling the uncovered border with 0 (the
//!   background of images in `[0, 1]`).
//!
//! Draws are a function of `(seed, step)` alone: a run is reproducible on any thread count, and a
//! run resumed at step `t` draws exactly what the uninterrupted run drew, so `--resume` stays
//! bit-identical without storing a generator in the checkpoint.

use crate::error::{Error, Result};
use crate::tensor::{Tensor, seeded_rng};
use rand::RngExt;

/// Which transforms to apply to each training image (the default applies none).
///
/// ```
/// use tekfac::dataset::Augment;
/// use tekfac::Tensor;
/// // One 1×3 image; a flip with nothing else reverses the row or leaves it.
/// let mut images = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[1, 1, 1, 3]).unwrap();
/// Augment { flip: true, shift: 0 }.apply(&mut images, 0, 0).unwrap();
/// let row = images.data().to_vec();
/// assert!(row == [1.0, 2.0, 3.0] || row == [3.0, 2.0, 1.0]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Augment {
    /// Mirror left–right with probability ½.
    pub flip: bool,
    /// Largest translation in pixels along each axis (0: none).
    pub shift: usize,
}

/// Mixes the step into the seed; a constant unlike the shuffling one, so the two streams differ.
const STEP_MIX: u64 = 0xD1B5_4A32_D192_ED03;

impl Augment {
    /// True when no transform is enabled (then [`Augment::apply`] leaves images untouched).
    pub fn is_none(&self) -> bool {
        !self.flip && self.shift == 0
    }

    /// Errors when the shift would move a `rows × cols` image entirely out of view.
    pub fn check(&self, rows: usize, cols: usize) -> Result<()> {
        if self.shift >= rows.min(cols) {
            return Err(Error::InvalidArgument {
                op: "augment",
                msg: format!(
                    "a shift of {} pixels would move a {rows}×{cols} image out of view",
                    self.shift
                ),
            });
        }
        Ok(())
    }

    /// Transforms each image of a `[batch, channels, rows, cols]` tensor in place, every
    /// channel of an image alike, with draws from `seeded_rng(seed ⊕ (step+1)·M)`.
    pub fn apply(&self, images: &mut Tensor<f32>, seed: u64, step: u64) -> Result<()> {
        if self.is_none() {
            return Ok(());
        }
        let (n, channels, rows, cols) = images.shape().dims4("augment")?;
        self.check(rows, cols)?;
        let mut rng = seeded_rng(seed ^ (step + 1).wrapping_mul(STEP_MIX));
        let s = self.shift as i64;
        let plane = rows * cols;
        let mut source = vec![0.0f32; plane];
        for image in images.data_mut().chunks_exact_mut(channels * plane).take(n) {
            let flip = self.flip && rng.random_bool(0.5);
            let (dy, dx) = if s > 0 {
                (
                    rng.random_range(-s..=s) as isize,
                    rng.random_range(-s..=s) as isize,
                )
            } else {
                (0, 0)
            };
            for out in image.chunks_exact_mut(plane) {
                source.copy_from_slice(out);
                transform(&source, out, rows, cols, flip, dy, dx);
            }
        }
        Ok(())
    }
}

/// `out(y, x) = src(y + dy, x′ + dx)` with `x′ = cols−1−x` when flipping, 0 outside the image.
fn transform(
    src: &[f32],
    out: &mut [f32],
    rows: usize,
    cols: usize,
    flip: bool,
    dy: isize,
    dx: isize,
) {
    for y in 0..rows {
        let sy = y as isize + dy;
        for x in 0..cols {
            let xm = if flip { cols - 1 - x } else { x } as isize;
            let sx = xm + dx;
            let inside = (0..rows as isize).contains(&sy) && (0..cols as isize).contains(&sx);
            out[y * cols + x] = if inside {
                src[sy as usize * cols + sx as usize]
            } else {
                0.0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` distinct 8×8 images, none left–right symmetric, with a zero border of 2 pixels.
    fn images(n: usize) -> Tensor<f32> {
        let (rows, cols) = (8, 8);
        let mut data = vec![0.0f32; n * rows * cols];
        for i in 0..n {
            for y in 2..rows - 2 {
                for x in 2..cols - 2 {
                    data[(i * rows + y) * cols + x] = (1 + i * 100 + y * 10 + x) as f32;
                }
            }
        }
        Tensor::from_vec(data, &[n, 1, rows, cols]).unwrap()
    }

    #[test]
    fn no_transform_leaves_images_alone() {
        let mut a = images(4);
        Augment::default().apply(&mut a, 3, 9).unwrap();
        assert_eq!(a, images(4));
    }

    #[test]
    fn flip_mirrors_some_images_and_keeps_the_rest() {
        let orig = images(64);
        let mut a = orig.clone();
        Augment {
            flip: true,
            shift: 0,
        }
        .apply(&mut a, 1, 0)
        .unwrap();
        let mut flipped = 0;
        for (o, t) in orig.data().chunks(64).zip(a.data().chunks(64)) {
            let mirrored: Vec<f32> = o
                .chunks(8)
                .flat_map(|row| row.iter().rev().copied())
                .collect();
            if t == mirrored.as_slice() {
                flipped += 1;
            } else {
                assert_eq!(t, o, "an image neither kept nor mirrored");
            }
        }
        // 64 fair coins: fewer than 16 or more than 48 heads has probability < 1e-4.
        assert!((16..=48).contains(&flipped), "{flipped} of 64 flipped");
    }

    #[test]
    fn shift_moves_content_without_losing_it_inside_the_border() {
        let orig = images(32);
        let mut a = orig.clone();
        let aug = Augment {
            flip: false,
            shift: 2,
        };
        aug.apply(&mut a, 5, 7).unwrap();
        let mut moved = 0;
        for (o, t) in orig.data().chunks(64).zip(a.data().chunks(64)) {
            let mut o_vals: Vec<f32> = o.iter().copied().filter(|&v| v != 0.0).collect();
            let mut t_vals: Vec<f32> = t.iter().copied().filter(|&v| v != 0.0).collect();
            o_vals.sort_by(f32::total_cmp);
            t_vals.sort_by(f32::total_cmp);
            assert_eq!(
                o_vals, t_vals,
                "a shift within the zero border keeps every pixel"
            );
            moved += usize::from(o != t);
        }
        assert!(moved > 16, "only {moved} of 32 images moved");
    }

    #[test]
    fn transform_reads_the_shifted_and_mirrored_source_pixel() {
        let src: Vec<f32> = (1..=9).map(|v| v as f32).collect(); // 3×3: rows 1 2 3 / 4 5 6 / 7 8 9
        let mut out = vec![0.0; 9];
        transform(&src, &mut out, 3, 3, false, 1, 0);
        assert_eq!(out, [4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 0.0, 0.0, 0.0]);
        transform(&src, &mut out, 3, 3, false, 0, -1);
        assert_eq!(out, [0.0, 1.0, 2.0, 0.0, 4.0, 5.0, 0.0, 7.0, 8.0]);
        transform(&src, &mut out, 3, 3, true, 0, 0);
        assert_eq!(out, [3.0, 2.0, 1.0, 6.0, 5.0, 4.0, 9.0, 8.0, 7.0]);
    }

    #[test]
    fn draws_depend_on_seed_and_step_only() {
        let aug = Augment {
            flip: true,
            shift: 1,
        };
        let run = |seed, step| {
            let mut a = images(16);
            aug.apply(&mut a, seed, step).unwrap();
            a
        };
        assert_eq!(run(0, 3), run(0, 3));
        assert_ne!(run(0, 3), run(0, 4));
        assert_ne!(run(0, 3), run(1, 3));
    }

    #[test]
    fn bad_shapes_and_shifts_are_errors() {
        let mut flat = Tensor::from_vec(vec![0.0f32; 64], &[1, 64]).unwrap();
        let aug = Augment {
            flip: true,
            shift: 1,
        };
        assert!(matches!(
            aug.apply(&mut flat, 0, 0),
            Err(Error::BadRank { expected: 4, .. })
        ));
        let mut small = images(1);
        let too_far = Augment {
            flip: false,
            shift: 8,
        };
        assert!(matches!(
            too_far.apply(&mut small, 0, 0),
            Err(Error::InvalidArgument { op: "augment", .. })
        ));
    }
}
