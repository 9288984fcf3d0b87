//! Downloads of a release over HTTP(S) into `ota/downloads/`: resumed with
//! a Range request after an interruption, never more than the manifest's
//! size (which `[update] max_mb` already bounds).

use super::release::{self, Manifest, ReleaseError};
use super::{Layout, OtaError};
use crate::config::UpdateConfig;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A whole download must finish in this long; a slow site link resumes on
/// the next offer.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(1800);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Restarts from zero when the server ignores or refuses the Range.
const ATTEMPTS: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {error}")]
    Http { url: String, error: String },
    #[error("{url}: the server answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error(
        "{url}: {got} bytes, the manifest says {want}: the download is incomplete; it resumes at the next try"
    )]
    Short { url: String, got: u64, want: u64 },
    #[error(
        "{url}: interrupted after {got} of {want} bytes ({error}); the download resumes at the next try"
    )]
    Interrupted {
        url: String,
        got: u64,
        want: u64,
        error: String,
    },
    #[error("{url}: the server sent more than the manifest's {want} bytes: refused")]
    Long { url: String, want: u64 },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Fetches `url` to `dest` (resuming what is there) until it holds
/// exactly `size` bytes.
pub fn download(url: &str, dest: &Path, size: u64) -> Result<(), FetchError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(DOWNLOAD_TIMEOUT))
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .build()
        .into();
    let http = |e: ureq::Error| FetchError::Http {
        url: url.to_string(),
        error: e.to_string(),
    };
    for _ in 0..ATTEMPTS {
        let mut have = std::fs::metadata(dest).map_or(0, |m| m.len());
        if have > size {
            have = 0;
        }
        if have == size {
            return Ok(());
        }
        let mut req = agent.get(url);
        if have > 0 {
            req = req.header("Range", format!("bytes={have}-"));
        }
        let mut resp = req.call().map_err(http)?;
        let status = resp.status().as_u16();
        let (offset, restart) = match status {
            206 => (have, false),
            200 => (0, true),
            // The part on disk is stale (another file): start again.
            416 => {
                std::fs::remove_file(dest).map_err(io(dest))?;
                continue;
            }
            s => {
                return Err(FetchError::Status {
                    url: url.to_string(),
                    status: s,
                });
            }
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(!restart)
            .truncate(restart)
            .open(dest)
            .map_err(io(dest))?;
        let want = size - offset;
        // One byte over the limit tells "too long" from "exactly right".
        let mut body = resp
            .body_mut()
            .with_config()
            .limit(want + 1)
            .reader()
            .take(want + 1);
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0u64;
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    file.sync_all().map_err(io(dest))?;
                    return Err(FetchError::Interrupted {
                        url: url.to_string(),
                        got: offset + got,
                        want: size,
                        error: e.to_string(),
                    });
                }
            };
            got += n as u64;
            if got > want {
                drop(file);
                let _ = std::fs::remove_file(dest);
                return Err(FetchError::Long {
                    url: url.to_string(),
                    want: size,
                });
            }
            file.write_all(&buf[..n]).map_err(io(dest))?;
        }
        file.sync_all().map_err(io(dest))?;
        if offset + got < size {
            return Err(FetchError::Short {
                url: url.to_string(),
                got: offset + got,
                want: size,
            });
        }
        return Ok(());
    }
    Err(FetchError::Short {
        url: url.to_string(),
        got: 0,
        want: size,
    })
}

/// Largest manifest accepted from the release URL.
const MAX_MANIFEST_BYTES: u64 = 64 * 1024;

/// `[update] url`: fetches the manifest; if it names a version newer than
/// the running one and not rolled back here before, downloads the binary
/// (the same URL without `.json`) and installs it. `None`: nothing to do.
pub fn poll(data_dir: &Path, cfg: &UpdateConfig, url: &str) -> Result<Option<Manifest>, OtaError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(CONNECT_TIMEOUT))
        .build()
        .into();
    let http = |e: ureq::Error| FetchError::Http {
        url: url.to_string(),
        error: e.to_string(),
    };
    let bytes = agent
        .get(url)
        .call()
        .map_err(http)?
        .body_mut()
        .with_config()
        .limit(MAX_MANIFEST_BYTES)
        .read_to_vec()
        .map_err(http)?;
    let manifest = release::parse_manifest(Path::new(url), &bytes)?;
    let state = super::summary(data_dir);
    let running = super::running_version(state.as_ref());
    if release::compare_versions(&manifest.version, &running) != std::cmp::Ordering::Greater {
        return Ok(None);
    }
    if state.is_some_and(|s| s.rolled_back.contains(&manifest.version)) {
        tracing::info!(version = %manifest.version, "the release URL offers a version rolled back here before; not installing it again");
        return Ok(None);
    }
    let binary_url = url.strip_suffix(".json").unwrap_or(url);
    apply_offer(data_dir, cfg, binary_url, &manifest).map(Some)
}

/// An offered release: checks the manifest (so nothing unsigned or too big
/// is fetched), downloads the binary, installs it in trial.
pub fn apply_offer(
    data_dir: &Path,
    cfg: &UpdateConfig,
    url: &str,
    manifest: &Manifest,
) -> Result<Manifest, OtaError> {
    let layout = Layout::new(data_dir);
    layout.ensure()?;
    let downloads = layout.downloads();
    let manifest_path = downloads.join(format!("{}.json", manifest.version));
    let text = serde_json::to_vec_pretty(manifest).map_err(|e| ReleaseError::BadManifest {
        path: manifest_path.clone(),
        error: e.to_string(),
    })?;
    super::write_atomic(&manifest_path, &text)?;
    let running = {
        let lock = layout.lock()?;
        super::running_version(lock.load()?.as_ref())
    };
    let trusted = super::trusted_keys(cfg);
    release::check_manifest(
        &manifest_path,
        manifest,
        &release::Policy {
            trusted: &trusted,
            running: &running,
            allow_downgrade: cfg.allow_downgrade,
            max_bytes: cfg.max_bytes,
        },
    )?;
    // Named by content, so a part of another release is never resumed.
    let part = downloads.join(format!("{}-{}.part", manifest.version, manifest.sha256));
    download(url, &part, manifest.size)?;
    tracing::info!(version = %manifest.version, bytes = manifest.size, "update downloaded");
    let result = super::install(data_dir, cfg, &manifest_path, &part, Some(url));
    // Installed or refused, the download has served (a bad one must not be resumed).
    let _ = std::fs::remove_file(&part);
    let _ = std::fs::remove_file(&manifest_path);
    result
}
