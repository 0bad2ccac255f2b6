//! An upload's strict decoding, chunk by chunk: the header is checked before anything is
//! held, each chunk must carry whole rows starting where the last one ended with one
//! label per row and finite values, and the finished dataset must have exactly the
//! declared rows and SHA-256. Anything else is refused with the field at fault, and
//! nothing is created.
//!
//! The checksum is kept apart from the rows ([`DatasetHash`], handed to
//! [`Builder::finish`]): SHA-256 is the slowest part of an upload (about 1 GB/s on one
//! core with the CPU's SHA instructions) and cannot be split, so the server hashes one
//! chunk while it decodes the same chunk on another core and receives the next.
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
    /// Rows held against the budget so far (the buffers may have address space for more).
    held_rows: usize,
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
            held_rows: 0,
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
        self.reserve(n as usize, &mut hold)?;
        let bad = match &mut self.values {
            Values::F32(v) => append_finite(v, x, f32::from_le_bytes, f32::is_finite),
            Values::F64(v) => append_finite(v, x, f64::from_le_bytes, f64::is_finite),
        };
        if let Some(i) = bad {
            let dim = self.header.dim as u64;
            let (row, col) = (first_row + i as u64 / dim, i as u64 % dim);
            return Err(refuse(
                "x",
                format!("row {row}, column {col} is not finite (NaN or infinite)"),
            )
            .into());
        }
        self.labels.extend_from_slice(labels);
        Ok(())
    }

    /// Holds room for `n` more rows against the budget, doubling (never past the declared
    /// rows) so a stream that sends one row and stalls holds little, and makes sure the
    /// buffers have it. The buffers themselves take the whole declared size at once, as
    /// address space only: the kernel gives a page memory when a row is first written
    /// to it, so what is resident never runs ahead of what is held, and the rows are
    /// never copied to a larger buffer as they arrive.
    fn reserve<E>(
        &mut self,
        n: usize,
        hold: &mut impl FnMut(u64) -> Result<(), E>,
    ) -> Result<(), E> {
        let dim = self.header.dim as usize;
        let width = dtype_width(self.header.dtype);
        let have = self.labels.len();
        if have + n <= self.held_rows {
            return Ok(());
        }
        let total = self.header.rows as usize;
        let rows = (have + n)
            .max(self.held_rows * 2)
            .max(FIRST_ROWS.min(total))
            .min(total);
        let more = (rows - self.held_rows) as u64;
        hold(more * (dim as u64 * width + 4))?;
        self.held_rows = rows;
        // The whole declared size when the address space allows it, else what is held.
        let want = if self.labels.capacity() == 0 {
            total
        } else {
            rows
        };
        match &mut self.values {
            Values::F32(v) => grow(v, want * dim, rows * dim),
            Values::F64(v) => grow(v, want * dim, rows * dim),
        }
        grow(&mut self.labels, want, rows);
        Ok(())
    }

    /// The dataset, once every declared row has arrived and the checksum matches:
    /// `rows_hash` has seen every pushed chunk's `x`, in order (the labels' bytes are
    /// added here).
    pub fn finish(self, rows_hash: DatasetHash) -> Result<Dataset, DatasetError> {
        let (have, want) = (self.rows(), self.header.rows);
        if have < want {
            return Err(refuse(
                "chunks",
                format!("the upload is truncated: {have} of {want} rows arrived"),
            ));
        }
        let got = rows_hash.finish(&self.labels);
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

/// Appends the little-endian values in `x` to `v`, unless one is not finite: then `v` is
/// left as it was and the value's index in `x` is returned. The bytes are copied in one
/// go and checked as values after (two passes over a chunk that fits in cache), which
/// runs at memory speed where a value-by-value decode did not.
fn append_finite<T: Copy, const W: usize>(
    v: &mut Vec<T>,
    x: &[u8],
    #[cfg_attr(target_endian = "little", allow(unused_variables))] from_le: fn([u8; W]) -> T,
    finite: fn(T) -> bool,
) -> Option<usize> {
    let start = v.len();
    #[cfg(target_endian = "little")]
    {
        let n = x.len() / W;
        v.reserve_exact(n);
        // SAFETY: `T` is f32 or f64 (W = its size, every bit pattern a value), stored
        // little-endian on this target, so `x`'s first n·W bytes are n values as they lie
        // in memory. `reserve` made room for n more after `start`, the regions do not
        // overlap (`x` is the request's buffer), and `set_len` covers exactly the
        // values written.
        unsafe {
            std::ptr::copy_nonoverlapping(
                x.as_ptr(),
                v.as_mut_ptr().add(start).cast::<u8>(),
                n * W,
            );
            v.set_len(start + n);
        }
    }
    #[cfg(not(target_endian = "little"))]
    v.extend(
        x.chunks_exact(W)
            .map(|b| from_le(b.try_into().expect("W bytes"))),
    );
    let bad = v[start..].iter().position(|&a| !finite(a));
    if bad.is_some() {
        v.truncate(start);
    }
    bad
}

/// Gives `v` room for `want` values in all, or at least `need` when the address space for
/// `want` cannot be had; asks the kernel to back a large buffer with huge pages, which
/// halves the cost of first writing it (measured: 123 MB copied in 53 ms instead of
/// 115 ms, docs/PERFORMANCE.md).
fn grow<T>(v: &mut Vec<T>, want: usize, need: usize) {
    let before = v.capacity();
    if v.try_reserve_exact(want.saturating_sub(v.len())).is_err() {
        v.reserve_exact(need.saturating_sub(v.len()));
    }
    // Once per new buffer, not at every later hold.
    if v.capacity() != before {
        advise_huge_pages(v);
    }
}

/// `madvise(MADV_HUGEPAGE)` over the 2 MiB-aligned part of `v`'s buffer (Linux only; a
/// hint the kernel may ignore, so its result is not checked).
fn advise_huge_pages<T>(v: &mut Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = v.capacity() * std::mem::size_of::<T>();
        let start = v.as_mut_ptr() as usize;
        let aligned = start.next_multiple_of(HUGE);
        let end = (start + bytes) / HUGE * HUGE;
        if end > aligned {
            // SAFETY: [aligned, end) lies inside `v`'s allocation, which outlives the call;
            // MADV_HUGEPAGE changes how pages are backed, never their contents.
            unsafe {
                libc::madvise(
                    aligned as *mut libc::c_void,
                    end - aligned,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
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

    /// The rows' hash as the server keeps it beside the builder.
    fn hashed(x: &[u8]) -> DatasetHash {
        let mut h = DatasetHash::default();
        h.rows(x);
        h
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
        let d = b.finish(hashed(&x)).unwrap();
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
        assert_eq!(field(b.finish(hashed(&x[..8])).unwrap_err()), "chunks");
        let mut b = fresh();
        b.push(0, &x, &y, no_hold).unwrap();
        assert_eq!(
            field(b.push(2, &x[..8], &y[..1], no_hold).unwrap_err()),
            "x"
        );
        let mut b = Builder::new(header(2, sha(&x, &[0, 2]))).unwrap();
        b.push(0, &x, &y, no_hold).unwrap();
        assert_eq!(field(b.finish(hashed(&x)).unwrap_err()), "header.sha256");
        // Rows the hash did not see (a chunk left unhashed) fail the checksum too.
        let mut b = fresh();
        b.push(0, &x, &y, no_hold).unwrap();
        assert_eq!(
            field(b.finish(hashed(&x[..8])).unwrap_err()),
            "header.sha256"
        );
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
