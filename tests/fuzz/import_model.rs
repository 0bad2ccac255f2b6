//! `import_model_*`: damaged checkpoints and damaged uploads.
use super::*;

/// ExportModel's chunks, collected; a status mid-stream ends it.
pub(crate) async fn export(
    c: &mut Client,
    req: pb::ExportModelRequest,
) -> Result<Result<Vec<pb::CheckpointChunk>, Status>, TestCaseError> {
    let call = async {
        let mut stream = c.export_model(req).await?.into_inner();
        let mut chunks = Vec::new();
        while let Some(chunk) = stream.message().await? {
            chunks.push(chunk);
        }
        Ok(tonic::Response::new(chunks))
    };
    within("ExportModel", call).await
}

pub(crate) async fn import(
    c: &mut Client,
    chunks: Vec<pb::CheckpointChunk>,
) -> Result<Result<pb::ImportModelResponse, Status>, TestCaseError> {
    let stream = tonic::codegen::tokio_stream::iter(chunks);
    within("ImportModel", c.import_model(stream)).await
}

pub(crate) fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// A file as an upload: `size`-byte chunks, the first declaring the size and checksum.
pub(crate) fn upload(file: &[u8], size: usize) -> Vec<pb::CheckpointChunk> {
    let sha = sha256_hex(file);
    file.chunks(size.max(1))
        .enumerate()
        .map(|(i, data)| pb::CheckpointChunk {
            data: Bytes::copy_from_slice(data),
            offset: (i * size.max(1)) as u64,
            total_bytes: file.len() as u64,
            sha256: if i == 0 { sha.clone() } else { String::new() },
        })
        .collect()
}

/// A safetensors file's JSON header and the data after it.
pub(crate) fn split_file(file: &[u8]) -> (serde_json::Value, Vec<u8>) {
    let n = u64::from_le_bytes(file[..8].try_into().expect("8 bytes")) as usize;
    let header = serde_json::from_slice(&file[8..8 + n]).expect("a JSON header");
    (header, file[8 + n..].to_vec())
}

pub(crate) fn join_file(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(header).expect("JSON");
    [
        (json.len() as u64).to_le_bytes().to_vec(),
        json,
        data.to_vec(),
    ]
    .concat()
}

// The checkpoints the harness's fixtures export.

/// A fixture's checkpoint file, as ExportModel sends it.
pub(crate) async fn export_file(h: &Harness, i: usize) -> Result<Vec<u8>, TestCaseError> {
    let mut c = h.client();
    let req = pb::ExportModelRequest {
        model_id: h.id(i),
        chunk_bytes: 0,
    };
    let chunks = export(&mut c, req)
        .await?
        .map_err(|s| fail(format!("ExportModel of a fixture: {s:?}")))?;
    Ok(chunks.iter().flat_map(|c| c.data.to_vec()).collect())
}

/// A change to a valid checkpoint file.
#[derive(Debug, Clone)]
pub(crate) enum FileEdit {
    None,
    FlipBit(usize, u8),
    Truncate(usize),
    Insert(usize, Hex),
    /// The 8-byte header length replaced.
    HeaderLength(u64),
    /// A metadata key set (or, with `None`, removed).
    Meta(&'static str, Option<String>),
    /// A field of the spec's JSON (in the metadata) set to a JSON value.
    Spec(&'static str, String),
    /// The `k`-th tensor entry of the header: a field set to a JSON value, or removed.
    Tensor(usize, &'static str, Option<String>),
    /// Random bytes instead of the file.
    Random(Hex),
}

/// How the file is cut into chunks, and what the chunks declare.
#[derive(Debug, Clone)]
pub(crate) enum Chunking {
    /// `size`-byte chunks, correct offsets, size and checksum.
    Size(usize),
    /// Chunk `k`'s offset moved by `delta`.
    Offset(usize, i64),
    /// The first chunk declares this total size.
    Total(u64),
    /// A later chunk declares a different total size.
    LaterTotal(u64),
    /// The checksum in upper case (the server takes any case).
    UpperSha,
    /// A wrong, short, missing or non-hex checksum.
    Sha(String),
    /// Bytes beyond the declared size.
    Extra(Hex),
    /// The first two chunks swapped.
    Swapped,
    /// No chunk at all.
    Nothing,
}

impl Chunking {
    /// Whether the upload itself is well-formed (the file may still be bad).
    pub(crate) fn sound(&self, len: usize) -> bool {
        // An empty file cannot be declared (total_bytes 0 means "missing").
        len > 0
            && match self {
                Chunking::Size(_) | Chunking::UpperSha => true,
                Chunking::Offset(_, d) => *d == 0,
                Chunking::Total(t) | Chunking::LaterTotal(t) => *t == len as u64,
                Chunking::Swapped => false,
                Chunking::Sha(_) | Chunking::Extra(_) | Chunking::Nothing => false,
            }
    }

    pub(crate) fn chunks(&self, file: &[u8]) -> Vec<pb::CheckpointChunk> {
        let size = match self {
            Chunking::Size(n) => *n,
            _ => 97,
        };
        let mut chunks = upload(file, size);
        if chunks.is_empty() {
            // An empty file: one empty chunk (which declares total_bytes 0).
            chunks.push(pb::CheckpointChunk {
                sha256: sha256_hex(file),
                ..Default::default()
            });
        }
        let n = chunks.len();
        match self {
            Chunking::Size(_) => {}
            Chunking::Offset(k, d) => {
                let c = &mut chunks[k % n];
                c.offset = c.offset.wrapping_add_signed(*d);
            }
            Chunking::Total(t) => chunks[0].total_bytes = *t,
            Chunking::LaterTotal(t) => chunks[n - 1].total_bytes = *t,
            Chunking::UpperSha => chunks[0].sha256 = chunks[0].sha256.to_uppercase(),
            Chunking::Sha(s) => chunks[0].sha256 = s.clone(),
            Chunking::Extra(b) => chunks.push(pb::CheckpointChunk {
                data: Bytes::from(b.0.clone()),
                offset: file.len() as u64,
                ..Default::default()
            }),
            Chunking::Swapped if n > 1 => chunks.swap(0, 1),
            Chunking::Nothing => chunks.clear(),
            Chunking::Swapped => chunks[0].offset = 1,
        }
        chunks
    }
}

pub(crate) fn json_value() -> BoxedStrategy<String> {
    prop_oneof![
        Just("null".to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("1e300".to_string()),
        Just("18446744073709551616".to_string()),
        Just("4294967296".to_string()),
        Just("16777217".to_string()),
        Just("\"x\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("[4294967296, 4294967296]".to_string()),
        Just("[0, 18446744073709551615]".to_string()),
        Just("\"F16\"".to_string()),
        Just("\"I64\"".to_string()),
        (0u32..8).prop_map(|n| n.to_string()),
        (vec(0u32..6, 0..4)).prop_map(|v| format!("{v:?}")),
    ]
    .boxed()
}

pub(crate) fn file_edit() -> BoxedStrategy<FileEdit> {
    let number = prop_oneof![
        Just(u64::MAX.to_string()),
        Just("0".to_string()),
        Just("1".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551614".to_string()),
        Just("18446744073709551616".to_string()),
        Just(" 7".to_string()),
        Just(String::new()),
        "[0-9a-z.]{0,8}",
    ];
    let meta = prop_oneof![
        (
            prop_oneof![Just("step"), Just("optimizer_t")],
            prop_oneof![4 => number.prop_map(Some), 1 => Just(None)]
        ),
        (
            prop_oneof![Just("format"), Just("spec"), Just("owner")],
            prop_oneof![
                Just(None),
                Just(Some(String::new())),
                Just(Some("{}".to_string())),
                Just(Some("backprop.checkpoint.v2".to_string())),
                "\\PC{0,16}".prop_map(Some),
            ]
        ),
    ];
    let spec_field = prop_oneof![
        Just("input_dim"),
        Just("num_classes"),
        Just("hidden"),
        Just("bias"),
        Just("l2"),
        Just("seed"),
        Just("dtype"),
        Just("loss"),
        Just("optimizer"),
        Just("init"),
    ];
    let tensor_field = prop_oneof![Just("shape"), Just("dtype"), Just("data_offsets")];
    prop_oneof![
        3 => Just(FileEdit::None),
        2 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| FileEdit::FlipBit(at, bit)),
        1 => any::<usize>().prop_map(FileEdit::Truncate),
        1 => (any::<usize>(), vec(any::<u8>(), 1..8)).prop_map(|(at, b)| FileEdit::Insert(at, Hex(b))),
        1 => prop_oneof![Just(u64::MAX), Just(1u64 << 32), Just(0), 0u64..4096].prop_map(FileEdit::HeaderLength),
        3 => meta.prop_map(|(k, v)| FileEdit::Meta(k, v)),
        3 => (spec_field, json_value()).prop_map(|(f, v)| FileEdit::Spec(f, v)),
        3 => (any::<usize>(), tensor_field, prop_oneof![4 => json_value().prop_map(Some), 1 => Just(None)])
            .prop_map(|(k, f, v)| FileEdit::Tensor(k, f, v)),
        1 => vec(any::<u8>(), 0..64).prop_map(|b| FileEdit::Random(Hex(b))),
    ]
    .boxed()
}

pub(crate) fn chunking() -> BoxedStrategy<Chunking> {
    prop_oneof![
        8 => prop_oneof![Just(1usize << 20), 1usize..=64, 100usize..=5000].prop_map(Chunking::Size),
        1 => (any::<usize>(), prop_oneof![Just(0i64), Just(1), Just(-1), any::<i64>()])
            .prop_map(|(k, d)| Chunking::Offset(k, d)),
        1 => prop_oneof![Just(0u64), Just(1), Just(u64::MAX), Just(1u64 << 40), 1u64..100_000].prop_map(Chunking::Total),
        1 => prop_oneof![Just(1u64), Just(u64::MAX), 1u64..100_000].prop_map(Chunking::LaterTotal),
        1 => Just(Chunking::UpperSha),
        1 => prop_oneof![Just(String::new()), "[0-9a-f]{64}", "[0-9a-f]{63}", "\\PC{64}"].prop_map(Chunking::Sha),
        1 => vec(any::<u8>(), 1..16).prop_map(|b| Chunking::Extra(Hex(b))),
        1 => Just(Chunking::Swapped),
        1 => Just(Chunking::Nothing),
    ]
    .boxed()
}

/// Applies an edit; `None` if it does not apply to this file (e.g. no such tensor).
pub(crate) fn edit_file(file: &[u8], e: &FileEdit) -> Vec<u8> {
    let at = |i: usize| i % (file.len() + 1);
    let set = |v: &mut serde_json::Value, key: &str, json: &Option<String>| match json {
        Some(j) => v[key] = serde_json::from_str(j).unwrap_or(serde_json::Value::Null),
        None => {
            if let Some(m) = v.as_object_mut() {
                m.remove(key);
            }
        }
    };
    match e {
        FileEdit::None => file.to_vec(),
        FileEdit::FlipBit(i, bit) => {
            let mut f = file.to_vec();
            let i = i % f.len();
            f[i] ^= 1 << bit;
            f
        }
        FileEdit::Truncate(i) => file[..at(*i)].to_vec(),
        FileEdit::Insert(i, b) => [&file[..at(*i)], &b.0, &file[at(*i)..]].concat(),
        FileEdit::HeaderLength(n) => [&n.to_le_bytes()[..], &file[8..]].concat(),
        FileEdit::Meta(key, value) => {
            let (mut header, data) = split_file(file);
            let value = value
                .as_ref()
                .map(|v| serde_json::Value::String(v.clone()).to_string());
            set(&mut header["__metadata__"], key, &value);
            join_file(&header, &data)
        }
        FileEdit::Spec(field, json) => {
            let (mut header, data) = split_file(file);
            let text = header["__metadata__"]["spec"]
                .as_str()
                .unwrap_or("{}")
                .to_string();
            let mut spec: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            set(&mut spec, field, &Some(json.clone()));
            header["__metadata__"]["spec"] = serde_json::Value::String(spec.to_string());
            join_file(&header, &data)
        }
        FileEdit::Tensor(k, field, json) => {
            let (mut header, data) = split_file(file);
            let names: Vec<String> = header
                .as_object()
                .map(|m| m.keys().filter(|k| *k != "__metadata__").cloned().collect())
                .unwrap_or_default();
            if !names.is_empty() {
                let name = &names[k % names.len()];
                set(&mut header[name.as_str()], field, json);
            }
            join_file(&header, &data)
        }
        FileEdit::Random(b) => b.0.clone(),
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ImportCase {
    pub(crate) fixture: usize,
    pub(crate) edit: FileEdit,
    pub(crate) chunking: Chunking,
}

pub(crate) fn import_case(h: &Harness, case: ImportCase) -> Result<(), TestCaseError> {
    h.case(async {
        let i = case.fixture;
        let original = export_file(h, i).await?;
        let file = edit_file(&original, &case.edit);
        let chunks = case.chunking.chunks(&file);
        let first_total = chunks.first().map_or(0, |c| c.total_bytes);
        let mut c = h.client();
        let sessions = model_count(&mut c).await?;
        let r = import(&mut c, chunks).await?;
        let edit = format!("{:?}", case.edit);
        let edit = edit.split(['(', ' ']).next().unwrap_or("");
        tally("ImportModel", edit, &code_of(&r));
        tally("ImportModel", "any", &code_of(&r));
        let sound = case.chunking.sound(file.len());
        let unchanged = file == original;
        match r {
            Err(s) => {
                check_refusal("ImportModel", &s)?;
                prop_assert!(
                    !(sound && unchanged),
                    "ImportModel refused an exported file: {s:?}"
                );
                prop_assert_eq!(
                    model_count(&mut c).await?,
                    sessions,
                    "a refused ImportModel created a session: {:?}",
                    s
                );
                let limit = MAX_PARAMETERS * 24 + (16 << 20);
                if s.code() == Code::ResourceExhausted {
                    prop_assert!(
                        first_total > limit,
                        "RESOURCE_EXHAUSTED for a small upload: {s:?}"
                    );
                }
            }
            Ok(r) => {
                prop_assert!(sound, "ImportModel took an unsound upload: {r:?}");
                let got = values(&mut c, &r.model_id, "an imported model").await?;
                prop_assert_eq!(got.step, r.step);
                if let Some(p) = non_finite(&got) {
                    return Err(fail(format!(
                        "an imported model holds a non-finite {}",
                        p.name
                    )));
                }
                let imported = within("ExportModel", export_of(&mut c, &r.model_id))
                    .await?
                    .map_err(|s| fail(format!("ExportModel of an imported model: {s:?}")))?;
                let imported = snapshot_of(imported, "an imported model")?;
                if unchanged {
                    // The same model: values, optimizer state, step and spec.
                    let fixture = h.snapshots[i].lock().expect("snapshot").clone();
                    prop_assert!(
                        imported.model == fixture.model,
                        "an unchanged file imported as another state\n{}",
                        differences(&fixture.model, &imported.model)
                    );
                }
                // It trains, or refuses to with a client error and stays as it was.
                let spec = got.spec.clone().expect("spec");
                let n = 3u32;
                let x = pb::Tensor {
                    shape: vec![n, spec.input_dim],
                    values: (0..n * spec.input_dim)
                        .map(|k| (k % 5) as f32 * 0.3 - 0.6)
                        .collect(),
                    ..Default::default()
                };
                let train = pb::TrainStepRequest {
                    model_id: r.model_id.clone(),
                    x: Some(x),
                    labels: (0..n).map(|k| k % spec.num_classes).collect(),
                    learning_rate: None,
                };
                let step = within("TrainStep", c.train_step(train.clone())).await?;
                let after = within("ExportModel", export_of(&mut c, &r.model_id))
                    .await?
                    .map_err(|s| fail(format!("ExportModel of an imported model: {s:?}")))?;
                let after = snapshot_of(after, "an imported model after TrainStep")?;
                match step {
                    Ok(t) => {
                        prop_assert_eq!((t.step, after.step()), (got.step + 1, got.step + 1));
                        let mut mirror = imported.model.clone();
                        with_model!(&mut mirror, m => mirror_update(m, &Call::TrainStep(train)))
                            .map_err(|e| {
                                fail(format!(
                                    "an imported model trained, the engine refuses: {e}"
                                ))
                            })?;
                        prop_assert!(
                            after.model == mirror,
                            "TrainStep on an imported model is not the engine's\n{}",
                            differences(&mirror, &after.model)
                        );
                    }
                    Err(s) => {
                        check_refusal("TrainStep on an imported model", &s)?;
                        prop_assert!(!unchanged, "a re-imported fixture cannot train: {s:?}");
                        prop_assert!(
                            after.file == imported.file,
                            "a refused step changed the model\n{}",
                            differences(&imported.model, &after.model)
                        );
                    }
                }
                within(
                    "DeleteModel",
                    c.delete_model(pb::DeleteModelRequest {
                        model_id: r.model_id,
                    }),
                )
                .await?
                .map_err(|s| fail(format!("DeleteModel of an imported model: {s:?}")))?;
            }
        }
        h.healthy("ImportModel").await
    })
}

#[test]
pub(crate) fn import_model_takes_exported_files_and_refuses_damaged_ones() {
    let h = Harness::start();
    let n = h.lives.len();
    let strategy =
        (0..n, file_edit(), chunking()).prop_map(|(fixture, edit, chunking)| ImportCase {
            fixture,
            edit,
            chunking,
        });
    let shares = [
        ("any Ok", 0.07),
        ("any InvalidArgument", 0.4),
        ("any ResourceExhausted", 0.005),
        ("None Ok", 0.05),
    ];
    check("ImportModel", 3000, strategy, &shares, |case| {
        import_case(&h, case)
    });
    h.finish();
}

/// Regression (found by this file, fixed in 14fcb1c): ImportModel took a checkpoint whose
/// `step` (or `optimizer_t`) is u64::MAX and the next TrainStep overflowed (model/mod.rs
/// `self.step += 1`, model/optim.rs `self.t + 1`): with overflow checks a panic (INTERNAL),
/// for `step` only after the optimizer had applied the update, so the refused call changed
/// the model; without them (release) the counter silently wrapped to 0. The import must
/// refuse such a counter, or the step refuse cleanly (a client error, model unchanged).
#[test]
pub(crate) fn import_model_at_the_largest_step_then_train_refuses_cleanly() {
    let h = Harness::start();
    h.rt.block_on(async {
        let mut c = h.client();
        let file = export_file(&h, 1).await.expect("export");
        for key in ["step", "optimizer_t"] {
            let edit = FileEdit::Meta(key, Some(u64::MAX.to_string()));
            let r = import(&mut c, upload(&edit_file(&file, &edit), 1 << 20))
                .await
                .expect("answered");
            let id = match r {
                Err(s) => {
                    assert_eq!(s.code(), Code::InvalidArgument, "{key}: {s:?}");
                    continue;
                }
                Ok(r) => r.model_id,
            };
            let before = support::get_values(&mut c, &id).await;
            let x = pb::Tensor {
                shape: vec![1, 2],
                values: vec![0.5, -0.5],
                values_f64: vec![],
                ..Default::default()
            };
            let r = c
                .train_step(pb::TrainStepRequest {
                    model_id: id.clone(),
                    x: Some(x),
                    labels: vec![1],
                    learning_rate: None,
                })
                .await;
            let after = support::get_values(&mut c, &id).await;
            match r {
                Ok(r) => panic!(
                    "{key} = u64::MAX: TrainStep answered step {}",
                    r.into_inner().step
                ),
                Err(s) => {
                    check_refusal("TrainStep", &s).unwrap_or_else(|e| panic!("{key}: {e}"));
                    support::assert_same_snapshot(&before, &after);
                }
            }
        }
    });
    h.finish();
}

/// Regression (found by this file, fixed in 14fcb1c): service/checkpoint.rs `receive`
/// reserved the first chunk's declared `total_bytes` before any data arrived, up to
/// `max_parameters × 24 + 16 MiB` (1.2 GB with the default limits): an 8-byte upload that
/// declared that much made the server allocate it, and keep it while the stream stayed
/// open. Runs with the default limits, where that size is not bounded by the fuzz config.
#[test]
pub(crate) fn import_model_does_not_reserve_the_declared_size_up_front() {
    let h = Harness::start_with(test_config());
    h.rt.block_on(async {
        let mut c = h.client();
        let declared = Limits::default().max_parameters * 24 + (16 << 20);
        let one = vec![pb::CheckpointChunk {
            data: Bytes::from_static(b"12345678"),
            offset: 0,
            total_bytes: declared,
            sha256: "0".repeat(64),
        }];
        HUGE_ON_PURPOSE.fetch_add(1, Ordering::Relaxed);
        let before = LARGEST.swap(0, Ordering::Relaxed);
        let r = import(&mut c, one).await.expect("answered");
        let largest = LARGEST.swap(before, Ordering::Relaxed);
        HUGE_ON_PURPOSE.fetch_sub(1, Ordering::Relaxed);
        assert_eq!(
            r.map(|_| ()).map_err(|s| s.code()),
            Err(Code::InvalidArgument)
        );
        assert!(
            largest <= MAX_ALLOCATION,
            "8 bytes declaring {declared}: an allocation of {largest} bytes"
        );
    });
    h.finish();
}
