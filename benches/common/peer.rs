//! The JAX peer of `../shared/bench/peer` (venv from its `setup.sh`), shared by the benchmarks:
//! its SGD-momentum step time and numpy's LAPACK `eigh`, measured in the same run as ours.

use std::path::Path;
use std::process::Command;

const PYTHON: &str = "/tmp/tekfac-peer-venv/bin/python";

/// The peer venv's Python, if it exists.
fn python() -> Option<&'static str> {
    Path::new(PYTHON).exists().then_some(PYTHON)
}

/// The JSON line of the JAX peer's `bench_jax_train.py --model <model>` with extra arguments;
/// `None` when the peer is not installed or fails.
#[allow(dead_code)] // not used by benches/warm.rs
pub fn jax_run(model: &str, extra: &[&str]) -> Option<serde_json::Value> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/bench/peer/bench_jax_train.py"
    );
    if !Path::new(script).exists() {
        return None;
    }
    let out = Command::new(python()?)
        .arg(script)
        .args(["--model", model])
        .args(extra)
        .output()
        .ok()?;
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()?
        .to_string();
    serde_json::from_str(&line).ok()
}

/// Median milliseconds of the JAX jit SGD-momentum step of `model` (`mlp` or `cnn`), with extra
/// arguments for `bench_jax_train.py`; `None` when the peer is not installed or fails.
#[allow(dead_code)] // not used by benches/warm.rs
pub fn jax_step_ms(model: &str, extra: &[&str]) -> Option<f64> {
    let args: Vec<&str> = ["--epochs", "0"]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    jax_run(model, &args)?["step_ms"]["median"].as_f64()
}

/// Best-of-3 milliseconds of `numpy.linalg.eigh` (LAPACK) on a random `n × n` SPD matrix in f64.
#[allow(dead_code)] // used by benches/optim.rs only
pub fn numpy_eigh_ms(n: usize) -> Option<f64> {
    let code = format!(
        "import numpy as np, time\n\
         r = np.random.default_rng(0).standard_normal(({n}, {n}))\n\
         a = r @ r.T / {n}\n\
         np.linalg.eigh(a)\n\
         best = 1e9\n\
         for _ in range(3):\n    t = time.perf_counter(); np.linalg.eigh(a); best = min(best, time.perf_counter() - t)\n\
         print(best * 1e3)\n"
    );
    let out = Command::new(python()?).args(["-c", &code]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Median milliseconds of 3 `numpy.linalg.eigh` calls (after one warm-up) on the `n × n` f64
/// matrix stored row-major, little-endian, at `path`: LAPACK on the very matrix we decompose,
/// with its BLAS limited to `threads` threads.
#[allow(dead_code)] // used by benches/warm.rs only
pub fn numpy_eigh_file_ms(path: &Path, n: usize, threads: usize) -> Option<f64> {
    let code = format!(
        "import numpy as np, time\n\
         a = np.fromfile({path:?}, dtype='<f8').reshape({n}, {n})\n\
         np.linalg.eigh(a)\n\
         ts = []\n\
         for _ in range(3):\n    t = time.perf_counter(); np.linalg.eigh(a); ts.append(time.perf_counter() - t)\n\
         print(sorted(ts)[1] * 1e3)\n",
        path = path.to_str()?
    );
    let mut cmd = Command::new(python()?);
    for var in ["OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"] {
        cmd.env(var, threads.to_string());
    }
    let out = cmd.args(["-c", &code]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}
