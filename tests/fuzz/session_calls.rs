//! `session_calls_*`: every Trainer request that names a model, against the oracle from the proto's contract, with the whole state compared before and after (see the crate doc).
use super::*;

/// Whose id a call carries.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A fixture's id.
    Live(usize),
    /// A fixture's id in upper case (the same 128 bits; the server may take it or not).
    Upper(usize),
    /// A model that was deleted.
    Deleted,
    /// Random text or random hex.
    Other(String),
}

impl Target {
    pub(crate) fn fixture(&self) -> Option<usize> {
        match *self {
            Target::Live(i) | Target::Upper(i) => Some(i),
            Target::Deleted | Target::Other(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Call {
    Forward(pb::ForwardRequest),
    Backward(pb::BackwardRequest),
    TrainStep(pb::TrainStepRequest),
    ApplyGradients(pb::ApplyGradientsRequest),
    Evaluate(pb::EvaluateRequest),
    GradientCheck(pb::GradientCheckRequest),
    TraceStep(pb::TraceStepRequest),
    GetModel(pb::GetModelRequest),
    ExportModel(pb::ExportModelRequest),
    /// Only ever with a non-fixture id (deleting a fixture would end the run).
    DeleteModel(pb::DeleteModelRequest),
    ListModels,
}

impl Call {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Call::Forward(_) => "Forward",
            Call::Backward(_) => "Backward",
            Call::TrainStep(_) => "TrainStep",
            Call::ApplyGradients(_) => "ApplyGradients",
            Call::Evaluate(_) => "Evaluate",
            Call::GradientCheck(_) => "GradientCheck",
            Call::TraceStep(_) => "TraceStep",
            Call::GetModel(_) => "GetModel",
            Call::ExportModel(_) => "ExportModel",
            Call::DeleteModel(_) => "DeleteModel",
            Call::ListModels => "ListModels",
        }
    }

    pub(crate) fn updates(&self) -> bool {
        matches!(self, Call::TrainStep(_) | Call::ApplyGradients(_))
    }

    /// The id the call names (`None` for ListModels).
    pub(crate) fn model_id(&self) -> Option<&str> {
        Some(match self {
            Call::Forward(r) => &r.model_id,
            Call::Backward(r) => &r.model_id,
            Call::TrainStep(r) => &r.model_id,
            Call::ApplyGradients(r) => &r.model_id,
            Call::Evaluate(r) => &r.model_id,
            Call::GradientCheck(r) => &r.model_id,
            Call::TraceStep(r) => &r.model_id,
            Call::GetModel(r) => &r.model_id,
            Call::ExportModel(r) => &r.model_id,
            Call::DeleteModel(r) => &r.model_id,
            Call::ListModels => return None,
        })
    }

    pub(crate) fn set_id(&mut self, id: String) {
        match self {
            Call::Forward(r) => r.model_id = id,
            Call::Backward(r) => r.model_id = id,
            Call::TrainStep(r) => r.model_id = id,
            Call::ApplyGradients(r) => r.model_id = id,
            Call::Evaluate(r) => r.model_id = id,
            Call::GradientCheck(r) => r.model_id = id,
            Call::TraceStep(r) => r.model_id = id,
            Call::GetModel(r) => r.model_id = id,
            Call::ExportModel(r) => r.model_id = id,
            Call::DeleteModel(r) => r.model_id = id,
            Call::ListModels => {}
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub(crate) target: Target,
    pub(crate) call: Call,
}

impl Case {
    /// Puts the target's id into the call: fixture `i` is `ids[i]`.
    pub(crate) fn fill(mut self, ids: &[String], deleted: &str) -> Call {
        let id = match &self.target {
            Target::Live(i) => ids[*i].clone(),
            Target::Upper(i) => ids[*i].to_uppercase(),
            Target::Deleted => deleted.to_string(),
            Target::Other(id) => id.clone(),
        };
        self.call.set_id(id);
        self.call
    }
}

/// Gradients for ApplyGradients: usually one per parameter with its shape; sometimes one
/// missing, repeated, renamed, reshaped, without a tensor, or with nasty numbers.
pub(crate) fn gradients(params: Vec<(String, Vec<u32>)>) -> BoxedStrategy<Vec<pb::NamedTensor>> {
    let names: Vec<String> = params.iter().map(|p| p.0.clone()).collect();
    let one = move |(name, shape): (String, Vec<u32>)| {
        let n = shape.iter().product::<u32>() as usize;
        let other_names = names.clone();
        let name = prop_oneof![
            20 => Just(name),
            1 => proptest::sample::select(other_names),
            1 => "\\PC{0,12}",
        ];
        let tensor = prop_oneof![
            20 => vec(-1.0f64..1.0, n).prop_map({
                let shape = shape.clone();
                move |v| pb::Tensor { shape: shape.clone(), values_f64: v, values: vec![], ..Default::default() }
            }),
            20 => vec(-1.0f32..1.0, n).prop_map({
                let shape = shape.clone();
                move |v| pb::Tensor { shape: shape.clone(), values: v, values_f64: vec![], ..Default::default() }
            }),
            2 => tensor(shape.first().copied(), shape.get(1).copied().unwrap_or(1)),
            2 => vec(number(), n).prop_map({
                let shape = shape.clone();
                move |v| pb::Tensor { shape: shape.clone(), values_f64: v, values: vec![], ..Default::default() }
            }),
        ];
        (
            name,
            prop_oneof![20 => tensor.prop_map(Some), 1 => Just(None)],
        )
            .prop_map(|(name, tensor)| pb::NamedTensor { name, tensor })
    };
    let all: Vec<_> = params.into_iter().map(one).collect();
    (all, any::<u8>(), any::<usize>())
        .prop_map(|(mut g, how, at): (Vec<pb::NamedTensor>, u8, usize)| {
            let k = at % g.len().max(1);
            match how % 16 {
                0 if !g.is_empty() => {
                    g.remove(k);
                }
                1 if !g.is_empty() => {
                    let again = g[k].clone();
                    g.push(again);
                }
                2 => g.reverse(),
                3 => g.clear(),
                _ => {}
            }
            g
        })
        .boxed()
}

/// ExportModel's chunk size: usually the default or small (many chunks), sometimes at
/// or just over what fits in a message, or anything.
pub(crate) fn chunk_bytes() -> BoxedStrategy<u32> {
    let most = (MAX_MESSAGE_BYTES - 1024) as u32;
    prop_oneof![
        4 => Just(0u32),
        2 => 64u32..=2048,
        1 => 1u32..=63,
        1 => Just(most),
        1 => Just(most + 1),
        1 => Just(u32::MAX),
        1 => any::<u32>(),
    ]
    .boxed()
}

/// A call on a fixture (by index: its id is filled in when the call is made, see
/// [`Case::fill`]), on a deleted model, or on a random id.
pub(crate) fn case_strategy(lives: Arc<Vec<Live>>) -> BoxedStrategy<Case> {
    let n = lives.len();
    let other_id = prop_oneof![
        Just(String::new()),
        "[0-9a-f]{32}",
        "[0-9a-fA-F ]{30,34}",
        "\\PC{0,40}",
    ];
    let target = prop_oneof![
        16 => (0..n).prop_map(Target::Live),
        1 => (0..n).prop_map(Target::Upper),
        1 => Just(Target::Deleted),
        1 => other_id.prop_map(Target::Other),
    ];
    target
        .prop_flat_map(move |target| {
            let l = lives[target.fixture().unwrap_or(0)].clone();
            let (d, c) = (l.d, l.c);
            let calls = prop_oneof![
                3 => batch(d, c).prop_map(|(x, labels)| Call::Forward(pb::ForwardRequest {
                    model_id: String::new(), x, labels,
..Default::default()
})),
                3 => batch(d, c)
                    .prop_flat_map(move |(x, labels)| {
                        let rows = rows_of(&x);
                        let upstream = prop_oneof![
                            3 => Just(None),
                            2 => tensor(Some(rows), c).prop_map(Some),
                        ];
                        let labels = prop_oneof![2 => Just(labels), 1 => Just(vec![])];
                        (Just(x), labels, upstream, any::<bool>())
                    })
                    .prop_map(|(x, labels, upstream, return_input_grad)| {
                        Call::Backward(pb::BackwardRequest {
                            model_id: String::new(), x, labels, upstream, return_input_grad,
                        })
                    }),
                4 => batch(d, c).prop_map(|(x, labels)| Call::TrainStep(pb::TrainStepRequest {
                    model_id: String::new(), x, labels,
                    learning_rate: None,
                })),
                3 => gradients(l.params.clone()).prop_map(|gradients| {
                    Call::ApplyGradients(pb::ApplyGradientsRequest { model_id: String::new(), gradients })
                }),
                2 => batch(d, c).prop_map(|(x, labels)| Call::Evaluate(pb::EvaluateRequest {
                    model_id: String::new(), x, labels,
                })),
                2 => (batch(d, c), prop_oneof![Just(0u32), 1u32..=4, Just(u32::MAX), any::<u32>()])
                    .prop_map(|((x, labels), max)| Call::GradientCheck(pb::GradientCheckRequest {
                        model_id: String::new(), x, labels, max_elements_per_parameter: max,
                    })),
                2 => (batch(d, c), any::<bool>()).prop_map(|((x, labels), shapes_only)| {
                    Call::TraceStep(pb::TraceStepRequest { model_id: String::new(), x, labels, shapes_only })
                }),
                1 => chunk_bytes().prop_map(|chunk_bytes| Call::ExportModel(pb::ExportModelRequest {
                    model_id: String::new(), chunk_bytes,
                })),
                1 => any::<bool>().prop_map(|include_values| Call::GetModel(pb::GetModelRequest {
                    model_id: String::new(), include_values,
..Default::default()
})),
                // Deleting a fixture would end the run: ListModels there instead.
                1 => Just(if target.fixture().is_some() {
                    Call::ListModels
                } else {
                    Call::DeleteModel(pb::DeleteModelRequest::default())
                }),
            ];
            (Just(target), calls)
        })
        .prop_map(|(target, call)| Case { target, call })
        .boxed()
}

// ---------------------------------------------------------------------------------------
// The oracle: what the contract says about a request to a live fixture

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Expect {
    /// Well-formed: must succeed.
    Accept,
    /// Breaks a documented rule: must be refused (INVALID_ARGUMENT, or RESOURCE_EXHAUSTED
    /// when a tensor claims more elements than the server takes).
    Refuse,
    /// Finite but huge numbers, which may overflow in the math: either.
    Either,
}

impl Expect {
    pub(crate) fn and(self, other: Expect) -> Expect {
        match (self, other) {
            (Expect::Refuse, _) | (_, Expect::Refuse) => Expect::Refuse,
            (Expect::Either, _) | (_, Expect::Either) => Expect::Either,
            _ => Expect::Accept,
        }
    }
}

/// Inputs below this in magnitude cannot overflow anything in the fixtures' math, as
/// long as their parameters stay below [`TAME_PARAMETERS`].
pub(crate) const TAME: f64 = 1e3;
pub(crate) const TAME_PARAMETERS: f64 = 1e2;

/// A tensor against its expected shape (`None` = any) and the server's limit on its
/// elements, in the model's dtype.
pub(crate) fn tensor_expect(
    t: &pb::Tensor,
    want: &[Option<u32>],
    f64_model: bool,
    max: u64,
) -> Expect {
    if !t.values.is_empty() && !t.values_f64.is_empty() {
        return Expect::Refuse;
    }
    let count = t.values.len().max(t.values_f64.len()) as u128;
    let product: u128 = t.shape.iter().map(|&d| d as u128).product();
    if product != count
        || product > max as u128
        || t.shape.len() != want.len()
        || t.shape
            .iter()
            .zip(want)
            .any(|(&d, w)| d == 0 || w.is_some_and(|w| w != d))
    {
        return Expect::Refuse;
    }
    // The values as the model sees them.
    let converted: Vec<f64> = if f64_model {
        t.values
            .iter()
            .map(|&v| v as f64)
            .chain(t.values_f64.iter().copied())
            .collect()
    } else {
        t.values
            .iter()
            .copied()
            .chain(t.values_f64.iter().map(|&v| v as f32))
            .map(f64::from)
            .collect()
    };
    if converted.iter().any(|v| !v.is_finite()) {
        Expect::Refuse
    } else if converted.iter().any(|v| v.abs() > TAME) {
        Expect::Either
    } else {
        Expect::Accept
    }
}

pub(crate) fn labels_expect(l: &[u32], rows: u32, c: u32) -> Expect {
    if l.len() == rows as usize && l.iter().all(|&v| v < c) {
        Expect::Accept
    } else {
        Expect::Refuse
    }
}

pub(crate) fn x_expect(x: &Option<pb::Tensor>, l: &Live) -> Expect {
    x.as_ref().map_or(Expect::Refuse, |x| {
        tensor_expect(x, &[None, Some(l.d)], l.f64, MAX_BATCH_ELEMENTS as u64)
    })
}

/// Numeric-gradient work as the server estimates it (see `RequestLimits`).
pub(crate) fn gradcheck_work(l: &Live, rows: u32, per: u32) -> u64 {
    let sizes: Vec<u64> = l
        .params
        .iter()
        .map(|p| p.1.iter().map(|&d| d as u64).product())
        .collect();
    let total: u64 = sizes.iter().sum();
    let checks: u64 = sizes
        .iter()
        .map(|&n| if per == 0 { n } else { n.min(per as u64) })
        .sum();
    checks.saturating_mul(rows as u64).saturating_mul(total)
}

pub(crate) fn expect(call: &Call, l: &Live) -> Expect {
    match call {
        Call::Forward(r) => {
            let x = x_expect(&r.x, l);
            if r.labels.is_empty() {
                x
            } else {
                x.and(labels_expect(&r.labels, rows_of(&r.x), l.c))
            }
        }
        Call::Backward(r) => {
            let rows = rows_of(&r.x);
            let target = match (r.labels.is_empty(), &r.upstream) {
                (false, None) => labels_expect(&r.labels, rows, l.c),
                (true, Some(up)) => tensor_expect(
                    up,
                    &[Some(rows), Some(l.c)],
                    l.f64,
                    MAX_BATCH_ELEMENTS as u64,
                ),
                _ => Expect::Refuse,
            };
            x_expect(&r.x, l).and(target)
        }
        Call::TrainStep(r) => x_expect(&r.x, l).and(labels_expect(&r.labels, rows_of(&r.x), l.c)),
        Call::Evaluate(r) => x_expect(&r.x, l).and(labels_expect(&r.labels, rows_of(&r.x), l.c)),
        Call::GradientCheck(r) => {
            let e = x_expect(&r.x, l).and(labels_expect(&r.labels, rows_of(&r.x), l.c));
            if e != Expect::Refuse
                && gradcheck_work(l, rows_of(&r.x), r.max_elements_per_parameter)
                    > MAX_GRADCHECK_WORK
            {
                Expect::Refuse
            } else {
                e
            }
        }
        // With values a trace takes at most 64 rows; the fixtures are small, so every
        // node of such a trace fits the with-values limit on elements.
        Call::TraceStep(r) => {
            let e = x_expect(&r.x, l).and(labels_expect(&r.labels, rows_of(&r.x), l.c));
            if !r.shapes_only && rows_of(&r.x) > 64 {
                Expect::Refuse
            } else {
                e
            }
        }
        Call::ApplyGradients(r) => {
            let mut seen = vec![false; l.params.len()];
            let mut e = Expect::Accept;
            for g in &r.gradients {
                let Some(i) = l.params.iter().position(|p| p.0 == g.name) else {
                    return Expect::Refuse;
                };
                if std::mem::replace(&mut seen[i], true) {
                    return Expect::Refuse;
                }
                let want: Vec<Option<u32>> = l.params[i].1.iter().map(|&d| Some(d)).collect();
                e = e.and(g.tensor.as_ref().map_or(Expect::Refuse, |t| {
                    tensor_expect(t, &want, l.f64, MAX_PARAMETERS)
                }));
            }
            if seen.iter().all(|&s| s) {
                e
            } else {
                Expect::Refuse
            }
        }
        Call::GetModel(_) | Call::ListModels => Expect::Accept,
        Call::ExportModel(r) if r.chunk_bytes as usize <= MAX_MESSAGE_BYTES - 1024 => {
            Expect::Accept
        }
        Call::ExportModel(_) => Expect::Refuse,
        Call::DeleteModel(_) => Expect::Refuse,
    }
}

/// Whether some tensor of the request claims more elements than the server takes for it
/// (a batch: the batch limit; a gradient: the parameter limit).
pub(crate) fn claims_too_much(call: &Call) -> bool {
    let over = |t: &Option<pb::Tensor>, max: usize| {
        t.as_ref()
            .is_some_and(|t| t.shape.iter().map(|&d| d as u128).product::<u128>() > max as u128)
    };
    let big = |t: &Option<pb::Tensor>| over(t, MAX_BATCH_ELEMENTS);
    match call {
        Call::Forward(r) => big(&r.x),
        Call::Backward(r) => big(&r.x) || big(&r.upstream),
        Call::TrainStep(r) => big(&r.x),
        Call::Evaluate(r) => big(&r.x),
        Call::GradientCheck(r) => big(&r.x),
        Call::TraceStep(r) => big(&r.x),
        Call::ApplyGradients(r) => r
            .gradients
            .iter()
            .any(|g| over(&g.tensor, MAX_PARAMETERS as usize)),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------
// Sending a call and checking what came back

#[derive(Debug)]
pub(crate) enum Reply {
    Forward(pb::ForwardResponse),
    Backward(pb::BackwardResponse),
    TrainStep(pb::TrainStepResponse),
    ApplyGradients(pb::ApplyGradientsResponse),
    Evaluate(pb::EvaluateResponse),
    GradientCheck(pb::GradientCheckResponse),
    TraceStep(pb::TraceStepResponse),
    GetModel(Box<pb::GetModelResponse>),
    ExportModel(Vec<pb::CheckpointChunk>),
    DeleteModel,
    ListModels(pb::ListModelsResponse),
}

pub(crate) async fn send(
    c: &mut Client,
    call: &Call,
) -> Result<Result<Reply, Status>, TestCaseError> {
    let what = call.name();
    Ok(match call.clone() {
        Call::Forward(r) => within(what, c.forward(r)).await?.map(Reply::Forward),
        Call::Backward(r) => within(what, c.backward(r)).await?.map(Reply::Backward),
        Call::TrainStep(r) => within(what, c.train_step(r)).await?.map(Reply::TrainStep),
        Call::ApplyGradients(r) => within(what, c.apply_gradients(r))
            .await?
            .map(Reply::ApplyGradients),
        Call::Evaluate(r) => within(what, c.evaluate(r)).await?.map(Reply::Evaluate),
        Call::GradientCheck(r) => within(what, c.gradient_check(r))
            .await?
            .map(Reply::GradientCheck),
        Call::TraceStep(r) => within(what, c.trace_step(r)).await?.map(Reply::TraceStep),
        Call::GetModel(r) => within(what, c.get_model(r))
            .await?
            .map(|r| Reply::GetModel(Box::new(r))),
        Call::DeleteModel(r) => within(what, c.delete_model(r))
            .await?
            .map(|_| Reply::DeleteModel),
        Call::ExportModel(r) => export(c, r).await?.map(Reply::ExportModel),
        Call::ListModels => within(what, c.list_models(pb::ListModelsRequest::default()))
            .await?
            .map(Reply::ListModels),
    })
}

/// A tensor the server sent for the fixture: the model's dtype field only, `shape`, and
/// as many values as the shape says.
pub(crate) fn check_out_tensor(
    what: &str,
    t: &Option<pb::Tensor>,
    shape: &[u32],
    l: &Live,
) -> Result<(), TestCaseError> {
    let t = t.as_ref().ok_or_else(|| fail(format!("{what}: missing")))?;
    prop_assert_eq!(&t.shape[..], shape, "{}: shape", what);
    let n: usize = shape.iter().map(|&d| d as usize).product();
    if l.f64 {
        prop_assert!(
            t.values.is_empty() && t.values_f64.len() == n,
            "{what}: {t:?}"
        );
    } else {
        prop_assert!(
            t.values_f64.is_empty() && t.values.len() == n,
            "{what}: {t:?}"
        );
    }
    Ok(())
}

pub(crate) fn check_losses(
    what: &str,
    l: &Option<pb::Losses>,
    with_data: bool,
) -> Result<(), TestCaseError> {
    let l = l
        .as_ref()
        .ok_or_else(|| fail(format!("{what}: no losses")))?;
    prop_assert_eq!(
        l.data_loss.is_some(),
        with_data,
        "{}: data_loss {:?}",
        what,
        l
    );
    // The total is data + reg: absent with the data loss (an upstream gradient).
    prop_assert_eq!(
        l.total_loss.is_some(),
        with_data,
        "{}: total_loss {:?}",
        what,
        l
    );
    Ok(())
}

pub(crate) fn in_unit(what: &str, a: f64) -> Result<(), TestCaseError> {
    prop_assert!((0.0..=1.0).contains(&a), "{what}: accuracy {a}");
    Ok(())
}

/// Every number in the answer is finite: for tame inputs (what the oracle accepts), a
/// NaN or an infinity in an OK answer is a bug, not a result.
pub(crate) fn finite_reply(reply: &Reply) -> Result<(), TestCaseError> {
    fn tensor(what: &str, t: &Option<pb::Tensor>) -> Result<(), TestCaseError> {
        if let Some(t) = t {
            let bad = t
                .values
                .iter()
                .map(|&v| f64::from(v))
                .chain(t.values_f64.iter().copied());
            if let Some((k, v)) = bad.enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(fail(format!(
                    "{what}[{k}] = {v} in an OK answer to tame inputs"
                )));
            }
        }
        Ok(())
    }
    fn number(what: &str, v: f64) -> Result<(), TestCaseError> {
        prop_assert!(v.is_finite(), "{what} = {v} in an OK answer to tame inputs");
        Ok(())
    }
    fn losses(what: &str, l: &Option<pb::Losses>) -> Result<(), TestCaseError> {
        if let Some(l) = l {
            for v in [l.data_loss, Some(l.reg_loss), l.total_loss]
                .into_iter()
                .flatten()
            {
                number(&format!("{what} losses"), v)?;
            }
        }
        Ok(())
    }
    match reply {
        Reply::Forward(r) => {
            tensor("Forward scores", &r.scores)?;
            losses("Forward", &r.losses)?;
            r.accuracy
                .map_or(Ok(()), |a| number("Forward accuracy", a))?;
        }
        Reply::Backward(r) => {
            losses("Backward", &r.losses)?;
            for g in &r.gradients {
                tensor(&format!("Backward {}", g.name), &g.tensor)?;
            }
            tensor("Backward dX", &r.input_grad)?;
        }
        Reply::TrainStep(r) => {
            losses("TrainStep", &r.losses)?;
            number("TrainStep accuracy", r.accuracy)?;
        }
        Reply::Evaluate(r) => {
            losses("Evaluate", &r.losses)?;
            number("Evaluate accuracy", r.accuracy)?;
        }
        Reply::GradientCheck(r) => {
            number("GradientCheck max_relative_error", r.max_relative_error)?;
            for e in &r.errors {
                number(&format!("GradientCheck {}", e.name), e.max_relative_error)?;
            }
        }
        Reply::TraceStep(r) => {
            losses("TraceStep", &r.losses)?;
            for n in &r.nodes {
                tensor(&format!("TraceStep node {} value", n.id), &n.value)?;
                tensor(&format!("TraceStep node {} grad", n.id), &n.grad)?;
                for e in &n.edges {
                    tensor(
                        &format!("TraceStep node {} local_grad", n.id),
                        &e.local_grad,
                    )?;
                    tensor(
                        &format!("TraceStep node {} downstream", n.id),
                        &e.downstream,
                    )?;
                }
            }
        }
        Reply::GetModel(r) => {
            for p in &r.parameters {
                tensor(&format!("GetModel {}", p.name), &p.value)?;
            }
        }
        Reply::ApplyGradients(_)
        | Reply::ExportModel(_)
        | Reply::DeleteModel
        | Reply::ListModels(_) => {}
    }
    Ok(())
}

/// What a successful answer must hold, for the fixture `l` and the request that asked.
pub(crate) fn check_success(
    call: &Call,
    reply: &Reply,
    l: &Live,
    id: &str,
    step_before: u64,
) -> Result<(), TestCaseError> {
    let what = call.name();
    let names: Vec<&str> = l.params.iter().map(|p| p.0.as_str()).collect();
    match (call, reply) {
        (Call::Forward(q), Reply::Forward(r)) => {
            let n = rows_of(&q.x);
            check_out_tensor("Forward scores", &r.scores, &[n, l.c], l)?;
            prop_assert_eq!(r.predictions.len(), n as usize);
            let scores = r.scores.as_ref().expect("checked");
            let row = |i: usize| -> Vec<f64> {
                let c = l.c as usize;
                if l.f64 {
                    scores.values_f64[i * c..(i + 1) * c].to_vec()
                } else {
                    scores.values[i * c..(i + 1) * c]
                        .iter()
                        .map(|&v| v as f64)
                        .collect()
                }
            };
            for (i, &p) in r.predictions.iter().enumerate() {
                prop_assert!(p < l.c, "prediction {p} of {} classes", l.c);
                let s = row(i);
                // The first index of the largest score (NaN never wins).
                let best = s
                    .iter()
                    .enumerate()
                    .fold((0, f64::NEG_INFINITY), |(bi, bv), (j, &v)| {
                        if v > bv { (j, v) } else { (bi, bv) }
                    })
                    .0;
                prop_assert_eq!(p as usize, best, "Forward prediction of row {} {:?}", i, s);
            }
            if q.labels.is_empty() {
                prop_assert!(r.losses.is_none() && r.accuracy.is_none(), "{what}: {r:?}");
            } else {
                check_losses(what, &r.losses, true)?;
                in_unit(
                    what,
                    r.accuracy.ok_or_else(|| fail("Forward: no accuracy"))?,
                )?;
            }
        }
        (Call::Backward(q), Reply::Backward(r)) => {
            check_losses(what, &r.losses, !q.labels.is_empty())?;
            let got: Vec<&str> = r.gradients.iter().map(|g| g.name.as_str()).collect();
            prop_assert_eq!(&got, &names, "Backward gradient names");
            for (g, p) in r.gradients.iter().zip(&l.params) {
                check_out_tensor(&format!("Backward {}", p.0), &g.tensor, &p.1, l)?;
            }
            if q.return_input_grad {
                check_out_tensor("Backward dX", &r.input_grad, &[rows_of(&q.x), l.d], l)?;
            } else {
                prop_assert!(r.input_grad.is_none(), "dX was not asked for");
            }
        }
        (Call::TrainStep(_), Reply::TrainStep(r)) => {
            check_losses(what, &r.losses, true)?;
            in_unit(what, r.accuracy)?;
            prop_assert_eq!(r.step, step_before + 1, "TrainStep step");
        }
        (Call::ApplyGradients(_), Reply::ApplyGradients(r)) => {
            prop_assert_eq!(r.step, step_before + 1, "ApplyGradients step");
        }
        (Call::Evaluate(q), Reply::Evaluate(r)) => {
            check_losses(what, &r.losses, true)?;
            in_unit(what, r.accuracy)?;
            prop_assert_eq!(r.num_examples, rows_of(&q.x) as u64);
        }
        (Call::GradientCheck(q), Reply::GradientCheck(r)) => {
            let got: Vec<&str> = r.errors.iter().map(|e| e.name.as_str()).collect();
            prop_assert_eq!(&got, &names, "GradientCheck names");
            let per = q.max_elements_per_parameter as u64;
            for (e, p) in r.errors.iter().zip(&l.params) {
                let n: u64 = p.1.iter().map(|&d| d as u64).product();
                let want = if per == 0 { n } else { n.min(per) };
                prop_assert_eq!(e.elements_checked, want, "{} elements checked", p.0);
                prop_assert!(
                    e.worst_element.is_some_and(|k| k < n),
                    "{}: worst element {:?} of {}",
                    p.0,
                    e.worst_element,
                    n
                );
            }
        }
        (Call::TraceStep(q), Reply::TraceStep(r)) => {
            prop_assert!(!r.nodes.is_empty(), "an empty trace");
            prop_assert_eq!(r.with_values, !q.shapes_only);
            for (i, node) in r.nodes.iter().enumerate() {
                prop_assert_eq!(node.id as usize, i, "node order");
                prop_assert!(
                    node.inputs.iter().all(|&j| j < node.id),
                    "{node:?}: not topological"
                );
                prop_assert_eq!(node.value.is_some(), r.with_values, "node {} value", i);
            }
            prop_assert!(
                (r.loss_node as usize) < r.nodes.len() && (r.scores_node as usize) < r.nodes.len()
            );
        }
        (Call::ExportModel(q), Reply::ExportModel(chunks)) => {
            // Below the floor the server raises the chunk size to it.
            let most = match q.chunk_bytes {
                0 => 1 << 20,
                n => (n as usize).max(backprop::service::checkpoint::MIN_CHUNK_BYTES),
            };
            let first = chunks
                .first()
                .ok_or_else(|| fail("ExportModel sent no chunk"))?;
            let mut file = Vec::new();
            for c in chunks {
                prop_assert_eq!(c.offset, file.len() as u64, "ExportModel chunk offsets");
                prop_assert!(
                    c.data.len() <= most && !c.data.is_empty(),
                    "a chunk of {} bytes",
                    c.data.len()
                );
                prop_assert!(c.total_bytes == 0 || c.total_bytes == first.total_bytes);
                file.extend_from_slice(&c.data);
            }
            prop_assert_eq!(
                file.len() as u64,
                first.total_bytes,
                "ExportModel total_bytes"
            );
            prop_assert_eq!(&first.sha256, &sha256_hex(&file), "ExportModel sha256");
            let (header, _) = split_file(&file);
            let meta = &header["__metadata__"];
            let step = step_before.to_string();
            prop_assert_eq!(meta["step"].as_str(), Some(step.as_str()));
            prop_assert_eq!(meta["format"].as_str(), Some("backprop.checkpoint.v1"));
        }
        (Call::GetModel(q), Reply::GetModel(r)) => {
            prop_assert_eq!(&r.model_id, id);
            let got: Vec<&str> = r.parameters.iter().map(|p| p.name.as_str()).collect();
            prop_assert_eq!(&got, &names, "GetModel names");
            for p in &r.parameters {
                prop_assert_eq!(p.value.is_some(), q.include_values, "{} value", p.name);
            }
        }
        (Call::ListModels, Reply::ListModels(r)) => {
            let me = r
                .models
                .iter()
                .find(|m| m.model_id == id)
                .ok_or_else(|| fail("ListModels does not list a live fixture"))?;
            // The session's mirrored step and count agree with the model's own.
            prop_assert_eq!(me.step, step_before, "ListModels step");
            let n: u64 = l
                .params
                .iter()
                .map(|p| p.1.iter().map(|&d| d as u64).product::<u64>())
                .sum();
            prop_assert_eq!(me.parameter_count, n, "ListModels parameter_count");
            prop_assert_eq!(me.spec.as_ref(), Some(&l.filled), "ListModels spec");
        }
        (call, reply) => return Err(fail(format!("{call:?} answered {reply:?}"))),
    }
    Ok(())
}

pub(crate) fn session_case(h: &Harness, case: Case) -> Result<(), TestCaseError> {
    h.case(async {
        let mut c = h.client();
        let call = case.clone().fill(&h.ids(), &h.deleted);
        let what = call.name();
        let reply = send(&mut c, &call).await?;
        tally("session calls", what, &code_of(&reply));
        tally("session calls", "any", &code_of(&reply));
        match (case.target.fixture(), &reply) {
            // Not a fixture's id: the model cannot be found (ListModels names none).
            (None, Ok(Reply::ListModels(_))) => {}
            (None, Ok(r)) => return Err(fail(format!("{what} on an unknown id answered {r:?}"))),
            (None, Err(s)) => {
                check_refusal(what, s)?;
                // An id of the server's shape (32 hex digits) is looked up and not found;
                // anything else is refused as malformed before any lookup.
                let id = call.model_id().unwrap_or_default();
                let well_formed = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
                prop_assert_eq!(
                    s.code(),
                    if well_formed {
                        Code::NotFound
                    } else {
                        Code::InvalidArgument
                    },
                    "{} on an unknown id {:?}: {:?}",
                    what,
                    id,
                    s
                );
                prop_assert!(s.message().contains("model_id"), "{what}: {s:?}");
            }
            // The fixture's id in upper case may be refused as unknown.
            (Some(i), Err(s))
                if matches!(case.target, Target::Upper(_)) && s.code() == Code::NotFound =>
            {
                check_refusal(what, s)?;
                h.check_model(i, None, what).await?;
            }
            (Some(i), _) => {
                let l = &h.lives[i];
                let step_before = h.snapshots[i].lock().expect("snapshot").step();
                let expected = expect(&call, l);
                tally(
                    "session calls",
                    &format!("expected {expected:?}, got"),
                    &code_of(&reply),
                );
                match &reply {
                    Ok(r) => {
                        prop_assert!(
                            expected != Expect::Refuse,
                            "{what}: accepted, but the contract says refuse"
                        );
                        check_success(&call, r, l, &h.id(i), step_before)?;
                        if expected == Expect::Accept {
                            finite_reply(r)?;
                        }
                    }
                    Err(s) => {
                        check_refusal(what, s)?;
                        prop_assert!(
                            expected != Expect::Accept,
                            "{what}: a well-formed request refused: {s:?}"
                        );
                        prop_assert!(
                            matches!(s.code(), Code::InvalidArgument | Code::ResourceExhausted),
                            "{what}: {s:?}"
                        );
                        if s.code() == Code::ResourceExhausted {
                            prop_assert!(
                                claims_too_much(&call),
                                "{what}: RESOURCE_EXHAUSTED for a small request: {s:?}"
                            );
                        }
                    }
                }
                let update = (reply.is_ok() && call.updates()).then_some(&call);
                h.check_model(i, update, what).await?;
            }
        }
        h.healthy(what).await
    })
}

#[test]
pub(crate) fn session_calls_answer_with_client_codes_and_leave_models_intact() {
    let h = Harness::start();
    let strategy = case_strategy(h.lives.clone());
    let shares = [
        ("any Ok", 0.2),
        ("expected Accept, got Ok", 0.2),
        ("TrainStep Ok", 0.025),
        ("ApplyGradients Ok", 0.02),
        ("any InvalidArgument", 0.3),
        ("any NotFound", 0.05),
        // Malformed shapes are INVALID_ARGUMENT since admission by cost; what remains is
        // tensors over the size limit (about 0.6% of cases).
        ("any ResourceExhausted", 0.002),
    ];
    check("session calls", 6000, strategy, &shares, |case| {
        session_case(&h, case)
    });
    h.finish();
}
