//! Build script: one cfg for the test suite, nothing for the library's code.
//!
//! `tekfac_real_data` is set when `TEKFAC_DATA_DIR` names a folder at build time. The tests that
//! need the real MNIST / Fashion-MNIST files carry
//! `#[cfg_attr(not(tekfac_real_data), ignore = "…")]`: without the data, `cargo test` lists
//! them as `ignored` with the reason, instead of reporting `ok` for a test that did not run.
//! CI sets the variable, so there they all run (and `tests/dataset_real.rs` fails a CI build
//! made without it).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tekfac_real_data)");
    println!("cargo::rerun-if-env-changed=TEKFAC_DATA_DIR");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("TEKFAC_DATA_DIR").is_some_and(|d| !d.is_empty()) {
        println!("cargo::rustc-cfg=tekfac_real_data");
    }
}
