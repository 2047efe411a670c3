//! Writing embeddings as they are computed, batch by batch: NumPy's `.npy` (float32 rows in input
//! order; the ids beside it as `FILE.ids.json`), Parquet (`id`, `embedding` as a fixed-size list
//! of float32) or JSONL (`{"id", "vector"}`). Each goes to a temporary name and is renamed when
//! finished, so a stopped run leaves no half-written file under the final name.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow_array::{ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;

/// An output file of vectors being written.
pub struct VectorWriter {
    path: PathBuf,
    tmp: PathBuf,
    sink: Sink,
    /// Ids of an `.npy` file, written beside it at the end.
    npy_ids: Vec<String>,
}

enum Sink {
    Npy(BufWriter<File>),
    Parquet(Box<ArrowWriter<File>>, Arc<Schema>),
    Jsonl(BufWriter<File>),
}

/// The formats written here, by extension.
#[derive(Clone, Copy)]
enum Kind {
    Npy,
    Parquet,
    Jsonl,
}

impl Kind {
    fn of(path: &Path) -> Result<Kind> {
        let kind = match path.extension().and_then(|e| e.to_str()) {
            Some("npy") => Some(Kind::Npy),
            Some("parquet") => Some(Kind::Parquet),
            Some("jsonl") => Some(Kind::Jsonl),
            _ => None,
        };
        match kind {
            Some(kind) if path.file_name().is_some() => Ok(kind),
            _ => bail!("--output {}: write .npy, .parquet or .jsonl", path.display()),
        }
    }
}

impl VectorWriter {
    /// Refuses a path whose extension names no format written here, before any work is done.
    pub fn check(path: &Path) -> Result<()> {
        Kind::of(path).map(|_| ())
    }

    /// A writer for `rows` vectors of `dim` floats, its kind from the extension.
    pub fn create(path: &Path, rows: usize, dim: usize) -> Result<VectorWriter> {
        let kind = Kind::of(path)?;
        let name = path.file_name().context("--output needs a file name")?.to_string_lossy().to_string();
        let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let file = File::create(&tmp).with_context(|| format!("creating {}", path.display()))?;
        let sink = match kind {
            Kind::Npy => {
                let mut out = BufWriter::new(file);
                out.write_all(&npy_header(rows, dim))?;
                Sink::Npy(out)
            }
            Kind::Parquet => {
                let item = Arc::new(Field::new("item", DataType::Float32, false));
                let schema = Arc::new(Schema::new(vec![
                    Field::new("id", DataType::Utf8, false),
                    Field::new("embedding", DataType::FixedSizeList(item, dim as i32), false),
                ]));
                Sink::Parquet(Box::new(ArrowWriter::try_new(file, schema.clone(), None)?), schema)
            }
            Kind::Jsonl => Sink::Jsonl(BufWriter::new(file)),
        };
        Ok(VectorWriter { path: path.to_path_buf(), tmp, sink, npy_ids: Vec::new() })
    }

    /// Appends a batch: one id per vector.
    pub fn write(&mut self, ids: &[String], vectors: &[Vec<f32>]) -> Result<()> {
        match &mut self.sink {
            Sink::Npy(out) => {
                for v in vectors {
                    v.iter().try_for_each(|x| out.write_all(&x.to_le_bytes()))?;
                }
                self.npy_ids.extend_from_slice(ids);
            }
            Sink::Parquet(writer, schema) => {
                let dim = vectors.first().map_or(0, Vec::len) as i32;
                let values = Float32Array::from(vectors.concat());
                let item = Arc::new(Field::new("item", DataType::Float32, false));
                let list = FixedSizeListArray::try_new(item, dim, Arc::new(values), None)?;
                let columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(ids.to_vec())), Arc::new(list)];
                writer.write(&RecordBatch::try_new(schema.clone(), columns)?)?;
            }
            Sink::Jsonl(out) => {
                for (id, v) in ids.iter().zip(vectors) {
                    serde_json::to_writer(&mut *out, &serde_json::json!({"id": id, "vector": v}))?;
                    out.write_all(b"\n")?;
                }
            }
        }
        Ok(())
    }

    /// Completes the file and gives it its name (and an `.npy` its ids).
    pub fn finish(self) -> Result<()> {
        match self.sink {
            Sink::Npy(mut out) | Sink::Jsonl(mut out) => out.flush()?,
            Sink::Parquet(writer, _) => {
                writer.close()?;
            }
        }
        std::fs::rename(&self.tmp, &self.path).with_context(|| format!("writing {}", self.path.display()))?;
        if self.path.extension().is_some_and(|e| e == "npy") {
            let ids = self.path.with_extension("ids.json");
            crate::fsutil::atomic_write(&ids, serde_json::to_string(&self.npy_ids)?.as_bytes())?;
        }
        Ok(())
    }
}

/// A float32 `.npy` matrix read through a memory map: rows are paged in as they are read and
/// can be paged out again, so a corpus's vectors never have to fit in memory at once.
pub struct MappedVectors {
    map: memmap2::Mmap,
    /// Where the rows start (after the header).
    data: usize,
    pub rows: usize,
    pub dim: usize,
}

impl MappedVectors {
    /// Opens a C-ordered little-endian float32 matrix (what `VectorWriter` and NumPy write).
    pub fn open(path: &Path) -> Result<MappedVectors> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        // Safety: the file is only read, and bertkit does not write it while mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("mapping {}", path.display()))?;
        let (data, rows, dim) =
            npy_shape(&map).with_context(|| format!("{}: not a float32 .npy matrix", path.display()))?;
        if map.len() < data + rows * dim * 4 {
            bail!("{}: holds fewer bytes than its header's shape ({rows}, {dim})", path.display());
        }
        Ok(MappedVectors { map, data, rows, dim })
    }

    /// Rows `start..start + n`, row-major.
    pub fn rows(&self, start: usize, n: usize) -> Vec<f32> {
        let bytes = &self.map[self.data + start * self.dim * 4..self.data + (start + n) * self.dim * 4];
        bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect()
    }
}

/// Where the data of an `.npy` file starts and its 2-d shape, if it holds C-ordered
/// little-endian float32.
fn npy_shape(bytes: &[u8]) -> Result<(usize, usize, usize)> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("no .npy magic");
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (u32::from_le_bytes(bytes.get(8..12).context("short header")?.try_into()?) as usize, 12),
    };
    let header = std::str::from_utf8(bytes.get(start..start + header_len).context("short header")?)?;
    if !header.contains("'descr': '<f4'") || !header.contains("'fortran_order': False") {
        bail!("not C-ordered little-endian float32: {}", header.trim());
    }
    let shape = header.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).context("no shape")?;
    let dims: Vec<usize> =
        shape.split(',').filter(|d| !d.trim().is_empty()).map(|d| d.trim().parse()).collect::<Result<_, _>>()?;
    let [rows, dim] = dims[..] else { bail!("shape ({shape}) is not a matrix") };
    Ok((start + header_len, rows, dim))
}

/// NumPy's format 1.0 header for a C-ordered little-endian float32 matrix, padded with spaces so
/// the data starts at a multiple of 64 bytes.
fn npy_header(rows: usize, dim: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    let unpadded = 10 + dict.len() + 1;
    let padding = unpadded.div_ceil(64) * 64 - unpadded;
    let header = format!("{dict}{}\n", " ".repeat(padding));
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_npy_header_is_aligned_and_says_the_shape() {
        let h = npy_header(3, 384);
        assert_eq!(h.len() % 64, 0);
        assert!(String::from_utf8_lossy(&h).contains("'shape': (3, 384)"));
    }

    #[test]
    fn a_written_matrix_reads_back_through_the_map() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.npy");
        let mut w = VectorWriter::create(&path, 3, 2).unwrap();
        w.write(&["a".into(), "b".into()], &[vec![1.0, 2.0], vec![3.0, 4.0]]).unwrap();
        w.write(&["c".into()], &[vec![5.0, -6.5]]).unwrap();
        w.finish().unwrap();
        let m = MappedVectors::open(&path).unwrap();
        assert_eq!((m.rows, m.dim), (3, 2));
        assert_eq!(m.rows(1, 2), vec![3.0, 4.0, 5.0, -6.5]);
        std::fs::write(&path, b"not numpy").unwrap();
        assert!(MappedVectors::open(&path).err().unwrap().to_string().contains("not a float32 .npy matrix"));
    }

    #[test]
    fn an_unknown_extension_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let err = VectorWriter::create(&dir.path().join("v.csv"), 1, 2).err().unwrap();
        assert!(err.to_string().contains(".npy, .parquet or .jsonl"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
