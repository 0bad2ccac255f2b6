//! A dataset as one safetensors file, the form the state directory keeps (and numpy or
//! PyTorch load directly): `x` (F32 or F64, [N, D]) and `labels` (U32, [N]), with
//! `__metadata__` holding the format name, the name and the SHA-256 of the upload, and
//! keys of the caller's (the store adds the id and the owner).
//!
//! Decoding is strict: both tensors with matching shapes, finite values, the declared
//! checksum recomputed, and nothing else; a file either gives back the very dataset that
//! was uploaded or is refused with the first thing wrong.
use std::borrow::Cow;
use std::collections::HashMap;

use safetensors::tensor::{Dtype, SafeTensors, View};

use super::{Dataset, Values};

/// The value of the `format` metadata key.
pub const FORMAT: &str = "backprop.dataset.v1";

const KEY_FORMAT: &str = "format";
const KEY_NAME: &str = "name";
const KEY_SHA256: &str = "sha256";

struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// The dataset's file, with `extra` metadata beside this module's keys.
pub fn encode(d: &Dataset, extra: &[(&str, &str)]) -> Result<Vec<u8>, String> {
    let (dtype, data) = match &d.values {
        Values::F32(v) => (Dtype::F32, v.iter().flat_map(|a| a.to_le_bytes()).collect()),
        Values::F64(v) => (Dtype::F64, v.iter().flat_map(|a| a.to_le_bytes()).collect()),
    };
    let x = Raw {
        dtype,
        shape: vec![d.rows, d.dim],
        data,
    };
    let labels = Raw {
        dtype: Dtype::U32,
        shape: vec![d.rows],
        data: d.labels.iter().flat_map(|l| l.to_le_bytes()).collect(),
    };
    let mut meta: HashMap<String, String> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    meta.insert(KEY_FORMAT.into(), FORMAT.into());
    meta.insert(KEY_NAME.into(), d.name.clone());
    meta.insert(KEY_SHA256.into(), d.sha256.clone());
    safetensors::serialize([("x", &x), ("labels", &labels)], Some(meta)).map_err(|e| e.to_string())
}

/// The dataset in a file, and the metadata keys this module does not own.
pub fn decode(bytes: &[u8]) -> Result<(Dataset, HashMap<String, String>), String> {
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
    let mut meta = header.metadata().clone().unwrap_or_default();
    let mut take = |key: &str| {
        meta.remove(key)
            .ok_or_else(|| format!("__metadata__.{key}: missing"))
    };
    let format = take(KEY_FORMAT)?;
    if format != FORMAT {
        return Err(format!("__metadata__.format: {format:?} is not {FORMAT:?}"));
    }
    let name = take(KEY_NAME)?;
    let sha256 = take(KEY_SHA256)?;
    let file = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let mut names = file.names();
    names.sort();
    if names != ["labels", "x"] {
        return Err(format!(
            "expected the tensors labels and x, found {names:?}"
        ));
    }
    let x = file.tensor("x").map_err(|e| e.to_string())?;
    let labels = file.tensor("labels").map_err(|e| e.to_string())?;
    let (rows, dim) = match (x.shape(), labels.shape()) {
        ([n, d], [m]) if n == m && *d > 0 => (*n, *d),
        (xs, ls) => {
            return Err(format!(
                "x is {xs:?} and labels {ls:?}: expected [N, D] and [N]"
            ));
        }
    };
    if labels.dtype() != Dtype::U32 {
        return Err(format!("labels: {:?}, expected U32", labels.dtype()));
    }
    let values = match x.dtype() {
        Dtype::F32 => Values::F32(
            x.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect(),
        ),
        Dtype::F64 => Values::F64(
            x.data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect(),
        ),
        other => return Err(format!("x: {other:?}, expected F32 or F64")),
    };
    let finite = match &values {
        Values::F32(v) => v.iter().all(|a| a.is_finite()),
        Values::F64(v) => v.iter().all(|a| a.is_finite()),
    };
    if !finite {
        return Err("x holds a value that is not finite".into());
    }
    let labels = labels
        .data()
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect::<Vec<u32>>();
    let got = crate::pb::dataset::sha256_hex(x.data(), &labels);
    if got != sha256 {
        return Err(format!(
            "the file's SHA-256 is {got}, its metadata says {sha256}"
        ));
    }
    debug_assert_eq!(labels.len(), rows);
    Ok((Dataset::new(dim, values, labels, sha256, name), meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{Builder, DType, Header};

    #[test]
    fn a_dataset_survives_its_file_and_a_flipped_byte_is_refused() {
        let x: Vec<u8> = [1.5f64, -2.0, 3.25, 4.0]
            .iter()
            .flat_map(|a| a.to_le_bytes())
            .collect();
        let labels = [3u32, 1];
        let sha256 = crate::pb::dataset::sha256_hex(&x, &labels);
        let header = Header {
            rows: 2,
            dim: 2,
            dtype: DType::F64,
            sha256,
            name: "blobs".into(),
        };
        let mut b = Builder::new(header).unwrap();
        b.push(0, &x, &labels, |_| {
            Ok::<(), crate::dataset::DatasetError>(())
        })
        .unwrap();
        let mut rows_hash = crate::pb::dataset::DatasetHash::default();
        rows_hash.rows(&x);
        let d = b.finish(rows_hash).unwrap();
        let bytes = encode(&d, &[("owner", "ann")]).unwrap();
        let (back, extra) = decode(&bytes).unwrap();
        assert_eq!(back, d);
        assert_eq!(extra.get("owner").map(String::as_str), Some("ann"));
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(decode(&bad).unwrap_err().contains("SHA-256"));
    }
}
