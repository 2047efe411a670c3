//! TensorBoard event files (`events.out.tfevents.*`) written from the same records as
//! `log.jsonl`, so the two always agree: training records become `train/*` scalars, evaluations
//! `eval/*` scalars (Trainer's names: `eval_loss` is `eval/loss`), the run's start the `args`
//! text and the hyper-parameters (hparams plugin), its end the hparams session's status.
//!
//! The file is TensorFlow's record format: each record is its length (u64, little-endian), a
//! masked CRC32C of the length, the bytes of one `Event` protobuf, and a masked CRC32C of those.
//! The protobuf messages below carry the field numbers of tensorboard's `event.proto`,
//! `summary.proto`, `tensor.proto` and `plugins/hparams/plugin_data.proto`, only the fields we set.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use prost::Message;
use serde_json::Value;

use super::log::unix_time;

#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5, 7")]
    what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
    #[prost(message, tag = "7")]
    SessionLog(SessionLog),
}

/// `SessionLog.status = START` at step N tells readers to drop the events at steps >= N that an
/// earlier process wrote: what a resumed run redoes.
#[derive(Clone, PartialEq, prost::Message)]
struct SessionLog {
    #[prost(int32, tag = "1")]
    status: i32,
}
const SESSION_START: i32 = 1;

#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(message, optional, tag = "9")]
    metadata: Option<SummaryMetadata>,
    #[prost(oneof = "Payload", tags = "2, 8")]
    payload: Option<Payload>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Payload {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    #[prost(message, tag = "8")]
    Tensor(TensorProto),
}

#[derive(Clone, PartialEq, prost::Message)]
struct SummaryMetadata {
    #[prost(message, optional, tag = "1")]
    plugin_data: Option<PluginData>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PluginData {
    #[prost(string, tag = "1")]
    plugin_name: String,
    #[prost(bytes = "vec", tag = "2")]
    content: Vec<u8>,
}

/// A string tensor of one element: what the text plugin shows.
#[derive(Clone, PartialEq, prost::Message)]
struct TensorProto {
    #[prost(int32, tag = "1")]
    dtype: i32,
    #[prost(message, optional, tag = "2")]
    tensor_shape: Option<TensorShape>,
    #[prost(bytes = "vec", repeated, tag = "8")]
    string_val: Vec<Vec<u8>>,
}
const DT_STRING: i32 = 7;

#[derive(Clone, PartialEq, prost::Message)]
struct TensorShape {
    #[prost(message, repeated, tag = "2")]
    dim: Vec<Dim>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Dim {
    #[prost(int64, tag = "1")]
    size: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HParamsPluginData {
    #[prost(int32, tag = "1")]
    version: i32,
    #[prost(oneof = "HParamsData", tags = "3, 4")]
    data: Option<HParamsData>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum HParamsData {
    #[prost(message, tag = "3")]
    SessionStartInfo(SessionStartInfo),
    #[prost(message, tag = "4")]
    SessionEndInfo(SessionEndInfo),
}

#[derive(Clone, PartialEq, prost::Message)]
struct SessionStartInfo {
    #[prost(btree_map = "string, message", tag = "1")]
    hparams: BTreeMap<String, ProtoValue>,
    #[prost(double, tag = "5")]
    start_time_secs: f64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SessionEndInfo {
    #[prost(int32, tag = "1")]
    status: i32,
    #[prost(double, tag = "2")]
    end_time_secs: f64,
}
const STATUS_SUCCESS: i32 = 1;

/// `google.protobuf.Value`, the kinds a hyper-parameter takes.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoValue {
    #[prost(oneof = "Kind", tags = "2, 3, 4")]
    kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Kind {
    #[prost(double, tag = "2")]
    Number(f64),
    #[prost(string, tag = "3")]
    String(String),
    #[prost(bool, tag = "4")]
    Bool(bool),
}

/// Appends events to one `events.out.tfevents.*` file, flushed after each record as `log.jsonl`.
pub(crate) struct EventWriter {
    file: std::fs::File,
    path: PathBuf,
}

impl EventWriter {
    /// A new event file in `dir` (created if needed). `resume_step` > 0 marks where a resumed
    /// run takes over, so the steps it redoes replace the earlier process's.
    pub fn create(dir: &Path, resume_step: usize) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let host = std::fs::read_to_string("/etc/hostname").map_or("localhost".into(), |h| h.trim().to_string());
        let name = format!("events.out.tfevents.{}.{host}.{}.0", unix_time() as u64, std::process::id());
        let path = dir.join(name);
        let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut writer = EventWriter { file, path };
        writer.write_event(0, What::FileVersion("brain.Event:2".into()))?;
        if resume_step > 0 {
            writer.write_event(resume_step + 1, What::SessionLog(SessionLog { status: SESSION_START }))?;
        }
        Ok(writer)
    }

    /// The events one `log.jsonl` record stands for (none for records without scalars).
    pub fn write_record(&mut self, record: &Value) -> Result<()> {
        let step = record["step"].as_u64().unwrap_or(0) as usize;
        let values = match record["event"].as_str() {
            Some("start") => start_values(record),
            Some("train") => scalars("train/", record, &["event", "step", "time"]),
            Some("eval") => eval_values(&record["metrics"]),
            Some("end") => vec![hparams_value("session_end_info", session_end())],
            _ => Vec::new(),
        };
        if values.is_empty() {
            return Ok(());
        }
        self.write_event(step, What::Summary(Summary { value: values }))
    }

    fn write_event(&mut self, step: usize, what: What) -> Result<()> {
        let event = Event { wall_time: unix_time(), step: step as i64, what: Some(what) };
        let data = event.encode_to_vec();
        let len = (data.len() as u64).to_le_bytes();
        let mut record = Vec::with_capacity(data.len() + 16);
        record.extend_from_slice(&len);
        record.extend_from_slice(&masked_crc(&len).to_le_bytes());
        record.extend_from_slice(&data);
        record.extend_from_slice(&masked_crc(&data).to_le_bytes());
        self.file
            .write_all(&record)
            .and_then(|_| self.file.flush())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// TensorFlow's checksum of a record part: CRC32C, rotated and offset so that a CRC of data
/// holding CRCs stays informative.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// One scalar per numeric field of `record` (except `skip`), tagged `prefix` + the field name,
/// fields of an object field as `prefix` + `field/name`; `lr` is `learning_rate` as Trainer
/// names it.
fn scalars(prefix: &str, record: &Value, skip: &[&str]) -> Vec<SummaryValue> {
    let Some(fields) = record.as_object() else { return Vec::new() };
    let mut values = Vec::new();
    for (key, value) in fields.iter().filter(|(key, _)| !skip.contains(&key.as_str())) {
        let name = if key == "lr" { "learning_rate" } else { key.as_str() };
        match value {
            Value::Object(_) => values.extend(scalars(&format!("{prefix}{name}/"), value, &[])),
            _ => values.extend(value.as_f64().map(|v| scalar(&format!("{prefix}{name}"), v))),
        }
    }
    values
}

fn scalar(tag: &str, value: f64) -> SummaryValue {
    SummaryValue { tag: tag.into(), metadata: None, payload: Some(Payload::SimpleValue(value as f32)) }
}

/// An evaluation's numeric metrics as `eval/NAME` (`eval_loss` as `eval/loss`).
fn eval_values(metrics: &Value) -> Vec<SummaryValue> {
    let Some(fields) = metrics.as_object() else { return Vec::new() };
    fields
        .iter()
        .filter_map(|(key, value)| {
            let name = key.strip_prefix("eval_").unwrap_or(key);
            value.as_f64().map(|v| scalar(&format!("eval/{name}"), v))
        })
        .collect()
}

/// The run's flags as the `args` text (Trainer writes its TrainingArguments there) and its
/// hyper-parameters as an hparams session.
fn start_values(record: &Value) -> Vec<SummaryValue> {
    let config = &record["config"];
    let text = serde_json::to_string_pretty(config).unwrap_or_default();
    let args = SummaryValue {
        tag: "args/text_summary".into(),
        metadata: Some(plugin("text", Vec::new())),
        payload: Some(Payload::Tensor(TensorProto {
            dtype: DT_STRING,
            tensor_shape: Some(TensorShape { dim: vec![Dim { size: 1 }] }),
            string_val: vec![text.into_bytes()],
        })),
    };
    let hparams = hparams_of(config);
    let start = HParamsData::SessionStartInfo(SessionStartInfo { hparams, start_time_secs: unix_time() });
    vec![args, hparams_value("session_start_info", start)]
}

/// The hyper-parameters (`config.hyper`) plus the precision, as hparams values; unset ones
/// are left out.
fn hparams_of(config: &Value) -> BTreeMap<String, ProtoValue> {
    let mut fields: Vec<(&String, &Value)> =
        config["hyper"].as_object().map(|m| m.iter().collect()).unwrap_or_default();
    if let Some((key, value)) = config["placement"].as_object().and_then(|p| p.get_key_value("precision")) {
        fields.push((key, value));
    }
    fields
        .into_iter()
        .filter_map(|(key, value)| {
            let kind = match value {
                Value::Number(n) => Kind::Number(n.as_f64()?),
                Value::String(s) => Kind::String(s.clone()),
                Value::Bool(b) => Kind::Bool(*b),
                _ => return None,
            };
            Some((key.clone(), ProtoValue { kind: Some(kind) }))
        })
        .collect()
}

fn session_end() -> HParamsData {
    HParamsData::SessionEndInfo(SessionEndInfo { status: STATUS_SUCCESS, end_time_secs: unix_time() })
}

/// A summary value the hparams plugin reads: no payload, the data in the plugin metadata.
fn hparams_value(kind: &str, data: HParamsData) -> SummaryValue {
    let content = HParamsPluginData { version: 0, data: Some(data) }.encode_to_vec();
    SummaryValue { tag: format!("_hparams_/{kind}"), metadata: Some(plugin("hparams", content)), payload: None }
}

fn plugin(name: &str, content: Vec<u8>) -> SummaryMetadata {
    SummaryMetadata { plugin_data: Some(PluginData { plugin_name: name.into(), content }) }
}

#[cfg(test)]
mod tests {
    use super::masked_crc;

    /// TensorFlow's masked CRC32C (values from tensorboard's Python
    /// `tensorflow_stub.pywrap_tensorflow.masked_crc32c`): of an empty record's 8 length bytes,
    /// and of the CRC check string.
    #[test]
    fn masked_crc_is_tensorflows() {
        assert_eq!(masked_crc(&0u64.to_le_bytes()), 127_402_793);
        assert_eq!(masked_crc(b"123456789"), 3_347_755_237);
    }
}
