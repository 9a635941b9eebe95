//! The committed C header is what cbindgen generates from src/ffi (regenerate with
//! `LMBFF_WRITE_HEADER=1 cargo build --release`).

#[test]
fn committed_header_is_current() {
    let generated = std::fs::read_to_string(concat!(env!("OUT_DIR"), "/lmbff.h")).unwrap();
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/lmbff.h")).unwrap();
    assert!(
        generated == committed,
        "include/lmbff.h is stale: run `LMBFF_WRITE_HEADER=1 cargo build --release` and commit it"
    );
}
