//! Forward, Backward, Evaluate, GradientCheck: the model's math on a batch, read-only
//! (the model is never changed, so these take the session's shared lock).
use tonic::{Request, Response, Status};

use super::TrainerService;
use super::call::{split, tensor_bytes};
use crate::engine::gradcheck::Elements;
use crate::engine::ops::softmax_loss::softmax;
use crate::model::{Model, Target, accuracy, predictions};
use crate::pb;
use crate::pb::array::{Form, WireScalar, to_tensor_in};
use crate::service::convert::losses_pb;
use crate::service::convert::{check_tensor, matrix};
use crate::service::limits::{Call, check_gradcheck};
use crate::service::status::invalid;
use crate::with_model;

pub async fn forward(
    svc: &TrainerService,
    req: Request<pb::ForwardRequest>,
) -> Result<Response<pb::ForwardResponse>, Status> {
    let (tenant, req) = split(req);
    let on = svc.on_batch(&req.model_id, &tenant, &req.x)?;
    on.observe("Forward", async {
        let y = match req.labels.is_empty() {
            true => None,
            false => Some(on.labels(req.labels)?),
        };
        let probabilities = req.probabilities;
        let call = Call::Forward {
            labels: y.is_some(),
            probabilities,
        };
        let admitted = on.admit(call, tensor_bytes(&req.x))?;
        let x = req.x.unwrap_or_default();
        let guard = on.read().await?;
        on.compute(
            admitted,
            move || with_model!(&*guard.guard, m => forward_typed(m, x, y, probabilities)),
        )
        .await
    })
    .await
}

pub async fn backward(
    svc: &TrainerService,
    req: Request<pb::BackwardRequest>,
) -> Result<Response<pb::BackwardResponse>, Status> {
    let (tenant, req) = split(req);
    let on = svc.on_batch(&req.model_id, &tenant, &req.x)?;
    on.observe("Backward", async {
        let request_bytes = tensor_bytes(&req.x) + tensor_bytes(&req.upstream);
        let target = match (req.labels.is_empty(), req.upstream) {
            (false, Some(_)) => {
                return Err(invalid("upstream", "give labels or upstream, not both"));
            }
            (true, None) => {
                return Err(invalid("labels", "give labels or an upstream gradient"));
            }
            (false, None) => Ok(on.labels(req.labels)?),
            (true, Some(up)) => {
                let most = svc.admission.limits.max_batch_elements;
                let shape = check_tensor(&up, "upstream", most)?;
                let want = [on.rows(), on.session.spec.num_classes];
                if shape != want {
                    return Err(invalid(
                        "upstream",
                        format!("expected shape {want:?} (the scores'), got {shape:?}"),
                    ));
                }
                Err(up)
            }
        };
        let input_grad = req.return_input_grad;
        let call = Call::Backward {
            upstream: target.is_err(),
            input_grad,
        };
        let admitted = on.admit(call, request_bytes)?;
        let x = req.x.unwrap_or_default();
        let guard = on.read().await?;
        on.compute(
            admitted,
            move || with_model!(&*guard.guard, m => backward_typed(m, x, target, input_grad)),
        )
        .await
    })
    .await
}

pub async fn evaluate(
    svc: &TrainerService,
    req: Request<pb::EvaluateRequest>,
) -> Result<Response<pb::EvaluateResponse>, Status> {
    let (tenant, req) = split(req);
    let on = svc.on_batch(&req.model_id, &tenant, &req.x)?;
    on.observe("Evaluate", async {
        let y = on.labels(req.labels)?;
        let admitted = on.admit(Call::Evaluate, tensor_bytes(&req.x))?;
        let x = req.x.unwrap_or_default();
        let guard = on.read().await?;
        on.compute(
            admitted,
            move || with_model!(&*guard.guard, m => evaluate_typed(m, x, y)),
        )
        .await
    })
    .await
}

pub async fn gradient_check(
    svc: &TrainerService,
    req: Request<pb::GradientCheckRequest>,
) -> Result<Response<pb::GradientCheckResponse>, Status> {
    let (tenant, req) = split(req);
    let on = svc.on_batch(&req.model_id, &tenant, &req.x)?;
    on.observe("GradientCheck", async {
        let y = on.labels(req.labels)?;
        let per = req.max_elements_per_parameter as u64;
        let limits = &svc.admission.limits;
        let checks = check_gradcheck(limits, &on.session.spec, on.rows(), per)?;
        let admitted = on.admit(Call::GradientCheck { checks }, tensor_bytes(&req.x))?;
        let elements = match per {
            0 => Elements::All,
            _ => Elements::Sample {
                per_tensor: per as usize,
                seed: 0,
            },
        };
        let x = req.x.unwrap_or_default();
        let guard = on.read().await?;
        on.compute(
            admitted,
            move || with_model!(&*guard.guard, m => gradcheck_typed(m, x, y, elements)),
        )
        .await
    })
    .await
}

fn forward_typed<T: WireScalar>(
    m: &Model<T>,
    x: pb::Tensor,
    y: Option<Vec<usize>>,
    probabilities: bool,
) -> Result<pb::ForwardResponse, Status> {
    let form = Form::of(&x);
    let x = matrix::<T>(x, "x")?;
    let (scores, losses) = match &y {
        Some(y) => {
            let (s, l) = m.net().evaluate(x.view(), y)?;
            (s, Some(l))
        }
        None => (m.net().scores(x.view())?, None),
    };
    let preds = predictions(&scores.view());
    let probabilities = probabilities.then(|| to_tensor_in(softmax(scores.view()), form));
    Ok(pb::ForwardResponse {
        accuracy: y.as_ref().map(|y| accuracy(&preds, y)),
        predictions: preds.into_iter().map(|p| p as u32).collect(),
        losses: losses.map(losses_pb),
        scores: Some(to_tensor_in(scores, form)),
        probabilities,
    })
}

fn backward_typed<T: WireScalar>(
    m: &Model<T>,
    x: pb::Tensor,
    target: Result<Vec<usize>, pb::Tensor>,
    input_grad: bool,
) -> Result<pb::BackwardResponse, Status> {
    let form = Form::of(&x);
    let x = matrix::<T>(x, "x")?;
    let g = match &target {
        Ok(y) => m.net().gradients(x.view(), Target::Labels(y), input_grad)?,
        Err(up) => {
            let up = matrix::<T>(up.clone(), "upstream")?;
            m.net()
                .gradients(x.view(), Target::Upstream(up.view()), input_grad)?
        }
    };
    Ok(pb::BackwardResponse {
        losses: Some(losses_pb(g.losses)),
        gradients: m
            .net()
            .params()
            .iter()
            .zip(g.params)
            .map(|(p, g)| pb::NamedTensor {
                name: p.name.clone(),
                tensor: Some(to_tensor_in(g, form)),
            })
            .collect(),
        input_grad: g.input.map(|g| to_tensor_in(g, form)),
    })
}

fn evaluate_typed<T: WireScalar>(
    m: &Model<T>,
    x: pb::Tensor,
    y: Vec<usize>,
) -> Result<pb::EvaluateResponse, Status> {
    let x = matrix::<T>(x, "x")?;
    let (scores, losses) = m.net().evaluate(x.view(), &y)?;
    Ok(pb::EvaluateResponse {
        losses: Some(losses_pb(losses)),
        accuracy: accuracy(&predictions(&scores.view()), &y),
        num_examples: y.len() as u64,
    })
}

fn gradcheck_typed<T: WireScalar>(
    m: &Model<T>,
    x: pb::Tensor,
    y: Vec<usize>,
    elements: Elements,
) -> Result<pb::GradientCheckResponse, Status> {
    let x = matrix::<T>(x, "x")?;
    let checks = m.gradient_check(x.view(), &y, elements)?;
    let errors: Vec<pb::ParameterError> = m
        .net()
        .params()
        .iter()
        .zip(checks)
        .map(|(p, c)| pb::ParameterError {
            name: p.name.clone(),
            max_relative_error: c.max_relative_error,
            elements_checked: c.elements_checked as u64,
            worst_element: c.worst_element.map(|i| i as u64),
        })
        .collect();
    Ok(pb::GradientCheckResponse {
        max_relative_error: errors
            .iter()
            .map(|e| e.max_relative_error)
            .fold(0.0, f64::max),
        errors,
    })
}
