//! `backprop.v1.Tensor`, written by hand instead of generated, so that decoding a batch
//! costs one copy. prost's generated code reads a packed `repeated float` one element at a
//! time; on a W1 request (614,400 floats, 2.5 MB) that loop was ~36% of the server's CPU
//! per TrainStep (`perf`, bench/README.md). Here a packed field that lies in one buffer
//! chunk (tonic hands the message over in one piece) is converted in a single pass over its
//! bytes; anything else (unpacked elements, a split buffer) falls back to prost's own
//! decoder, so every valid encoding is still accepted. The wire format is exactly the
//! `.proto`'s: field 1 packed uint32, 2 packed float, 3 packed double, 4 bytes (`raw`),
//! 5 the `Dtype` enum (`raw_dtype`).
use prost::DecodeError;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};

/// A shape plus row-major values; see the `.proto` for the contract.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct Tensor {
    /// Dimensions, outermost first.
    pub shape: Vec<u32>,
    /// Row-major values as f32 (empty when `values_f64` is used).
    pub values: Vec<f32>,
    /// Row-major values as f64 (empty when `values` is used).
    pub values_f64: Vec<f64>,
    /// Row-major values as little-endian bytes of `raw_dtype` (empty when `values` or
    /// `values_f64` is used): what clients that hold arrays send and take in one copy.
    pub raw: Vec<u8>,
    /// `backprop.v1.Dtype` of `raw` (0, unspecified, is f32).
    pub raw_dtype: i32,
}

impl prost::Message for Tensor {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        encoding::uint32::encode_packed(1, &self.shape, buf);
        encode_packed_le(2, &self.values, |v| v.to_le_bytes(), buf);
        encode_packed_le(3, &self.values_f64, |v| v.to_le_bytes(), buf);
        if !self.raw.is_empty() {
            encoding::bytes::encode(4, &self.raw, buf);
        }
        if self.raw_dtype != 0 {
            encoding::int32::encode(5, &self.raw_dtype, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => encoding::uint32::merge_repeated(wire_type, &mut self.shape, buf, ctx),
            2 if wire_type == WireType::LengthDelimited
                && merge_packed_le(&mut self.values, f32::from_le_bytes, buf) =>
            {
                Ok(())
            }
            2 => encoding::float::merge_repeated(wire_type, &mut self.values, buf, ctx),
            3 if wire_type == WireType::LengthDelimited
                && merge_packed_le(&mut self.values_f64, f64::from_le_bytes, buf) =>
            {
                Ok(())
            }
            3 => encoding::double::merge_repeated(wire_type, &mut self.values_f64, buf, ctx),
            4 => encoding::bytes::merge(wire_type, &mut self.raw, buf, ctx),
            5 => encoding::int32::merge(wire_type, &mut self.raw_dtype, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        encoding::uint32::encoded_len_packed(1, &self.shape)
            + encoding::float::encoded_len_packed(2, &self.values)
            + encoding::double::encoded_len_packed(3, &self.values_f64)
            + if self.raw.is_empty() {
                0
            } else {
                encoding::bytes::encoded_len(4, &self.raw)
            }
            + if self.raw_dtype == 0 {
                0
            } else {
                encoding::int32::encoded_len(5, &self.raw_dtype)
            }
    }

    fn clear(&mut self) {
        self.shape.clear();
        self.values.clear();
        self.values_f64.clear();
        self.raw.clear();
        self.raw_dtype = 0;
    }
}

/// Appends a packed field of `N`-byte little-endian numbers. The bytes are gathered into
/// one buffer and written with a single `put_slice`.
fn encode_packed_le<T: Copy, const N: usize>(
    tag: u32,
    values: &[T],
    le: impl Fn(T) -> [u8; N],
    buf: &mut impl BufMut,
) {
    if values.is_empty() {
        return;
    }
    encoding::encode_key(tag, WireType::LengthDelimited, buf);
    encoding::encode_varint((values.len() * N) as u64, buf);
    let bytes: Vec<u8> = values.iter().flat_map(|&v| le(v)).collect();
    buf.put_slice(&bytes);
}

/// `bytes` read as `N`-byte little-endian values, in one pass (a trailing partial value
/// is left out: callers check the length first). Packed fields and `raw` tensors alike.
pub(crate) fn le_values<'b, T: 'b, const N: usize>(
    bytes: &'b [u8],
    from_le: fn([u8; N]) -> T,
) -> impl Iterator<Item = T> + 'b {
    bytes.chunks_exact(N).map(move |c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        from_le(a)
    })
}

/// Decodes one packed field of `N`-byte little-endian numbers into `out` in one pass, when
/// its length prefix and bytes lie in the current chunk and the length is a whole number of
/// elements. Returns false, having consumed nothing, otherwise: the caller then uses prost's
/// own decoder, which also produces prost's errors for malformed input.
fn merge_packed_le<T, const N: usize>(
    out: &mut Vec<T>,
    from_le: fn([u8; N]) -> T,
    buf: &mut impl Buf,
) -> bool {
    let chunk = buf.chunk();
    let mut rest = chunk;
    let Ok(len) = encoding::decode_varint(&mut rest) else {
        return false;
    };
    let header = chunk.len() - rest.len();
    let Ok(len) = usize::try_from(len) else {
        return false;
    };
    if len > rest.len() || len % N != 0 {
        return false;
    }
    out.reserve(len / N);
    out.extend(le_values(&rest[..len], from_le));
    buf.advance(header + len);
    true
}
