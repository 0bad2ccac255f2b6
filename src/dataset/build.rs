//! An upload's strict decoding, chunk by chunk: the header is checked before anything is
//! held, each chunk must carry whole rows starting where the last one ended with one
//! label per row and finite values, and the finished dataset must have exactly the
//! declared rows and SHA-256. Anything else is refused with the field at fault, and
//! nothing is created.
use crate::pb::dataset::DatasetHash;

use super::{Dataset, Values, dtype_width, held_bytes};
use crate::model::DType;

/// The longest name a dataset may have, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Values per row at most (as a model's input_dim).
pub const MAX_DIM: u32 = crate::model::spec::MAX_DIM as u32;

/// What the first chunk declares.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub rows: u64,
    pub dim: u32,
    pub dtype: DType,
    /// Lowercase or uppercase hex; compared case-insensitively.
    pub sha256: String,
    pub name: String,
}

/// Why an upload was refused: the request field at fault and what was wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct DatasetError {
    pub field: String,
    pub reason: String,
}

fn refuse(field: impl Into<String>, reason: impl Into<String>) -> DatasetError {
    DatasetError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A dataset being received.
pub struct Builder {
    header: Header,
    values: Values,
    labels: Vec<u32>,
    /// Over the rows' bytes as they arrive; the labels' bytes are added at the end.
    hash: DatasetHash,
}

impl Builder {
    /// Checks the header (before any memory is spent on the rows).
    pub fn new(mut header: Header) -> Result<Self, DatasetError> {
        if header.rows == 0 {
            return Err(refuse("header.rows", "required: the number of rows, ≥ 1"));
        }
        if header.dim == 0 || header.dim > MAX_DIM {
            return Err(refuse(
                "header.dim",
                format!(
                    "must be from 1 to {MAX_DIM} values per row, got {}",
                    header.dim
                ),
            ));
        }
        header.sha256.make_ascii_lowercase();
        if header.sha256.len() != 64 || !header.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(refuse(
                "header.sha256",
                "required: the SHA-256 of the rows' bytes and then the labels' bytes, as 64 hex digits",
            ));
        }
        if header.name.len() > MAX_NAME_BYTES {
            return Err(refuse(
                "header.name",
                format!(
                    "{} bytes, more than the {MAX_NAME_BYTES} allowed",
                    header.name.len()
                ),
            ));
        }
        if held_bytes(header.rows, u64::from(header.dim), header.dtype) == u64::MAX {
            return Err(refuse("header.rows", "rows × dim overflows"));
        }
        let values = match header.dtype {
            DType::F32 => Values::F32(Vec::new()),
            DType::F64 => Values::F64(Vec::new()),
        };
        Ok(Builder {
            header,
            values,
            labels: Vec::new(),
            hash: DatasetHash::default(),
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes the whole dataset will hold once complete.
    pub fn declared_bytes(&self) -> u64 {
        held_bytes(
            self.header.rows,
            u64::from(self.header.dim),
            self.header.dtype,
        )
    }

    /// Rows received so far.
    pub fn rows(&self) -> u64 {
        self.labels.len() as u64
    }

    /// Adds one chunk: `x` holds whole rows starting at row `first_row`, `labels` one per
    /// row. `hold(n)` is called before the buffers grow by `n` bytes (its error ends the
    /// upload), so what an upload holds is counted while the rest arrives. Nothing is
    /// added on error.
    pub fn push<E: From<DatasetError>>(
        &mut self,
        first_row: u64,
        x: &[u8],
        labels: &[u32],
        mut hold: impl FnMut(u64) -> Result<(), E>,
    ) -> Result<(), E> {
        let have = self.rows();
        if first_row != have {
            return Err(refuse(
                "first_row",
                format!(
                    "the chunk starts at row {first_row} but {have} rows have arrived; chunks \
                     must come in order without gaps"
                ),
            )
            .into());
        }
        let width = dtype_width(self.header.dtype) as usize;
        let row_bytes = self.header.dim as usize * width;
        if x.is_empty() || !x.len().is_multiple_of(row_bytes) {
            return Err(refuse(
                "x",
                format!(
                    "{} bytes is not a whole number of rows ({} values of {width} bytes = \
                     {row_bytes} bytes per row), at least one",
                    x.len(),
                    self.header.dim
                ),
            )
            .into());
        }
        let n = (x.len() / row_bytes) as u64;
        if labels.len() as u64 != n {
            return Err(refuse(
                "labels",
                format!("{} labels for the chunk's {n} rows", labels.len()),
            )
            .into());
        }
        if have + n > self.header.rows {
            return Err(refuse(
                "x",
                format!(
                    "rows {have}..{} go past the {} rows the header declared",
                    have + n,
                    self.header.rows
                ),
            )
            .into());
        }
        self.check_finite(first_row, x)?;
        self.reserve(n as usize, &mut hold)?;
        match &mut self.values {
            Values::F32(v) => v.extend(
                x.chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))),
            ),
            Values::F64(v) => v.extend(
                x.chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes"))),
            ),
        }
        self.labels.extend_from_slice(labels);
        self.hash.rows(x);
        Ok(())
    }

    /// The first value that is NaN or infinite, named by its row and column.
    fn check_finite(&self, first_row: u64, x: &[u8]) -> Result<(), DatasetError> {
        let bad = match self.header.dtype {
            DType::F32 => x
                .chunks_exact(4)
                .position(|b| !f32::from_le_bytes(b.try_into().expect("4 bytes")).is_finite()),
            DType::F64 => x
                .chunks_exact(8)
                .position(|b| !f64::from_le_bytes(b.try_into().expect("8 bytes")).is_finite()),
        };
        match bad {
            None => Ok(()),
            Some(i) => {
                let dim = self.header.dim as u64;
                let (row, col) = (first_row + i as u64 / dim, i as u64 % dim);
                Err(refuse(
                    "x",
                    format!("row {row}, column {col} is not finite (NaN or infinite)"),
                ))
            }
        }
    }

    /// Makes room for `n` more rows, doubling (never past the declared rows) so copies
    /// stay few, and holds each increase of capacity first.
    fn reserve<E>(
        &mut self,
        n: usize,
        hold: &mut impl FnMut(u64) -> Result<(), E>,
    ) -> Result<(), E> {
        let dim = self.header.dim as usize;
        let width = dtype_width(self.header.dtype);
        let have = self.labels.len();
        let cap = self.labels.capacity();
        if have + n <= cap {
            return Ok(());
        }
        let total = self.header.rows as usize;
        let rows = (have + n)
            .max(cap * 2)
            .max(FIRST_ROWS.min(total))
            .min(total);
        let more = (rows - cap) as u64;
        hold(more * (dim as u64 * width + 4))?;
        self.labels.reserve_exact(rows - have);
        match &mut self.values {
            Values::F32(v) => v.reserve_exact(rows * dim - v.len()),
            Values::F64(v) => v.reserve_exact(rows * dim - v.len()),
        }
        Ok(())
    }

    /// The dataset, once every declared row has arrived and the checksum matches.
    pub fn finish(self) -> Result<Dataset, DatasetError> {
        let (have, want) = (self.rows(), self.header.rows);
        if have < want {
            return Err(refuse(
                "chunks",
                format!("the upload is truncated: {have} of {want} rows arrived"),
            ));
        }
        let got = self.hash.finish(&self.labels);
        if got != self.header.sha256 {
            return Err(refuse(
                "header.sha256",
                format!(
                    "the upload is corrupted: its SHA-256 is {got}, the header declared {}",
                    self.header.sha256
                ),
            ));
        }
        let Header {
            dim, sha256, name, ..
        } = self.header;
        Ok(Dataset::new(
            dim as usize,
            self.values,
            self.labels,
            sha256,
            name,
        ))
    }
}

/// Rows an upload's buffers take at once when they first grow: small, so a stream that
/// sends one row and stalls holds little.
const FIRST_ROWS: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(x: &[u8], labels: &[u32]) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(x);
        for l in labels {
            h.update(l.to_le_bytes());
        }
        crate::pb::chunks::hex(&h.finalize())
    }

    fn rows_f32(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|a| a.to_le_bytes()).collect()
    }

    fn header(rows: u64, sha256: String) -> Header {
        Header {
            rows,
            dim: 2,
            dtype: DType::F32,
            sha256,
            name: "t".into(),
        }
    }

    fn no_hold(_: u64) -> Result<(), DatasetError> {
        Ok(())
    }

    #[test]
    fn whole_rows_in_order_with_the_right_checksum_make_the_dataset() {
        let x = rows_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let y = [0, 1, 2];
        let mut b = Builder::new(header(3, sha(&x, &y).to_uppercase())).unwrap();
        let mut held = 0;
        let mut hold = |n: u64| -> Result<(), DatasetError> {
            held += n;
            Ok(())
        };
        b.push(0, &x[..8], &y[..1], &mut hold).unwrap();
        b.push(1, &x[8..], &y[1..], &mut hold).unwrap();
        assert_eq!(held, 3 * (8 + 4), "held exactly the declared rows");
        let d = b.finish().unwrap();
        assert_eq!((d.rows(), d.dim(), d.label_classes()), (3, 2, 3));
        assert_eq!(d.values(), &Values::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
    }

    #[test]
    fn each_malformed_upload_names_its_field() {
        let x = rows_f32(&[1.0, 2.0, 3.0, 4.0]);
        let y = [0, 1];
        let good = sha(&x, &y);
        let fresh = || Builder::new(header(2, good.clone())).unwrap();
        let field = |e: DatasetError| e.field;
        assert_eq!(
            field(fresh().push(1, &x[..8], &y[..1], no_hold).unwrap_err()),
            "first_row"
        );
        assert_eq!(
            field(fresh().push(0, &x[..6], &y[..1], no_hold).unwrap_err()),
            "x"
        );
        assert_eq!(
            field(fresh().push(0, &x, &y[..1], no_hold).unwrap_err()),
            "labels"
        );
        let mut b = fresh();
        b.push(0, &x[..8], &y[..1], no_hold).unwrap();
        assert_eq!(field(b.finish().unwrap_err()), "chunks");
        let mut b = fresh();
        b.push(0, &x, &y, no_hold).unwrap();
        assert_eq!(
            field(b.push(2, &x[..8], &y[..1], no_hold).unwrap_err()),
            "x"
        );
        let mut b = Builder::new(header(2, sha(&x, &[0, 2]))).unwrap();
        b.push(0, &x, &y, no_hold).unwrap();
        assert_eq!(field(b.finish().unwrap_err()), "header.sha256");
        let nan = rows_f32(&[1.0, 2.0, 3.0, f32::NAN]);
        let e = fresh().push(0, &nan, &y, no_hold).unwrap_err();
        assert_eq!(e.reason, "row 1, column 1 is not finite (NaN or infinite)");
        assert_eq!(
            field(Builder::new(header(0, good.clone())).err().unwrap()),
            "header.rows"
        );
        assert_eq!(
            field(Builder::new(header(2, "ab".into())).err().unwrap()),
            "header.sha256"
        );
    }

    #[test]
    fn a_refused_hold_adds_nothing() {
        let x = rows_f32(&[1.0, 2.0]);
        let mut b = Builder::new(header(1, sha(&x, &[0]))).unwrap();
        let e = b
            .push(0, &x, &[0], |_| Err(refuse("budget", "full")))
            .unwrap_err();
        assert_eq!(e.field, "budget");
        assert_eq!(b.rows(), 0);
    }
}
