//! Writing files so that a crash or a full disk never leaves a half-written one behind.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to a temporary file beside `path`, syncs it, then renames it over `path`.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |tmp| {
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(bytes)?;
        Ok(())
    })
}

/// `write` creates the file at the temporary path it is given; that file is then synced and
/// renamed over `path`. On any error the temporary file is removed and `path` is untouched.
pub(crate) fn atomic_write_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().context("atomic_write needs a file name")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> Result<()> {
        write(&tmp)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable once the directory is synced.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

fn sha256_hex(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `manifest.json` into `dir`: every file with its size and SHA-256.
pub(crate) fn write_manifest(dir: &Path) -> Result<()> {
    let mut files = serde_json::Map::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.flatten().filter(|e| e.path().is_file()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().to_string();
        if name == "manifest.json" || name.starts_with('.') {
            continue;
        }
        let size = e.metadata()?.len();
        files.insert(name, serde_json::json!({"bytes": size, "sha256": sha256_hex(&e.path())?}));
    }
    atomic_write(
        &dir.join("manifest.json"),
        serde_json::to_string_pretty(&serde_json::json!({"files": files}))?.as_bytes(),
    )
}

/// Checks the files `dir/manifest.json` lists; the error names the first one that is missing,
/// truncated or changed.
pub fn verify_manifest(dir: &Path) -> Result<()> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: no manifest (an incomplete checkpoint?)", dir.display()))?;
    let manifest: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: unreadable", path.display()))?;
    let files = manifest["files"].as_object().with_context(|| format!("{}: no file list", path.display()))?;
    for (name, want) in files {
        let file = dir.join(name);
        let size = std::fs::metadata(&file).with_context(|| format!("{}: missing", file.display()))?.len();
        if Some(size) != want["bytes"].as_u64() {
            anyhow::bail!("{}: {size} bytes, the manifest says {} (truncated?)", file.display(), want["bytes"]);
        }
        if want["sha256"].as_str() != Some(sha256_hex(&file)?.as_str()) {
            anyhow::bail!("{}: checksum differs from the manifest (corrupted)", file.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_catches_truncation_and_corruption() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        atomic_write(&dir.join("model.safetensors"), b"0123456789").unwrap();
        atomic_write(&dir.join("trainer_state.json"), b"{}").unwrap();
        write_manifest(dir).unwrap();
        verify_manifest(dir).unwrap();
        std::fs::write(dir.join("model.safetensors"), b"01234").unwrap();
        let err = format!("{:#}", verify_manifest(dir).unwrap_err());
        assert!(err.contains("model.safetensors") && err.contains("truncated"), "{err}");
        std::fs::write(dir.join("model.safetensors"), b"0123456780").unwrap();
        let err = format!("{:#}", verify_manifest(dir).unwrap_err());
        assert!(err.contains("checksum"), "{err}");
        std::fs::remove_file(dir.join("manifest.json")).unwrap();
        assert!(format!("{:#}", verify_manifest(dir).unwrap_err()).contains("incomplete"));
    }
}
