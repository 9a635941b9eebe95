//! Build script: generates include/lmbff.h from src/ffi (cbindgen), and links libtorch so
//! that CUDA registers and binaries find it at run time.

use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    generate_header(&root);
    name_the_library(&root);
    if std::env::var_os("CARGO_FEATURE_TRAIN").is_some() {
        link_torch();
    }
}

fn generate_header(root: &std::path::Path) {
    let ffi = root.join("src/ffi");
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=LMBFF_WRITE_HEADER");
    // cbindgen follows the `mod` items of src/ffi/mod.rs into its submodules: give it
    // the module root only (each file once; nothing outside the ffi module).
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml is valid");
    let builder = cbindgen::Builder::new().with_config(config).with_src(ffi.join("mod.rs"));
    let header = builder.generate().expect("cbindgen generates the header from src/ffi");
    // Written to OUT_DIR; tests compare it with the committed include/lmbff.h.
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("lmbff.h");
    header.write_to_file(&out);
    if std::env::var_os("LMBFF_WRITE_HEADER").is_some() {
        header.write_to_file(root.join("include/lmbff.h"));
    }
}

/// Gives liblmbff.so the SONAME liblmbff.so.<C ABI version> (on Linux): a host linked
/// against it records that name, so the loader never hands it a library of another C
/// ABI. Beside the built library, liblmbff.so.<version> links to it, so hosts built
/// against the build folder run from there (`make install` installs the file under that
/// name); a link of another version there is removed (it would lead a host linked
/// before an ABI change to the new library). The folder is found by [`artifact_dir`].
fn name_the_library(root: &std::path::Path) {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    println!("cargo:rerun-if-changed=src/ffi/mod.rs");
    let ffi = std::fs::read_to_string(root.join("src/ffi/mod.rs")).expect("src/ffi/mod.rs is readable");
    let abi = ffi
        .lines()
        .find_map(|l| l.trim().strip_prefix("pub const LMBFF_ABI_VERSION: u32 = ")?.strip_suffix(';'))
        .expect("src/ffi/mod.rs declares LMBFF_ABI_VERSION");
    let soname = format!("liblmbff.so.{abi}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    #[cfg(unix)]
    link_soname(&soname);
}

#[cfg(unix)]
fn link_soname(soname: &str) {
    let Some(profile) = artifact_dir() else {
        println!("cargo:warning=no {soname} link made beside liblmbff.so (`cargo metadata` did not say where Cargo puts it): link it there to run hosts from the build folder");
        return;
    };
    let Ok(entries) = std::fs::read_dir(&profile) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let other = name.strip_prefix("liblmbff.so.").is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())) && name != soname;
        if other && std::fs::read_link(entry.path()).is_ok_and(|t| t == std::path::Path::new("liblmbff.so")) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let link = profile.join(soname);
    if std::fs::read_link(&link).ok().as_deref() != Some(std::path::Path::new("liblmbff.so")) {
        let _ = std::fs::remove_file(&link);
        if let Err(e) = std::os::unix::fs::symlink("liblmbff.so", &link) {
            println!("cargo:warning=could not link {} to liblmbff.so: {e}", link.display());
        }
    }
}

/// The folder Cargo puts the built library in: OUT_DIR's profile folder (the one above
/// `build/`, in `<build-dir>/<profile>/build/<package>-<hash>/out`), moved from Cargo's
/// build-dir to its target-dir where `cargo metadata` says the two differ (`build.build-dir`
/// set in a config file or the environment). A build-dir that metadata cannot see (`--config`
/// on the command line, a config file above another working folder) puts the link in the
/// build-dir; with CARGO_BUILD_BUILD_DIR set and metadata not holding OUT_DIR, None.
#[cfg(unix)]
fn artifact_dir() -> Option<PathBuf> {
    let out = PathBuf::from(std::env::var("OUT_DIR").ok()?);
    let profile = out.ancestors().find(|a| a.file_name().is_some_and(|n| n == "build"))?.parent()?.to_path_buf();
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").ok()?).join("Cargo.toml");
    let metadata = std::env::var_os("CARGO").and_then(|cargo| {
        let o = std::process::Command::new(cargo)
            .args(["metadata", "--no-deps", "--offline", "--format-version", "1", "--manifest-path"])
            .arg(&manifest)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok().filter(|_| o.status.success())?;
        let target = PathBuf::from(v["target_directory"].as_str()?);
        let build = v["build_directory"].as_str().map_or_else(|| target.clone(), PathBuf::from);
        Some((target, build))
    });
    match metadata {
        Some((target, build)) if build != target && profile.starts_with(&build) => Some(target.join(profile.strip_prefix(&build).ok()?)),
        // Folders metadata does not see (`--target-dir` on the command line, a build as
        // another workspace's dependency): without a build-dir, OUT_DIR's own profile
        // folder is where the library goes.
        _ if std::env::var_os("CARGO_BUILD_BUILD_DIR").is_none() => Some(profile),
        _ => None,
    }
}

fn link_torch() {
    // `--as-needed` would drop libtorch_cuda (nothing references it by symbol), and CUDA
    // would never register; keep every library given on the command line.
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rerun-if-env-changed=LMBFF_TORCH_LIB");
    if let Some(lib) = std::env::var_os("LMBFF_TORCH_LIB") {
        let lib = PathBuf::from(lib);
        if lib.join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,-L{}", lib.display());
            println!("cargo:rustc-link-arg=-ltorch_cuda");
        }
        // Binaries and tests find libtorch without LD_LIBRARY_PATH; $ORIGIN lets a
        // folder of carried binaries and libraries work elsewhere (the GPU machine).
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN");
    }
}
