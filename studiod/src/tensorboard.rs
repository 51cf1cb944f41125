//! Scalars from TensorBoard event files (`*tfevents*` under an experiment's
//! `tb` directory), as TensorFlow 1 and 2, tensorboardX and PyTorch's
//! `SummaryWriter` write them.
//!
//! An event file is a TFRecord stream: each record is a little-endian u64
//! length, the masked CRC-32C of those 8 bytes, the data, and the masked
//! CRC-32C of the data. The data is a `tensorflow.Event` protobuf. Only the
//! fields needed for scalars are declared below; prost skips the others.
//! Scalars come as `simple_value` (TF1, tensorboardX's default) or as a
//! tensor with a single element (TF2, `new_style` tensorboardX).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Largest record accepted; bigger lengths mean a corrupt file.
const MAX_RECORD: u64 = 256 * 1024 * 1024;

#[derive(Clone, PartialEq, prost::Message)]
pub struct TfEvent {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
    #[prost(message, optional, tag = "8")]
    pub tensor: Option<TensorProto>,
}

/// `tensorflow.TensorProto`, numeric fields only.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShape>,
    #[prost(bytes = "vec", tag = "4")]
    pub tensor_content: Vec<u8>,
    #[prost(float, repeated, tag = "5")]
    pub float_val: Vec<f32>,
    #[prost(double, repeated, tag = "6")]
    pub double_val: Vec<f64>,
    #[prost(int32, repeated, tag = "7")]
    pub int_val: Vec<i32>,
    #[prost(int64, repeated, tag = "10")]
    pub int64_val: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShape {
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<TensorDim>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorDim {
    #[prost(int64, tag = "1")]
    pub size: i64,
}

// `tensorflow.DataType` values of the numeric scalars read here.
const DT_FLOAT: i32 = 1;
const DT_DOUBLE: i32 = 2;
const DT_INT32: i32 = 3;
const DT_INT64: i32 = 9;

impl TensorProto {
    /// Returns the value of a tensor with exactly one element, else `None`.
    fn scalar(&self) -> Option<f64> {
        let elements: i64 = self
            .tensor_shape
            .as_ref()
            .map_or(1, |shape| shape.dim.iter().map(|dim| dim.size).product());
        if elements != 1 {
            return None;
        }
        if let Some(value) = self.float_val.first() {
            return Some(f64::from(*value));
        }
        if let Some(value) = self.double_val.first() {
            return Some(*value);
        }
        if let Some(value) = self.int_val.first() {
            return Some(f64::from(*value));
        }
        if let Some(value) = self.int64_val.first() {
            return Some(*value as f64);
        }
        let content = self.tensor_content.as_slice();
        match self.dtype {
            DT_FLOAT => Some(f64::from(f32::from_le_bytes(content.try_into().ok()?))),
            DT_DOUBLE => Some(f64::from_le_bytes(content.try_into().ok()?)),
            DT_INT32 => Some(f64::from(i32::from_le_bytes(content.try_into().ok()?))),
            DT_INT64 => Some(i64::from_le_bytes(content.try_into().ok()?) as f64),
            _ => None,
        }
    }
}

/// One scalar point.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub tag: String,
    pub step: i64,
    pub wall_time: f64,
    pub value: f64,
}

/// A damaged event file.
#[derive(Debug, thiserror::Error)]
pub enum TfRecordError {
    #[error("CRC mismatch in the {0} of the record at byte {1}: the file is corrupt")]
    Crc(&'static str, u64),
    #[error("record at byte {0} claims {1} bytes: the file is corrupt")]
    Length(u64, u64),
    #[error("cannot decode the event at byte {0}: {1}")]
    Decode(u64, prost::DecodeError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// TFRecord's CRC mask, so that a CRC of data containing CRCs stays strong.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Reads an event file incrementally: each call returns the scalars of the
/// records completed since the previous call. A record still being written
/// is left for the next call; a corrupt one stops the reader for good.
#[derive(Debug, Default)]
pub struct EventFileReader {
    offset: u64,
    broken: bool,
}

impl EventFileReader {
    pub fn read_new(&mut self, path: &Path) -> Result<Vec<Scalar>, TfRecordError> {
        if self.broken {
            return Ok(Vec::new());
        }
        let mut file = std::fs::File::open(path)?;
        file.seek(SeekFrom::Start(self.offset))?;
        let mut buffer = Vec::new();
        file.read_to_end(&mut buffer)?;
        let mut scalars = Vec::new();
        let mut position = 0usize;
        while buffer.len() - position >= 12 {
            let start = self.offset + position as u64;
            let header = &buffer[position..position + 8];
            let length_crc = u32::from_le_bytes(
                buffer[position + 8..position + 12]
                    .try_into()
                    .unwrap_or_default(),
            );
            if masked_crc(header) != length_crc {
                self.broken = true;
                return Err(TfRecordError::Crc("length", start));
            }
            let length = u64::from_le_bytes(header.try_into().unwrap_or_default());
            if length > MAX_RECORD {
                self.broken = true;
                return Err(TfRecordError::Length(start, length));
            }
            let end = position + 12 + length as usize + 4;
            if buffer.len() < end {
                break;
            }
            let data = &buffer[position + 12..end - 4];
            let data_crc = u32::from_le_bytes(buffer[end - 4..end].try_into().unwrap_or_default());
            if masked_crc(data) != data_crc {
                self.broken = true;
                return Err(TfRecordError::Crc("data", start));
            }
            let event = <TfEvent as prost::Message>::decode(data).map_err(|error| {
                self.broken = true;
                TfRecordError::Decode(start, error)
            })?;
            for value in event.summary.iter().flat_map(|summary| &summary.value) {
                let number = value
                    .simple_value
                    .map(f64::from)
                    .or_else(|| value.tensor.as_ref().and_then(TensorProto::scalar));
                if let Some(number) = number {
                    scalars.push(Scalar {
                        tag: value.tag.clone(),
                        step: event.step,
                        wall_time: event.wall_time,
                        value: number,
                    });
                }
            }
            position = end;
        }
        self.offset += position as u64;
        Ok(scalars)
    }
}

/// Event files under `directory`, at any depth, in path order.
pub fn event_files(directory: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![directory.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() && entry.file_name().to_string_lossy().contains("tfevents") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Reads every scalar under `directory`, by tag: `[[step, wall_time, value], ...]`
/// in file order. Files in a subdirectory (a TensorBoard "run" such as
/// `train/`) get the subdirectory as a prefix: `train/loss`. Corrupt files
/// are left out and reported in the error list.
pub fn read_scalars(directory: &Path) -> (BTreeMap<String, Vec<[f64; 3]>>, Vec<String>) {
    let mut series: BTreeMap<String, Vec<[f64; 3]>> = BTreeMap::new();
    let mut errors = Vec::new();
    for path in event_files(directory) {
        let prefix = path
            .parent()
            .and_then(|parent| parent.strip_prefix(directory).ok())
            .map(|relative| relative.to_string_lossy().into_owned())
            .filter(|relative| !relative.is_empty());
        let mut reader = EventFileReader::default();
        let scalars = match reader.read_new(&path) {
            Ok(scalars) => scalars,
            Err(error) => {
                errors.push(format!("{}: {error}", path.display()));
                continue;
            }
        };
        for scalar in scalars {
            let tag = match &prefix {
                Some(prefix) => format!("{prefix}/{}", scalar.tag),
                None => scalar.tag,
            };
            series.entry(tag).or_default().push([
                scalar.step as f64,
                scalar.wall_time,
                scalar.value,
            ]);
        }
    }
    (series, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn record(data: &[u8]) -> Vec<u8> {
        let length = (data.len() as u64).to_le_bytes();
        let mut bytes = length.to_vec();
        bytes.extend_from_slice(&masked_crc(&length).to_le_bytes());
        bytes.extend_from_slice(data);
        bytes.extend_from_slice(&masked_crc(data).to_le_bytes());
        bytes
    }

    fn scalar_event(step: i64, tag: &str, value: f32) -> Vec<u8> {
        TfEvent {
            wall_time: 100.0 + step as f64,
            step,
            summary: Some(Summary {
                value: vec![SummaryValue {
                    tag: tag.into(),
                    simple_value: Some(value),
                    tensor: None,
                }],
            }),
        }
        .encode_to_vec()
    }

    #[test]
    fn known_crc_of_tfrecord() {
        // masked_crc32c(b"") as TensorFlow's tf.io computes it.
        assert_eq!(masked_crc(b""), 0xa282_ead8);
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn partial_records_wait_for_the_rest() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("events.out.tfevents.1");
        let first = record(&scalar_event(1, "loss", 0.5));
        let second = record(&scalar_event(2, "loss", 0.25));
        let mut bytes = first.clone();
        bytes.extend_from_slice(&second[..10]);
        std::fs::write(&path, &bytes).unwrap();
        let mut reader = EventFileReader::default();
        let values: Vec<f64> = reader
            .read_new(&path)
            .unwrap()
            .iter()
            .map(|s| s.value)
            .collect();
        assert_eq!(values, [0.5]);
        bytes.extend_from_slice(&second[10..]);
        std::fs::write(&path, &bytes).unwrap();
        let scalars = reader.read_new(&path).unwrap();
        assert_eq!(scalars.len(), 1);
        assert_eq!(scalars[0].step, 2);
        assert_eq!(scalars[0].value, 0.25);
    }

    #[test]
    fn corrupted_crc_is_an_error() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("events.out.tfevents.2");
        let mut bytes = record(&scalar_event(1, "loss", 0.5));
        let mut damaged = record(&scalar_event(2, "loss", 0.25));
        let last = damaged.len() - 6;
        damaged[last] ^= 0xff;
        bytes.extend_from_slice(&damaged);
        std::fs::write(&path, &bytes).unwrap();
        let error = EventFileReader::default().read_new(&path).unwrap_err();
        assert!(
            error.to_string().contains("CRC mismatch in the data"),
            "{error}"
        );

        let (series, errors) = read_scalars(directory.path());
        assert!(series.is_empty());
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn scalar_tensors_of_every_type() {
        let shape = Some(TensorShape { dim: vec![] });
        let float_content = TensorProto {
            dtype: DT_FLOAT,
            tensor_shape: shape.clone(),
            tensor_content: 1.5f32.to_le_bytes().to_vec(),
            ..Default::default()
        };
        assert_eq!(float_content.scalar(), Some(1.5));
        let double_val = TensorProto {
            dtype: DT_DOUBLE,
            double_val: vec![2.5],
            ..Default::default()
        };
        assert_eq!(double_val.scalar(), Some(2.5));
        let int64_content = TensorProto {
            dtype: DT_INT64,
            tensor_content: 7i64.to_le_bytes().to_vec(),
            ..Default::default()
        };
        assert_eq!(int64_content.scalar(), Some(7.0));
        let vector = TensorProto {
            dtype: DT_FLOAT,
            tensor_shape: Some(TensorShape {
                dim: vec![TensorDim { size: 3 }],
            }),
            float_val: vec![1.0, 2.0, 3.0],
            ..Default::default()
        };
        assert_eq!(vector.scalar(), None);
    }
}
