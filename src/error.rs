//! One error type for the whole crate and its `Result` alias.
//!
//! Every variant carries enough context (op name, shapes, file, layer) for a message such as
//! `matmul: inner dims differ, left [4, 3], right [5, 2]` to say what went wrong without a
//! backtrace. Anything the caller controls returns `Err`; internal invariants use `assert!`.

use crate::tensor::Shape;
use std::fmt;

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in tekfac.
///
/// Messages name the op and the shapes, so they read without a backtrace:
///
/// ```
/// use tekfac::{Error, Tensor};
///
/// let a = Tensor::<f32>::zeros(&[4, 3]);
/// let err = a.matmul(&Tensor::zeros(&[5, 2]), false, false).unwrap_err();
/// assert!(matches!(err, Error::ShapeMismatch { op: "matmul", .. }));
/// assert_eq!(err.to_string(), "matmul: inner dims differ, left [4, 3], right [5, 2]");
/// ```
#[derive(Debug)]
pub enum Error {
    /// Two operands have incompatible shapes.
    ShapeMismatch {
        /// The op that refused them.
        op: &'static str,
        /// What was wrong, e.g. "inner dims differ".
        why: &'static str,
        /// Left operand's shape.
        left: Shape,
        /// Right operand's shape.
        right: Shape,
    },
    /// A tensor has the wrong number of dimensions.
    BadRank {
        /// The op that refused it.
        op: &'static str,
        /// Expected rank.
        expected: usize,
        /// The shape it got.
        got: Shape,
    },
    /// A bad argument that is not a shape (label out of range, empty batch, ...).
    InvalidArgument {
        /// The op or function that refused it.
        op: &'static str,
        /// Human-readable explanation.
        msg: String,
    },
    /// A backward sweep was asked of something the tape cannot differentiate.
    Autograd(String),
    /// A non-finite value (NaN or ±Inf) where training needs finite numbers.
    NonFinite {
        /// Where it was found, e.g. "loss" or "gradient of fc1.weight".
        what: String,
        /// Training step, when known.
        step: Option<u64>,
    },
    /// An eigendecomposition failed or met a non-finite factor.
    EigenFailed {
        /// The layer's name.
        layer: String,
    },
    /// A data file is missing, malformed or fails its checksum.
    Data(String),
    /// A checkpoint or configuration problem.
    Checkpoint(String),
    /// An I/O error, with the path it concerns.
    Io {
        /// The file or directory involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            msg: msg.into(),
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ShapeMismatch {
                op,
                why,
                left,
                right,
            } => {
                write!(f, "{op}: {why}, left {left}, right {right}")
            }
            Error::BadRank { op, expected, got } => {
                write!(
                    f,
                    "{op}: expected a rank-{expected} tensor, got shape {got}"
                )
            }
            Error::InvalidArgument { op, msg } => write!(f, "{op}: {msg}"),
            Error::Autograd(msg) => write!(f, "autograd: {msg}"),
            Error::NonFinite {
                what,
                step: Some(s),
            } => {
                write!(f, "non-finite value in {what} at step {s}")
            }
            Error::NonFinite { what, step: None } => write!(f, "non-finite value in {what}"),
            Error::EigenFailed { layer } => {
                write!(f, "eigendecomposition failed for layer {layer}")
            }
            Error::Data(msg) => write!(f, "data: {msg}"),
            Error::Checkpoint(msg) => write!(f, "checkpoint: {msg}"),
            Error::Io { path, source } => write!(f, "{path}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
