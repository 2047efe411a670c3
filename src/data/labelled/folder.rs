//! The aclImdb folder layout: one text file per example, in a folder per label.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{Columns, Label, LabelSource, Location, Sink, make_example};

/// `DIR/<label>/*.txt`: the aclImdb layout (`pos`, `neg`), or any folder of class folders.
pub(super) fn read_folder(dir: &Path, columns: &Columns, sink: &mut Sink) -> Result<()> {
    let mut classes: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n != "unsup"))
        .collect();
    classes.sort();
    let with_labels = match &columns.label {
        LabelSource::None => false,
        LabelSource::Column(_) => true,
        _ => bail!(
            "{}: a folder of class folders has one label per text (no --label-separator or --label-columns)",
            dir.display()
        ),
    };
    if classes.is_empty() {
        bail!("{}: no class folders (expected e.g. pos/ and neg/ with one .txt per example)", dir.display());
    }
    for class in classes {
        let label = class.file_name().unwrap().to_string_lossy().to_string();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&class)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        files.sort();
        if files.is_empty() && ["train", "test"].contains(&label.as_str()) {
            bail!("{}: holds {label}/ rather than class folders; point at {}", dir.display(), class.display());
        }
        for file in files {
            let at = Location { file: file.clone(), line: 0 };
            let bytes = std::fs::read(&file).with_context(|| format!("{}: cannot read", file.display()))?;
            let row = match String::from_utf8(bytes) {
                Ok(text) => make_example(Some(&text), None, with_labels.then(|| Ok(Label::One(label.clone()))), at),
                Err(_) => Err((at, "not valid UTF-8".into())),
            };
            sink(row)?;
        }
    }
    Ok(())
}
