//! Plain text, one example (without a label) per line: texts to predict.

use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{Context, Result};

use super::{Location, Sink, make_example, open_text};

pub(super) fn read_lines(path: &Path, sink: &mut Sink) -> Result<()> {
    let reader = BufReader::new(open_text(path)?);
    for (i, line) in reader.split(b'\n').enumerate() {
        let at = Location { file: path.to_path_buf(), line: i as u64 + 1 };
        let line = line.with_context(|| format!("{at}: read error"))?;
        let row = match String::from_utf8(line) {
            Ok(text) => make_example(Some(text.trim_end_matches('\r')), None, None, at),
            Err(_) => Err((at, "not valid UTF-8".into())),
        };
        sink(row)?;
    }
    Ok(())
}
