//! The gRPC codec of every `backprop.v1` service and client: prost's, except that a
//! message is encoded into a buffer reserved at exactly its encoded size.
//!
//! tonic's own prost codec writes into a buffer that starts at 8 KiB and grows as the
//! message is written. A large answer (GetModel with values, Backward's gradients) writes
//! its first tensor in one piece, which sizes the buffer to that tensor, and the next
//! field then doubles it: an 8 MB answer sat in a 16 MB allocation until the client read
//! it, and a client that never reads held twice the memory its answers were admitted for
//! (measured with bench/attacks: `never-read-get-model` under `ulimit -v` aborted the
//! server on `memory allocation of 16000258 bytes failed`). With the size reserved first,
//! what an answer holds is what the memory budget counted. The size costs one extra pass
//! over the message's lengths, not its values (a tensor's length is its element count
//! times the element size).
use std::marker::PhantomData;

use prost::Message;
use prost::bytes::{BufMut, BytesMut};
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic_prost::ProstDecoder;

/// A [`Codec`] for prost messages that sizes each encode buffer to its message.
#[derive(Debug, Clone, Copy)]
pub struct SizedCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SizedCodec<T, U> {
    fn default() -> Self {
        SizedCodec(PhantomData)
    }
}

impl<T, U> Codec for SizedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = SizedEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        SizedEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

/// Encodes a message after reserving its encoded length.
#[derive(Debug, Clone, Copy)]
pub struct SizedEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for SizedEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        encode_sized(&item, buf)
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// A growable buffer that can be told the room to make: tonic's `EncodeBuf` (over the
/// frame's `BytesMut`), or a `BytesMut` itself.
pub trait Reserve: BufMut {
    fn reserve_room(&mut self, additional: usize);
}

impl Reserve for EncodeBuf<'_> {
    fn reserve_room(&mut self, additional: usize) {
        self.reserve(additional);
    }
}

impl Reserve for BytesMut {
    fn reserve_room(&mut self, additional: usize) {
        self.reserve(additional);
    }
}

/// Reserves the message's encoded length, then encodes it.
pub fn encode_sized<T: Message>(item: &T, buf: &mut impl Reserve) -> Result<(), Status> {
    buf.reserve_room(item.encoded_len());
    // A growable buffer always has room, so prost's only error (too little of it) cannot
    // happen; it is still reported, not unwrapped.
    item.encode(buf)
        .map_err(|e| Status::internal(format!("encoding the message: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    /// The answer that once sat in twice its size: one large tensor, then more fields.
    fn answer() -> pb::GetModelResponse {
        let parameter = |name: &str, rows: u32, cols: u32| pb::ParameterInfo {
            name: name.into(),
            shape: vec![rows, cols],
            value: Some(pb::Tensor {
                shape: vec![rows, cols],
                values: Vec::new(),
                values_f64: vec![0.5; (rows * cols) as usize],
                ..Default::default()
            }),
        };
        pb::GetModelResponse {
            model_id: "0123456789abcdef0123456789abcdef".into(),
            parameters: vec![
                parameter("layers.0.weight", 1000, 1000),
                parameter("layers.0.bias", 1, 1000),
            ],
            ..Default::default()
        }
    }

    /// A buffer as tonic starts one: 8 KiB (`BufferSettings`' default), the 5-byte header.
    fn frame() -> BytesMut {
        let mut bytes = BytesMut::with_capacity(8 << 10);
        bytes.put_slice(&[0; 5]);
        bytes
    }

    #[test]
    fn an_answer_is_encoded_into_a_buffer_of_its_own_size() {
        let len = answer().encoded_len();
        let mut sized = frame();
        encode_sized(&answer(), &mut sized).unwrap();
        assert_eq!(sized.len(), 5 + len);
        assert!(
            sized.capacity() < sized.len() + 4096,
            "{} bytes of room for {}",
            sized.capacity(),
            sized.len()
        );
        assert_eq!(pb::GetModelResponse::decode(&sized[5..]).unwrap(), answer());

        // Without the reservation the buffer ends up near twice the message: the case
        // this codec exists for (if prost or bytes change that, this says so).
        let mut grown = frame();
        answer().encode(&mut grown).unwrap();
        assert_eq!(&grown[..], &sized[..]);
        assert!(
            grown.capacity() > grown.len() * 3 / 2,
            "{} bytes of room for {}",
            grown.capacity(),
            grown.len()
        );
    }
}
