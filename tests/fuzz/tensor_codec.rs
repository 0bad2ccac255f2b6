//! `tensor_codec_*`: the hand-written `Tensor` decoder against prost's derived one.
use super::*;

/// A buffer in several pieces, as the network may hand it over; the hand-written decoder
/// takes its one-pass path only within a piece.
pub(crate) struct Pieces(pub(crate) std::collections::VecDeque<Bytes>);

impl Buf for Pieces {
    fn remaining(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }
    fn chunk(&self) -> &[u8] {
        self.0.front().map_or(&[], |b| b.as_ref())
    }
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let front = self.0.front_mut().expect("advance past the end");
            let k = n.min(front.len());
            front.advance(k);
            n -= k;
            if front.is_empty() {
                self.0.pop_front();
            }
        }
    }
}

pub(crate) fn split(b: &[u8], cuts: &[usize]) -> Pieces {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|&c| if b.is_empty() { 0 } else { c % b.len() })
        .collect();
    at.push(0);
    at.push(b.len());
    at.sort_unstable();
    at.dedup();
    Pieces(
        at.windows(2)
            .map(|w| Bytes::copy_from_slice(&b[w[0]..w[1]]))
            .collect(),
    )
}

pub(crate) fn same_tensor(ours: &pb::Tensor, theirs: &reference::Tensor) -> bool {
    ours.shape == theirs.shape
        && ours
            .values
            .iter()
            .map(|v| v.to_bits())
            .eq(theirs.values.iter().map(|v| v.to_bits()))
        && ours
            .values_f64
            .iter()
            .map(|v| v.to_bits())
            .eq(theirs.values_f64.iter().map(|v| v.to_bits()))
        && ours.raw == theirs.raw
        && ours.raw_dtype == theirs.raw_dtype
}

pub(crate) fn agree(
    what: &str,
    ours: &Result<pb::Tensor, prost::DecodeError>,
    theirs: &Result<reference::Tensor, prost::DecodeError>,
) -> Result<(), TestCaseError> {
    match (ours, theirs) {
        (Ok(o), Ok(t)) => prop_assert!(same_tensor(o, t), "{what}: ours {o:?}, prost's {t:?}"),
        (Err(_), Err(_)) => {}
        _ => return Err(fail(format!("{what}: ours {ours:?}, prost's {theirs:?}"))),
    }
    Ok(())
}

#[test]
pub(crate) fn tensor_codec_agrees_with_prost_on_any_bytes() {
    // A valid tensor with well-formed fields glued on (decodable, merged or skipped),
    // as often as the hostile kinds.
    let valid = (
        vec(0u32..6, 0..4),
        vec(any::<f32>(), 0..12),
        vec(any::<f64>(), 0..6),
    )
        .prop_map(|(shape, values, values_f64)| {
            reference::Tensor {
                shape,
                values,
                values_f64,
                ..Default::default()
            }
            .encode_to_vec()
        });
    let bytes = prop_oneof![
        3 => hostile_tensor(),
        1 => vec(any::<u8>(), 0..96),
        1 => (hostile_tensor(), vec(mutation(), 1..=2))
            .prop_map(|(t, ms)| ms.iter().fold(t, |b, m| mutate("Tensor", b, m))),
        6 => (valid, vec(well_formed_field(), 0..=3)).prop_map(|(t, fields)| {
            // A tensor's own fields: an unknown one is skipped, field 2 (a tensor inside)
            // is read as packed f32 values, which may or may not be whole.
            [t, fields.concat()].concat()
        }),
    ];
    let strategy = (
        bytes.prop_map(Hex),
        vec(any::<usize>(), 0..4),
        any::<bool>(),
    );
    let shares = [("decode Ok", 0.35), ("decode Err", 0.3)];
    check(
        "Tensor codec",
        20000,
        strategy,
        &shares,
        |(b, cuts, prefilled)| {
            let b = &b.0;
            // Decoding from one piece: the same answer as prost, and no allocation much larger
            // than the message (a Vec holds at most 4 bytes per input byte, doubled by growth).
            THREAD_LARGEST.with(|c| c.set(0));
            let ours = pb::Tensor::decode(&b[..]);
            let largest = THREAD_LARGEST.with(Cell::get);
            let theirs = reference::Tensor::decode(&b[..]);
            agree("contiguous", &ours, &theirs)?;
            tally(
                "Tensor codec",
                "decode",
                if ours.is_ok() { "Ok" } else { "Err" },
            );
            prop_assert!(
                largest <= 8 * b.len() + 256,
                "decoding {} bytes allocated {largest} bytes at once",
                b.len()
            );
            // In pieces (the fallback path): the same.
            agree("split", &pb::Tensor::decode(split(b, &cuts)), &theirs)?;
            // Merged into a tensor that already holds values: appended, as prost appends.
            if prefilled {
                let mut o = pb::Tensor {
                    shape: vec![1],
                    values: vec![0.5],
                    values_f64: vec![-0.5],
                    ..Default::default()
                };
                let mut t = reference::Tensor {
                    shape: vec![1],
                    values: vec![0.5],
                    values_f64: vec![-0.5],
                    ..Default::default()
                };
                let (ro, rt) = (o.merge(split(b, &cuts)), t.merge(&b[..]));
                prop_assert_eq!(
                    ro.is_ok(),
                    rt.is_ok(),
                    "merge: ours {:?}, prost's {:?}",
                    ro,
                    rt
                );
                if ro.is_ok() {
                    prop_assert!(same_tensor(&o, &t), "merge: ours {o:?}, prost's {t:?}");
                }
            }
            Ok(())
        },
    );
}
