//! Strategies shared by the families: numbers (tame, NaN/Inf, overflowing), tensors in every carrier and size up to the limits, labels.
use super::*;

/// Mostly ordinary numbers, sometimes the nasty ones: NaN, ±Inf, ±0, subnormals, values
/// that are finite in f64 but not in f32, the extremes, and any bit pattern.
pub(crate) fn number() -> BoxedStrategy<f64> {
    prop_oneof![
        12 => -3.0f64..3.0,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(0.0),
        1 => Just(-0.0),
        1 => Just(1e39),
        1 => Just(-3.0e38),
        1 => Just(f64::MAX),
        1 => Just(1e-320),
        1 => Just(1e-42),
        1 => any::<f64>(),
    ]
    .boxed()
}

/// A dimension: usually small or the expected one, sometimes 0, 2¹⁶, u32::MAX or any.
pub(crate) fn dim(expected: u32) -> BoxedStrategy<u32> {
    prop_oneof![
        6 => 0u32..=6,
        3 => Just(expected),
        1 => Just(1 << 16),
        1 => Just(u32::MAX),
        1 => any::<u32>(),
    ]
    .boxed()
}

/// Which field carries the numbers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Carrier {
    F32,
    F64,
    Both,
}

/// A tensor meant to be `rows × cols`: usually that shape with the right number of
/// values, sometimes 0 rows, a random shape, a count off by a little or a lot, both
/// value fields, or nasty numbers.
pub(crate) fn tensor(rows: Option<u32>, cols: u32) -> BoxedStrategy<pb::Tensor> {
    // Up to the batch limit, and just over it, with as many values as the shape says: the
    // size-dependent paths (the limit's RESOURCE_EXHAUSTED, TraceStep's 64 rows, the
    // numeric-gradient budget, big buffers through the codec) are reachable.
    let most = (MAX_BATCH_ELEMENTS / cols.max(1) as usize) as u32;
    let rows = match rows {
        Some(n) => Just(n).boxed(),
        None => prop_oneof![
            60 => 1u32..=12,
            6 => 13u32..=200,
            1 => 201u32..=most.max(201),
            1 => Just(most),
            1 => Just(most + 1),
        ]
        .boxed(),
    };
    let shape = prop_oneof![
        8 => rows.prop_map(move |n| vec![n, cols]),
        1 => Just(vec![0, cols]),
        2 => vec(dim(cols), 0..=4),
    ];
    shape
        .prop_flat_map(|shape| {
            let product = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
            let exact = product
                .filter(|&n| n <= 2 * MAX_BATCH_ELEMENTS as u64)
                .map(|n| n as usize);
            let count = match exact {
                Some(n) => prop_oneof![
                    10 => Just(n),
                    1 => Just(n + 1),
                    1 => Just(n.saturating_sub(1)),
                    1 => 0usize..=40,
                ]
                .boxed(),
                None => (0usize..=40).boxed(),
            };
            let carrier = prop_oneof![
                6 => Just(Carrier::F32),
                6 => Just(Carrier::F64),
                1 => Just(Carrier::Both),
            ];
            (Just(shape), count, carrier)
        })
        .prop_flat_map(|(shape, count, carrier)| {
            let values = if count <= SMALL {
                prop_oneof![
                    4 => vec(-3.0f64..3.0, count),
                    1 => vec(number(), count),
                ]
                .boxed()
            } else {
                (any::<u64>(), any::<bool>())
                    .prop_map(move |(seed, nasty)| many_values(count, seed, nasty))
                    .boxed()
            };
            (Just(shape), Just(carrier), values)
        })
        .prop_map(|(shape, carrier, v)| {
            let f32s = || v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
            let (values, values_f64) = match carrier {
                Carrier::F32 => (f32s(), vec![]),
                Carrier::F64 => (vec![], v.clone()),
                Carrier::Both => (f32s(), v.clone()),
            };
            pb::Tensor {
                shape,
                values,
                values_f64,
                ..Default::default()
            }
        })
        .boxed()
}

/// Above this many elements a vector is drawn from one seed (see [`many_values`]):
/// proptest's per-element value trees would take hundreds of bytes per element.
pub(crate) const SMALL: usize = 256;

/// splitmix64: the generator behind the big vectors.
pub(crate) fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `count` values in [-3, 3) from `seed`; `nasty` puts a NaN, an infinity or an f32
/// overflow at a few places.
pub(crate) fn many_values(count: usize, seed: u64, nasty: bool) -> Vec<f64> {
    let mut state = seed;
    let mut v: Vec<f64> = (0..count)
        .map(|_| (splitmix(&mut state) >> 11) as f64 / (1u64 << 53) as f64 * 6.0 - 3.0)
        .collect();
    if nasty {
        for bad in [f64::NAN, f64::INFINITY, 1e39] {
            let at = (splitmix(&mut state) % count as u64) as usize;
            v[at] = bad;
        }
    }
    v
}

/// Rows of a batch tensor, if it is a matrix.
pub(crate) fn rows_of(x: &Option<pb::Tensor>) -> u32 {
    x.as_ref()
        .filter(|t| t.shape.len() == 2)
        .map_or(2, |t| t.shape[0])
}

/// Labels for `rows` rows of `c` classes: usually right, sometimes out of range, the wrong
/// count, or none.
pub(crate) fn labels(rows: u32, c: u32) -> BoxedStrategy<Vec<u32>> {
    let label = prop_oneof![
        12 => 0..c,
        1 => Just(c),
        1 => Just(u32::MAX),
        1 => any::<u32>(),
    ];
    let n = rows.min(2 * MAX_BATCH_ELEMENTS as u32) as usize;
    if n > SMALL {
        // Drawn from one seed; sometimes one label out of range, or one short.
        return (any::<u64>(), 0u8..8)
            .prop_map(move |(seed, how)| {
                let mut state = seed;
                let mut l: Vec<u32> = (0..n)
                    .map(|_| (splitmix(&mut state) % c as u64) as u32)
                    .collect();
                match how {
                    0 => l[n / 2] = c,
                    1 => {
                        l.pop();
                    }
                    _ => {}
                }
                l
            })
            .boxed();
    }
    prop_oneof![
        12 => vec(0..c, n),
        2 => vec(label, n),
        1 => vec(0..c, 0..=8),
        1 => Just(vec![]),
    ]
    .boxed()
}

/// A batch X (usually present) and labels to go with it.
pub(crate) fn batch(d: u32, c: u32) -> BoxedStrategy<(Option<pb::Tensor>, Vec<u32>)> {
    prop_oneof![
        14 => tensor(None, d).prop_map(Some),
        1 => Just(None),
    ]
    .prop_flat_map(move |x| {
        let rows = rows_of(&x);
        (Just(x), labels(rows, c))
    })
    .boxed()
}
