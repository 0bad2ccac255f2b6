//! The hand-written `Tensor` codec against prost's derived one: the same bytes both ways,
//! unpacked and split-buffer inputs, and errors for malformed input.
use backprop::pb::Tensor;
use prost::Message;
use prost::bytes::{Buf, Bytes};

/// What prost would generate for `backprop.v1.Tensor`.
#[derive(Clone, PartialEq, prost::Message)]
struct Reference {
    #[prost(uint32, repeated, tag = "1")]
    shape: Vec<u32>,
    #[prost(float, repeated, tag = "2")]
    values: Vec<f32>,
    #[prost(double, repeated, tag = "3")]
    values_f64: Vec<f64>,
    #[prost(bytes = "vec", tag = "4")]
    raw: Vec<u8>,
    #[prost(int32, tag = "5")]
    raw_dtype: i32,
}

/// The same fields, encoded unpacked (one key per element), which decoders must accept.
#[derive(Clone, PartialEq, prost::Message)]
struct Unpacked {
    #[prost(uint32, repeated, packed = "false", tag = "1")]
    shape: Vec<u32>,
    #[prost(float, repeated, packed = "false", tag = "2")]
    values: Vec<f32>,
    #[prost(double, repeated, packed = "false", tag = "3")]
    values_f64: Vec<f64>,
}

fn sample() -> (Tensor, Reference) {
    let values: Vec<f32> = (0..1000)
        .map(|i| (i as f32 * 0.37).sin() * 1e3)
        .chain([f32::NAN, -0.0, f32::INFINITY])
        .collect();
    let values_f64: Vec<f64> = (0..77).map(|i| (i as f64).cos() / 3.0).collect();
    let shape = vec![3, 1001];
    let raw: Vec<u8> = (0..333u32)
        .flat_map(|i| (i as f32 / 7.0).to_le_bytes())
        .collect();
    (
        Tensor {
            shape: shape.clone(),
            values: values.clone(),
            values_f64: values_f64.clone(),
            raw: raw.clone(),
            raw_dtype: 2,
        },
        Reference {
            shape,
            values,
            values_f64,
            raw,
            raw_dtype: 2,
        },
    )
}

fn same(t: &Tensor, r: &Reference) {
    assert_eq!(t.shape, r.shape);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&t.values), bits(&r.values));
    let bits64 = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits64(&t.values_f64), bits64(&r.values_f64));
    assert_eq!((&t.raw, t.raw_dtype), (&r.raw, r.raw_dtype));
}

#[test]
fn encodes_exactly_as_prost_does() {
    let (t, r) = sample();
    assert_eq!(t.encode_to_vec(), r.encode_to_vec());
    assert_eq!(t.encoded_len(), r.encoded_len());
    assert_eq!(
        Tensor::default().encode_to_vec(),
        Reference::default().encode_to_vec()
    );
}

#[test]
fn decodes_what_prost_encodes() {
    let (_, r) = sample();
    let t = Tensor::decode(r.encode_to_vec().as_slice()).unwrap();
    same(&t, &r);
    let back = Reference::decode(t.encode_to_vec().as_slice()).unwrap();
    same(&t, &back);
}

#[test]
fn decodes_unpacked_elements() {
    let (_, r) = sample();
    let u = Unpacked {
        shape: r.shape.clone(),
        values: r.values.clone(),
        values_f64: r.values_f64.clone(),
    };
    let t = Tensor::decode(u.encode_to_vec().as_slice()).unwrap();
    same(
        &t,
        &Reference {
            raw: Vec::new(),
            raw_dtype: 0,
            ..r
        },
    );
}

#[test]
fn decodes_a_buffer_split_across_chunks() {
    let (_, r) = sample();
    let bytes = r.encode_to_vec();
    for cut in [1, 5, 9, 100, bytes.len() / 2, bytes.len() - 3] {
        let buf =
            Bytes::copy_from_slice(&bytes[..cut]).chain(Bytes::copy_from_slice(&bytes[cut..]));
        let t = Tensor::decode(buf).unwrap();
        same(&t, &r);
    }
}

#[test]
fn rejects_malformed_input() {
    let (_, r) = sample();
    let bytes = r.encode_to_vec();
    // Truncated in the middle of the float block.
    assert!(Tensor::decode(&bytes[..bytes.len() / 2]).is_err());
    // A packed float field whose length is not a multiple of 4.
    let bad = [0x12u8, 0x03, 0, 0, 0];
    assert!(Tensor::decode(&bad[..]).is_err());
    // A length prefix longer than the message.
    let bad = [0x12u8, 0x08, 0, 0, 0, 0];
    assert!(Tensor::decode(&bad[..]).is_err());
    // Unknown fields are skipped, as in any proto3 message.
    let mut with_unknown = vec![0x48u8, 0x07]; // field 9, a varint
    with_unknown.extend(&bytes);
    same(&Tensor::decode(with_unknown.as_slice()).unwrap(), &r);
}
