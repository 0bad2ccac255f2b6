//! Checkpoints: a model saved at step k and restored continues bit-identically, for
//! every optimizer and both dtypes; a damaged file is refused with what is wrong.

use std::collections::HashMap;

use backprop::checkpoint::{self, CheckpointError, FORMAT};
use backprop::engine::Scalar;
use backprop::engine::rng::Rng;
use backprop::model::{
    ActivationSpec, AnyModel, DType, HiddenSpec, LossSpec, Model, ModelSpec, OptimizerSpec,
};
use ndarray::Array2;
use safetensors::SafeTensors;
use support::engine::{all_optimizers, gaussian2, labels};

fn spec(optimizer: OptimizerSpec, dtype: DType, activation: ActivationSpec) -> ModelSpec {
    let mut s = ModelSpec::new(
        5,
        vec![
            HiddenSpec {
                units: 7,
                activation,
            },
            HiddenSpec {
                units: 6,
                activation: ActivationSpec::Tanh,
            },
        ],
        4,
    );
    s.optimizer = optimizer;
    s.dtype = dtype;
    s.loss = LossSpec::Softmax;
    s.l2 = 1e-3;
    s
}

fn batches<T: Scalar>(n: usize, seed: u64) -> Vec<(Array2<T>, Vec<usize>)> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let x = gaussian2(&mut rng, 8, 5, 1.0).mapv(T::of);
            (x, labels(&mut rng, 8, 4))
        })
        .collect()
}

fn train<T: Scalar>(m: &mut Model<T>, batches: &[(Array2<T>, Vec<usize>)]) {
    for (x, y) in batches {
        m.train_step(x.view(), y).unwrap();
    }
}

/// `{:?}` of a float is its shortest round-trip form, so equal text is equal bits
/// (including the sign of zero), unlike `==`.
fn bits(m: &AnyModel) -> String {
    format!("{m:?}")
}

fn typed<T: Scalar>(any: &mut AnyModel) -> &mut Model<T>
where
    AnyModel: AsTyped<T>,
{
    any.typed()
}

trait AsTyped<T> {
    fn typed(&mut self) -> &mut Model<T>;
}

impl AsTyped<f32> for AnyModel {
    fn typed(&mut self) -> &mut Model<f32> {
        match self {
            AnyModel::F32(m) => m,
            AnyModel::F64(_) => panic!("expected an f32 model"),
        }
    }
}

impl AsTyped<f64> for AnyModel {
    fn typed(&mut self) -> &mut Model<f64> {
        match self {
            AnyModel::F64(m) => m,
            AnyModel::F32(_) => panic!("expected an f64 model"),
        }
    }
}

/// Train k steps, save, restore, then train both the same further steps: every value
/// (parameters, optimizer state, step) must stay bit-identical.
fn continues_identically<T: Scalar>(dtype: DType)
where
    AnyModel: AsTyped<T>,
{
    for (i, opt) in all_optimizers().into_iter().enumerate() {
        let mut original = AnyModel::new(spec(opt, dtype, ActivationSpec::Relu)).unwrap();
        let before = batches::<T>(3, 10 + i as u64);
        let after = batches::<T>(4, 20 + i as u64);
        train(typed::<T>(&mut original), &before);

        let bytes = checkpoint::encode(&original, &[("model_id", "abc")]).unwrap();
        let decoded = checkpoint::decode(&bytes).unwrap();
        assert_eq!(
            decoded.extra.get("model_id").map(String::as_str),
            Some("abc")
        );
        let mut restored = decoded.model;
        assert_eq!(bits(&restored), bits(&original), "{opt:?}: restored state");
        assert_eq!(restored.step(), 3);

        train(typed::<T>(&mut original), &after);
        train(typed::<T>(&mut restored), &after);
        assert_eq!(
            bits(&restored),
            bits(&original),
            "{opt:?}: after 4 more steps"
        );
        assert_eq!(restored.step(), 7);
        // And the state really moved, so the comparison above compared something.
        let fresh = AnyModel::new(spec(opt, dtype, ActivationSpec::Relu)).unwrap();
        assert_ne!(bits(&fresh), bits(&restored));
    }
}

#[test]
fn f32_models_continue_bit_identically() {
    continues_identically::<f32>(DType::F32);
}

#[test]
fn f64_models_continue_bit_identically() {
    continues_identically::<f64>(DType::F64);
}

#[test]
fn maxout_and_no_bias_round_trip() {
    let mut s = spec(
        OptimizerSpec::adam(),
        DType::F64,
        ActivationSpec::Maxout { pieces: 3 },
    );
    s.bias = false;
    let mut m = AnyModel::new(s).unwrap();
    train(typed::<f64>(&mut m), &batches::<f64>(2, 5));
    let back = checkpoint::decode(&checkpoint::encode(&m, &[]).unwrap()).unwrap();
    assert_eq!(bits(&back.model), bits(&m));
    assert!(
        back.extra.is_empty(),
        "only caller keys are extra: {:?}",
        back.extra
    );
}

#[test]
fn tensors_carry_the_api_names_and_the_spec_is_json() {
    let mut m = AnyModel::new(spec(
        OptimizerSpec::adam(),
        DType::F32,
        ActivationSpec::Relu,
    ))
    .unwrap();
    train(typed::<f32>(&mut m), &batches::<f32>(2, 1));
    let bytes = checkpoint::encode(&m, &[("a", "1"), ("b", "2"), ("c", "3")]).unwrap();
    for _ in 0..5 {
        let again = checkpoint::encode(&m, &[("a", "1"), ("b", "2"), ("c", "3")]).unwrap();
        assert!(
            again == bytes,
            "one state, one file: the header's keys are sorted"
        );
    }
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<&str> = file.names();
    names.sort();
    let mut want = vec![];
    for l in 0..3 {
        for p in ["weight", "bias"] {
            let base = format!("layers.{l}.{p}");
            want.push(format!("{base}.adam_m"));
            want.push(format!("{base}.adam_v"));
            want.push(base);
        }
    }
    want.sort();
    assert_eq!(names, want);
    let w = file.tensor("layers.0.weight").unwrap();
    assert_eq!(w.shape(), &[5, 7]);
    assert_eq!(w.dtype(), safetensors::Dtype::F32);
    // The bytes are the parameter's values in row-major order, little-endian.
    let AnyModel::F32(typed) = &m else {
        unreachable!()
    };
    let first: Vec<f32> = w.data()[..8]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(
        first,
        [
            typed.net().params()[0].value[[0, 0]],
            typed.net().params()[0].value[[0, 1]]
        ]
    );

    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    assert_eq!(meta["format"], FORMAT);
    assert_eq!(meta["step"], "2");
    assert_eq!(meta["optimizer_t"], "2");
    let spec: ModelSpec = serde_json::from_str(&meta["spec"]).unwrap();
    assert_eq!(&spec, m.spec());
}

/// Rebuilds a checkpoint with some tensors and metadata changed.
fn rewrite(
    bytes: &[u8],
    edit: impl FnOnce(
        &mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>,
        &mut HashMap<String, String>,
    ),
) -> Vec<u8> {
    let file = SafeTensors::deserialize(bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    let mut tensors: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors, &mut meta);
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, Some(meta)).unwrap()
}

#[test]
fn damaged_files_are_refused_with_what_is_wrong() {
    let mut m = AnyModel::new(spec(
        OptimizerSpec::momentum(),
        DType::F64,
        ActivationSpec::Relu,
    ))
    .unwrap();
    train(typed::<f64>(&mut m), &batches::<f64>(1, 2));
    let good = checkpoint::encode(&m, &[]).unwrap();
    let err = |bytes: &[u8]| checkpoint::decode(bytes).unwrap_err();

    // Truncated anywhere: the header no longer matches the buffer.
    for cut in [0, 7, 8, 100, good.len() - 1] {
        assert!(
            matches!(err(&good[..cut]), CheckpointError::Format(_)),
            "cut at {cut}"
        );
    }
    // A garbled header.
    let mut garbled = good.clone();
    garbled[12] ^= 0x5a;
    assert!(matches!(err(&garbled), CheckpointError::Format(_)));

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "missing tensor",
            rewrite(&good, |t, _| {
                t.retain(|(n, ..)| n != "layers.1.weight.momentum")
            }),
            "tensor \"layers.1.weight.momentum\": missing",
        ),
        (
            "extra tensor",
            rewrite(&good, |t, _| {
                t.push((
                    "layers.9.weight".into(),
                    safetensors::Dtype::F64,
                    vec![1],
                    vec![0; 8],
                ))
            }),
            "tensor \"layers.9.weight\": not a parameter or optimizer state of this spec",
        ),
        (
            "wrong dtype",
            rewrite(&good, |t, _| {
                let w = t.iter_mut().find(|(n, ..)| n == "layers.0.bias").unwrap();
                w.1 = safetensors::Dtype::F32;
                w.3.truncate(w.3.len() / 2);
            }),
            "tensor \"layers.0.bias\": dtype F32, but the spec's dtype is F64",
        ),
        (
            "wrong shape",
            rewrite(&good, |t, _| {
                let w = t.iter_mut().find(|(n, ..)| n == "layers.0.weight").unwrap();
                w.2 = vec![7, 5];
            }),
            "layers.0.weight: expected shape [5, 7], got [7, 5]",
        ),
        (
            "NaN in the state",
            rewrite(&good, |t, _| {
                let w = t
                    .iter_mut()
                    .find(|(n, ..)| n == "layers.2.bias.momentum")
                    .unwrap();
                w.3[8..16].copy_from_slice(&f64::NAN.to_le_bytes());
            }),
            "layers.2.bias.momentum: value at flat index 1 is not finite (NaN)",
        ),
        (
            "another format",
            rewrite(&good, |_, m| {
                m.insert("format".into(), "pytorch".into());
            }),
            "__metadata__.format: \"pytorch\" is not \"backprop.checkpoint.v1\"",
        ),
        (
            "no step",
            rewrite(&good, |_, m| {
                m.remove("step");
            }),
            "__metadata__.step: missing",
        ),
        (
            "a spec that fails validation",
            rewrite(&good, |_, m| {
                let s = m["spec"].replace("\"num_classes\":4", "\"num_classes\":0");
                m.insert("spec".into(), s);
            }),
            "num_classes",
        ),
    ];
    for (what, bytes, want) in cases {
        let got = err(&bytes).to_string();
        assert!(got.contains(want), "{what}: got {got:?}, want {want:?}");
    }
    // The untouched file still loads (the rewrite itself is faithful).
    let same = rewrite(&good, |_, _| {});
    assert_eq!(bits(&checkpoint::decode(&same).unwrap().model), bits(&m));
}

/// A checkpoint whose one tensor `name` has `value` at flat index `index`.
fn with_value(good: &[u8], name: &str, index: usize, value: f32) -> Vec<u8> {
    rewrite(good, |t, _| {
        let w = t.iter_mut().find(|(n, ..)| n == name).unwrap();
        w.3[index * 4..index * 4 + 4].copy_from_slice(&value.to_le_bytes());
    })
}

#[test]
fn negative_second_moments_are_refused_with_the_tensor_and_index() {
    for (optimizer, slot) in [
        (OptimizerSpec::adam(), "adam_v"),
        (OptimizerSpec::rmsprop(), "rmsprop_cache"),
    ] {
        let mut m = AnyModel::new(spec(optimizer, DType::F32, ActivationSpec::Relu)).unwrap();
        train(typed::<f32>(&mut m), &batches::<f32>(2, 3));
        let good = checkpoint::encode(&m, &[]).unwrap();
        let name = format!("layers.1.weight.{slot}");
        let got = checkpoint::decode(&with_value(&good, &name, 3, -0.25))
            .unwrap_err()
            .to_string();
        assert_eq!(
            got,
            format!(
                "{name}: value at flat index 3 is negative (-0.25); this slot is a running \
                 average of squared gradients, never below 0"
            )
        );
        // Zero is a legal second moment (a parameter whose gradient was always 0).
        assert!(checkpoint::decode(&with_value(&good, &name, 3, 0.0)).is_ok());
    }
    // First moments and momentum may be negative.
    for (optimizer, slot) in [
        (OptimizerSpec::adam(), "adam_m"),
        (OptimizerSpec::momentum(), "momentum"),
    ] {
        let mut m = AnyModel::new(spec(optimizer, DType::F32, ActivationSpec::Relu)).unwrap();
        train(typed::<f32>(&mut m), &batches::<f32>(2, 3));
        let good = checkpoint::encode(&m, &[]).unwrap();
        let name = format!("layers.1.weight.{slot}");
        assert!(checkpoint::decode(&with_value(&good, &name, 3, -0.25)).is_ok());
    }
}

#[test]
fn an_oversized_header_or_spec_is_refused_before_it_is_decoded() {
    let m = AnyModel::new(spec(OptimizerSpec::sgd(), DType::F32, ActivationSpec::Relu)).unwrap();
    let good = checkpoint::encode(&m, &[]).unwrap();
    let meta = SafeTensors::read_metadata(&good).unwrap().1;
    let spec_json = meta.metadata().as_ref().unwrap()["spec"].clone();
    let hidden = |n: usize| {
        let layer = r#"{"units":1,"activation":{"kind":"relu"}}"#;
        let layers = vec![layer; n].join(",");
        let start = spec_json.find("\"hidden\":[").unwrap() + "\"hidden\":[".len();
        let end = start + spec_json[start..].find("]").unwrap();
        format!("{}{layers}{}", &spec_json[..start], &spec_json[end..])
    };
    let with_spec = |s: String| {
        rewrite(&good, move |_, meta| {
            meta.insert("spec".into(), s);
        })
    };
    // A million layers (40 MB of JSON, once 1 GB to decode): the header is too big.
    let huge = with_spec(hidden(1_000_000));
    let e = checkpoint::decode(&huge).unwrap_err().to_string();
    assert!(
        e.starts_with("not a safetensors file: the JSON header is ")
            && e.ends_with(&format!(
                "bytes, more than the {} any model this server can hold needs",
                checkpoint::MAX_HEADER_BYTES
            )),
        "{e}"
    );
    // 200,000 layers (8 MB) fit in the header but not in a spec.
    let e = checkpoint::decode(&with_spec(hidden(200_000)))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("__metadata__.spec: ")
            && e.ends_with(&format!(
                "bytes of JSON, more than the {} a spec of at most 128 hidden layers needs",
                checkpoint::MAX_SPEC_BYTES
            )),
        "{e}"
    );
    // Ten thousand layers fit in the JSON: the depth is checked before anything is built.
    let e = checkpoint::decode(&with_spec(hidden(10_000)))
        .unwrap_err()
        .to_string();
    assert_eq!(e, "__metadata__.spec: 10000 hidden layers; at most 128");
    // 129 layers fit in the JSON: the depth is checked before anything is built.
    let e = checkpoint::decode(&with_spec(hidden(129)))
        .unwrap_err()
        .to_string();
    assert_eq!(e, "__metadata__.spec: 129 hidden layers; at most 128");
    // The header length itself, before any parse: 1 MiB over the limit claimed by an
    // 8-byte prefix.
    let claimed = checkpoint::MAX_HEADER_BYTES + (1 << 20);
    let mut claim = claimed.to_le_bytes().to_vec();
    claim.extend_from_slice(b"{}");
    let e = checkpoint::decode(&claim).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "not a safetensors file: the JSON header is {claimed} bytes, more than the {} \
             any model this server can hold needs",
            checkpoint::MAX_HEADER_BYTES
        )
    );
}
