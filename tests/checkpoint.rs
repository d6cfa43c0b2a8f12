//! Checkpoint files: round trip, refusal of mismatched or corrupt files, atomic writes.

use tekfac::checkpoint::{load_params, read_dict, save_params};
use tekfac::nn::Linear;
use tekfac::{Error, ParamStore};

fn model(seed: u64, hidden: usize) -> ParamStore<f32> {
    let mut ps = ParamStore::seeded(seed);
    Linear::new(&mut ps, "fc1", 4, hidden, true).unwrap();
    Linear::new(&mut ps, "fc2", hidden, 3, false).unwrap();
    ps
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tekfac-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn weights_round_trip_bit_identically_with_metadata() {
    let dir = tmpdir("roundtrip");
    let path = dir.join("weights.safetensors");
    let src = model(1, 5);
    save_params(&path, &src, &[("step", "42".into())]).unwrap();
    let mut dst = model(2, 5);
    let dict = load_params(&path, &mut dst).unwrap();
    assert_eq!(dict.meta.get("step").map(String::as_str), Some("42"));
    for id in src.ids() {
        assert_eq!(src.get(id).data(), dst.get(id).data(), "{}", src.name(id));
    }
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names.len(),
        1,
        "no temporary file is left behind: {names:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn mismatched_and_corrupt_checkpoints_are_refused() {
    let dir = tmpdir("refuse");
    let path = dir.join("weights.safetensors");
    save_params(&path, &model(1, 5), &[]).unwrap();
    let err = load_params(&path, &mut model(1, 6)).unwrap_err();
    assert!(
        matches!(err, Error::Checkpoint(_)) && err.to_string().contains("shape"),
        "{err}"
    );
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&path, &bytes).unwrap();
    let err = read_dict(&path).unwrap_err();
    assert!(
        err.to_string().contains("not a valid safetensors file"),
        "{err}"
    );
    std::fs::write(&path, b"garbage").unwrap();
    assert!(load_params(&path, &mut model(1, 5)).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}
