//! TraceStep end to end against the real server on 127.0.0.1:0: for a small random net of
//! each activation, the traced gradients at the parameter leaves equal Backward's bit for
//! bit, every local gradient is the lecture's formula recomputed here from the traced
//! values, every edge's downstream gradient equals local × upstream, and every node's
//! gradient is the sum of what its out-edges send back. Then the limits, a model left
//! unchanged, and the DOT and SVG renderings of the same trace.

use std::collections::{BTreeMap, BTreeSet};

use backprop::cli::graph as render;
use backprop::pb;
use ndarray::{Array2, ArrayD, Axis, Ix2, IxDyn};
use support::*;
use tonic::Code;

/// A wire tensor as f64, whatever the model's dtype.
fn arr(t: &pb::Tensor) -> ArrayD<f64> {
    let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
    let v: Vec<f64> = if t.values_f64.is_empty() {
        t.values.iter().map(|&v| v as f64).collect()
    } else {
        t.values_f64.clone()
    };
    ArrayD::from_shape_vec(IxDyn(&shape), v).expect("tensor shape")
}

fn m2(a: &ArrayD<f64>) -> Array2<f64> {
    a.clone().into_dimensionality::<Ix2>().expect("a matrix")
}

/// |a − b| ≤ tol·(1 + |b|) everywhere, same shapes.
#[track_caller]
fn close(what: &str, got: &ArrayD<f64>, want: &ArrayD<f64>, tol: f64) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: traced {g} vs recomputed {w}"
        );
    }
}

struct Case {
    name: &'static str,
    layer: pb::HiddenLayer,
    loss: pb::LossKind,
    dtype: pb::Dtype,
}

fn cases() -> Vec<Case> {
    use pb::Activation as A;
    let (svm, softmax) = (pb::LossKind::Svm, pb::LossKind::Softmax);
    let (f32_, f64_) = (pb::Dtype::F32, pb::Dtype::F64);
    vec![
        Case {
            name: "relu",
            layer: layer(4, A::Relu),
            loss: svm,
            dtype: f32_,
        },
        Case {
            name: "sigmoid",
            layer: layer(4, A::Sigmoid),
            loss: softmax,
            dtype: f64_,
        },
        Case {
            name: "tanh",
            layer: layer(4, A::Tanh),
            loss: svm,
            dtype: f64_,
        },
        Case {
            name: "leaky_relu",
            layer: pb::HiddenLayer {
                leaky_slope: Some(0.1),
                ..layer(4, A::LeakyRelu)
            },
            loss: softmax,
            dtype: f32_,
        },
        Case {
            name: "elu",
            layer: pb::HiddenLayer {
                elu_alpha: Some(1.0),
                ..layer(4, A::Elu)
            },
            loss: svm,
            dtype: f64_,
        },
        Case {
            name: "maxout",
            layer: maxout(4, 3),
            loss: softmax,
            dtype: f64_,
        },
    ]
}

const L2: f64 = 0.05;

fn spec(case: &Case, seed: u64) -> pb::ModelSpec {
    pb::ModelSpec {
        loss: case.loss as i32,
        dtype: case.dtype as i32,
        l2: L2,
        init: seeded(seed),
        ..wire_spec(3, std::slice::from_ref(&case.layer), 3)
    }
}

fn x_tensor(b: &Batch, dtype: pb::Dtype) -> pb::Tensor {
    match dtype {
        pb::Dtype::F64 => b.tensor::<f64>(),
        _ => b.tensor::<f32>(),
    }
}

async fn trace(c: &mut Client, id: &str, b: &Batch, dtype: pb::Dtype) -> pb::TraceStepResponse {
    c.trace_step(pb::TraceStepRequest {
        model_id: id.into(),
        x: Some(x_tensor(b, dtype)),
        labels: b.labels.clone(),
        shapes_only: false,
    })
    .await
    .expect("TraceStep")
    .into_inner()
}

/// The lecture's local gradient of an activation at x, from its formula.
fn activation_local(kind: &str, x: f64) -> f64 {
    match kind {
        "relu" => f64::from(x > 0.0),
        "sigmoid" => {
            let s = 1.0 / (1.0 + (-x).exp());
            s * (1.0 - s)
        }
        "tanh" => 1.0 - x.tanh().powi(2),
        "leaky_relu" => {
            if x > 0.0 {
                1.0
            } else {
                0.1
            }
        }
        "elu" => {
            if x > 0.0 {
                1.0
            } else {
                x.exp()
            }
        }
        other => panic!("not an activation: {other}"),
    }
}

/// Checks one traced graph: local gradients by formula, downstream = local × upstream at
/// every edge, and a node's gradient = the sum over its out-edges.
fn check_graph(t: &pb::TraceStepResponse, labels: &[u32], loss: pb::LossKind, tol: f64) {
    let nodes = &t.nodes;
    let value = |i: u32| arr(nodes[i as usize].value.as_ref().expect("value"));
    let grad = |i: u32| arr(nodes[i as usize].grad.as_ref().expect("grad"));
    let mut sent: BTreeMap<u32, ArrayD<f64>> = BTreeMap::new();
    for n in nodes {
        assert_eq!(
            n.edges.len(),
            n.inputs.len(),
            "node {}: an edge per input",
            n.id
        );
        for (e, &i) in n.edges.iter().zip(&n.inputs) {
            assert_eq!(e.input, i, "node {}: edge order", n.id);
            assert!(
                i < n.id,
                "node {}: inputs come first (topological order)",
                n.id
            );
        }
        if n.kind == "leaf" {
            continue;
        }
        let what = |k: usize| format!("node {} ({}) edge {k}", n.id, n.kind);
        let g = grad(n.id);
        let ins: Vec<ArrayD<f64>> = n.inputs.iter().map(|&i| value(i)).collect();
        let out = value(n.id);
        for (k, e) in n.edges.iter().enumerate() {
            let l = arr(e.local_grad.as_ref().expect("local gradient"));
            let d = arr(e.downstream.as_ref().expect("downstream"));
            let rule = pb::LocalRule::try_from(e.rule).expect("a known rule");
            // 1. The local gradient is the lecture's formula, from the traced values.
            let want_local: ArrayD<f64> = match (n.kind.as_str(), k) {
                ("matmul", 0) => ins[1].clone(),
                ("matmul", _) => ins[0].clone(),
                ("bias_add", 0) => ArrayD::ones(ins[0].raw_dim()),
                ("bias_add", _) => ArrayD::ones(IxDyn(&[ins[0].shape()[0]])),
                ("add" | "sum", _) => ArrayD::ones(ins[k].raw_dim()),
                ("max", _) => {
                    let (a, b) = (&ins[0], &ins[1]);
                    let won = |x: f64, y: f64| if k == 0 { x >= y } else { x < y };
                    ndarray::Zip::from(a)
                        .and(b)
                        .map_collect(|&x, &y| f64::from(won(x, y)))
                }
                ("l2", _) => ins[0].mapv(|w| 2.0 * L2 * w),
                ("svm_loss", _) => {
                    let s = m2(&ins[0]);
                    let nrows = s.nrows() as f64;
                    let mut d = Array2::zeros(s.raw_dim());
                    for (i, &y) in labels.iter().enumerate() {
                        let y = y as usize;
                        for j in 0..s.ncols() {
                            if j != y && s[[i, j]] - s[[i, y]] + 1.0 > 0.0 {
                                d[[i, j]] += 1.0 / nrows;
                                d[[i, y]] -= 1.0 / nrows;
                            }
                        }
                    }
                    d.into_dyn()
                }
                ("softmax_loss", _) => {
                    let s = m2(&ins[0]);
                    let nrows = s.nrows() as f64;
                    let mut d = s.clone();
                    for (mut row, &y) in d.axis_iter_mut(Axis(0)).zip(labels) {
                        let max = row.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
                        let z: f64 = row.iter().map(|v| (v - max).exp()).sum();
                        row.mapv_inplace(|v| (v - max).exp() / z);
                        row[y as usize] -= 1.0;
                        row.mapv_inplace(|v| v / nrows);
                    }
                    d.into_dyn()
                }
                (act, _) => ins[0].mapv(|x| activation_local(act, x)),
            };
            close(&format!("{}: local", what(k)), &l, &want_local, tol);
            if n.kind.ends_with("_loss") {
                let want = match loss {
                    pb::LossKind::Softmax => "softmax_loss",
                    _ => "svm_loss",
                };
                assert_eq!(n.kind, want, "the loss gate is the spec's");
            }

            // 2. downstream = local × upstream, by the edge's rule.
            let want = match rule {
                pb::LocalRule::Elementwise => &l * &g,
                pb::LocalRule::MatmulRight => m2(&g).dot(&m2(&l).t()).into_dyn(),
                pb::LocalRule::MatmulLeft if l.ndim() == 1 => {
                    // 1ᵀ·G with the column of ones sent as a vector.
                    let col = l.clone().into_shape_with_order((l.len(), 1)).unwrap();
                    col.t()
                        .dot(&m2(&g))
                        .index_axis(Axis(0), 0)
                        .to_owned()
                        .into_dyn()
                }
                pb::LocalRule::MatmulLeft => m2(&l).t().dot(&m2(&g)).into_dyn(),
                pb::LocalRule::Scale => {
                    assert_eq!(g.ndim(), 0, "{}: Scale needs a scalar upstream", what(k));
                    &l * g.sum()
                }
                pb::LocalRule::Unspecified => panic!("{}: no rule", what(k)),
            };
            close(&format!("{}: downstream", what(k)), &d, &want, tol);
            assert_eq!(d.shape(), ins[k].shape(), "{}: downstream shape", what(k));
            let acc = sent
                .entry(e.input)
                .or_insert_with(|| ArrayD::zeros(d.raw_dim()));
            *acc += &d;
        }
        assert_eq!(out.shape(), g.shape(), "node {}: gradient shape", n.id);
    }
    // 3. A node's gradient is what its out-edges send back (fan-out adds); the loss's is 1.
    for n in nodes {
        if n.id == t.loss_node {
            close("loss gradient", &grad(n.id), &ArrayD::ones(IxDyn(&[])), 0.0);
        } else {
            let want = sent.get(&n.id).expect("every node feeds the loss");
            close(&format!("node {} gradient", n.id), &grad(n.id), want, tol);
        }
    }
}

#[tokio::test]
async fn traced_gradients_are_backwards_and_local_times_upstream() {
    let server = TestServer::start().await;
    let mut c = server.trainer();
    for (s, case) in cases().iter().enumerate() {
        let (id, _) = create(&mut c, spec(case, 10 + s as u64)).await;
        let b = Batch::random(5, 3, 3, 100 + s as u64);
        let before = get_values(&mut c, &id).await;
        let t = trace(&mut c, &id, &b, case.dtype).await;
        assert!(t.with_values);

        // The model did not change.
        let after = get_values(&mut c, &id).await;
        assert_eq!(before, after, "{}: TraceStep changed the model", case.name);

        // Parameter leaves carry exactly Backward's gradients, and the losses agree.
        let back = c
            .backward(pb::BackwardRequest {
                model_id: id.clone(),
                x: Some(x_tensor(&b, case.dtype)),
                labels: b.labels.clone(),
                upstream: None,
                return_input_grad: true,
            })
            .await
            .expect("Backward")
            .into_inner();
        assert_eq!(t.losses, back.losses, "{}: losses", case.name);
        let leaves: BTreeMap<&str, &pb::TraceNode> = t
            .nodes
            .iter()
            .filter(|n| n.kind == "leaf")
            .map(|n| (n.leaf_name.as_str(), n))
            .collect();
        assert_eq!(
            leaves.len(),
            back.gradients.len() + 1,
            "{}: leaves",
            case.name
        );
        for g in &back.gradients {
            let leaf = leaves[g.name.as_str()];
            assert_eq!(leaf.grad, g.tensor, "{}: gradient of {}", case.name, g.name);
            let p = after.parameters.iter().find(|p| p.name == g.name).unwrap();
            assert_eq!(leaf.value, p.value, "{}: value of {}", case.name, g.name);
        }
        assert_eq!(leaves["x"].grad, back.input_grad, "{}: dL/dX", case.name);

        // Structure: one matmul per weight matrix, the loss on top, paths coloured.
        let kinds: Vec<&str> = t.nodes.iter().map(|n| n.kind.as_str()).collect();
        let weights = back.gradients.iter().filter(|g| g.name.ends_with("weight"));
        assert_eq!(
            kinds.iter().filter(|k| **k == "matmul").count(),
            weights.count()
        );
        let act = if case.name == "maxout" {
            "max"
        } else {
            case.name
        };
        assert!(kinds.contains(&act), "{}: kinds {kinds:?}", case.name);
        assert!(kinds.contains(&"l2") && kinds.contains(&"bias_add"));
        let data = t.data_loss_node.expect("data loss") as usize;
        let reg = t.reg_loss_node.expect("reg loss") as usize;
        assert!(t.nodes[data].data_path && !t.nodes[data].reg_path);
        assert!(t.nodes[reg].reg_path && !t.nodes[reg].data_path);
        for n in &t.nodes {
            if n.kind == "matmul" {
                assert!(
                    n.data_path && !n.reg_path,
                    "{}: matmul {} path",
                    case.name,
                    n.id
                );
            }
            if n.kind == "l2" {
                assert!(n.reg_path && !n.data_path);
            }
            if n.leaf_name.ends_with("weight") {
                assert!(n.data_path && n.reg_path, "a weight feeds both terms");
            }
        }
        assert_eq!(
            t.nodes[t.loss_node as usize].inputs,
            [data as u32, reg as u32]
        );

        let tol = if case.dtype == pb::Dtype::F64 {
            1e-12
        } else {
            1e-5
        };
        check_graph(&t, &b.labels, case.loss, tol);
    }
    server.stop().await;
}

#[tokio::test]
async fn limits_name_their_field_and_shapes_only_lifts_them() {
    let server = TestServer::start().await;
    let mut c = server.trainer();
    // 65 rows: too many for values.
    let (id, _) = create(&mut c, wire_spec(3, &[layer(4, pb::Activation::Relu)], 3)).await;
    let b = Batch::random(65, 3, 3, 1);
    let req = |shapes_only| pb::TraceStepRequest {
        model_id: id.clone(),
        x: Some(b.tensor::<f32>()),
        labels: b.labels.clone(),
        shapes_only,
    };
    let err = c.trace_step(req(false)).await.expect_err("65 rows");
    assert_invalid(&err, "x");
    let t = c
        .trace_step(req(true))
        .await
        .expect("shapes only")
        .into_inner();
    assert!(!t.with_values);
    assert!(
        t.nodes
            .iter()
            .all(|n| n.value.is_none() && n.grad.is_none())
    );
    assert_eq!(t.nodes[t.scores_node as usize].shape, [65, 3]);

    // A 100×64 weight matrix: too large a node for values.
    let (big, _) = create(
        &mut c,
        wire_spec(100, &[layer(64, pb::Activation::Relu)], 3),
    )
    .await;
    let b = Batch::random(2, 100, 3, 2);
    let mut req = pb::TraceStepRequest {
        model_id: big.clone(),
        x: Some(b.tensor::<f32>()),
        labels: b.labels.clone(),
        shapes_only: false,
    };
    let err = c.trace_step(req.clone()).await.expect_err("big layer");
    assert_invalid(&err, "shapes_only");
    assert!(err.message().contains("layers.0.weight"), "{err:?}");
    req.shapes_only = true;
    let t = c
        .trace_step(req.clone())
        .await
        .expect("shapes only")
        .into_inner();
    // x, W1, b1, matmul, bias_add, relu, W2, b2, matmul, bias_add, svm_loss (λ = 0: no R).
    assert_eq!(t.nodes.len(), 11);
    assert_eq!(t.reg_loss_node, None);

    // Labels are required; unknown models are NOT_FOUND, malformed ids INVALID_ARGUMENT.
    req.labels.clear();
    assert_invalid(&c.trace_step(req.clone()).await.unwrap_err(), "labels");
    req.model_id = "nope".into();
    assert_invalid(&c.trace_step(req.clone()).await.unwrap_err(), "model_id");
    req.model_id = "0".repeat(32);
    assert_eq!(c.trace_step(req).await.unwrap_err().code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn dot_and_svg_render_the_traced_graph() {
    let server = TestServer::start().await;
    let mut c = server.trainer();
    for (s, case) in cases().iter().enumerate() {
        let (id, _) = create(&mut c, spec(case, s as u64)).await;
        let b = Batch::random(2, 3, 3, s as u64);
        let wire = trace(&mut c, &id, &b, case.dtype).await;
        let t = render::from_wire(&wire);
        let dot = render::dot(&t);
        check_dot(case.name, &dot, &t);
        graphviz_accepts(case.name, &dot);
        check_svg(case.name, &render::svg(&t));
        let json = render::json(&t);
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON parses");
        assert_eq!(v["nodes"].as_array().unwrap().len(), wire.nodes.len());
    }
    server.stop().await;
}

/// `dot -Tsvg` (Graphviz) must accept the DOT and give well-formed SVG. Graphviz is a
/// requirement of the test suite (tests/run_all.sh installs it): a missing `dot` fails
/// here rather than skipping the only check that real Graphviz reads our output.
fn graphviz_accepts(name: &str, dot: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{name}: cannot run Graphviz's `dot` ({e}); install it \
                 (`apt-get install graphviz`, as tests/run_all.sh does)"
            )
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(dot.as_bytes())
        .expect("write to dot");
    let out = child.wait_with_output().expect("dot runs");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{name}: dot rejected the graph: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = String::from_utf8(out.stdout).expect("utf-8");
    assert!(svg.contains("<svg"), "{name}: dot gave no SVG");
}

/// Structural DOT check (no DOT parser crate here): one digraph, balanced braces and
/// quotes, every edge between declared nodes, one edge per gate input, and the colours
/// of the three kinds of path.
fn check_dot(name: &str, dot: &str, t: &render::Graph) {
    assert!(dot.starts_with("digraph "), "{name}: a digraph");
    let mut depth = 0i32;
    let mut in_quote = false;
    let mut prev = ' ';
    for ch in dot.chars() {
        match ch {
            '"' if prev != '\\' => in_quote = !in_quote,
            '{' if !in_quote => depth += 1,
            '}' if !in_quote => depth -= 1,
            _ => {}
        }
        assert!(depth >= 0, "{name}: unbalanced braces");
        prev = if prev == '\\' && ch == '\\' { ' ' } else { ch };
    }
    assert_eq!(depth, 0, "{name}: unbalanced braces");
    assert!(!in_quote, "{name}: unbalanced quotes");
    let mut declared = BTreeMap::new();
    let mut edges = BTreeSet::new();
    for line in dot.lines().map(str::trim) {
        let Some(head) = line.split(" [").next() else {
            continue;
        };
        if let Some((a, b)) = head.split_once(" -> ") {
            edges.insert((a.to_string(), b.to_string(), line.to_string()));
        } else if head.starts_with('n') && head[1..].chars().all(|c| c.is_ascii_digit()) {
            declared.insert(head.to_string(), line.to_string());
        }
    }
    assert_eq!(
        declared.len(),
        t.nodes.len(),
        "{name}: a statement per node"
    );
    let gate_inputs: usize = t.nodes.iter().map(|n| n.inputs.len()).sum();
    assert_eq!(edges.len(), gate_inputs, "{name}: an edge per gate input");
    for (a, b, _) in &edges {
        assert!(
            declared.contains_key(a) && declared.contains_key(b),
            "{name}: {a} -> {b}"
        );
    }
    let mut colours = BTreeSet::new();
    for n in &t.nodes {
        let line = &declared[&format!("n{}", n.id)];
        if n.kind == "matmul" {
            assert!(
                line.contains("color=blue"),
                "{name}: matmul is blue: {line}"
            );
        }
    }
    for (a, b, line) in &edges {
        let (src, dst) = (
            &t.nodes[a[1..].parse::<usize>().unwrap()],
            &t.nodes[b[1..].parse::<usize>().unwrap()],
        );
        let want = if dst.data_path {
            "color=red"
        } else if dst.reg_path {
            "color=darkgreen"
        } else {
            "color=black"
        };
        assert!(
            line.contains(want),
            "{name}: {} -> {}: {line}",
            src.kind,
            dst.kind
        );
        colours.insert(want);
    }
    assert!(
        colours.contains("color=red") && colours.contains("color=darkgreen"),
        "{name}"
    );
}

/// A tiny well-formedness check: tags nest and close, attributes are quoted, entities are
/// the five XML ones, and there is one root, `<svg>`.
fn check_svg(name: &str, svg: &str) {
    let body = svg.trim_start();
    let body = match body.strip_prefix("<?xml") {
        Some(rest) => &rest[rest.find("?>").expect("xml declaration ends") + 2..],
        None => body,
    };
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut rest = body;
    while let Some(lt) = rest.find('<') {
        check_text(name, &rest[..lt]);
        let gt = rest[lt..].find('>').expect("tag closes") + lt;
        let tag = &rest[lt + 1..gt];
        rest = &rest[gt + 1..];
        if let Some(closing) = tag.strip_prefix('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(closing.trim()),
                "{name}: nesting"
            );
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let tname: String = tag.chars().take_while(|c| !c.is_whitespace()).collect();
        assert!(!tname.is_empty(), "{name}: empty tag name");
        check_attributes(name, &tag[tname.len()..]);
        if stack.is_empty() {
            roots += 1;
            assert_eq!(tname, "svg", "{name}: the root is <svg>");
        }
        if !self_closing {
            stack.push(tname);
        }
    }
    check_text(name, rest);
    assert!(stack.is_empty(), "{name}: unclosed {stack:?}");
    assert_eq!(roots, 1, "{name}: one root");
}

fn check_attributes(name: &str, mut s: &str) {
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return;
        }
        let eq = s
            .find('=')
            .unwrap_or_else(|| panic!("{name}: attribute without =: {s}"));
        let rest = &s[eq + 1..];
        assert!(rest.starts_with('"'), "{name}: unquoted attribute: {s}");
        let end = rest[1..].find('"').expect("attribute closes") + 1;
        check_text(name, &rest[1..end]);
        s = &rest[end + 1..];
    }
}

fn check_text(name: &str, text: &str) {
    assert!(!text.contains('<'), "{name}: a raw < in text");
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        let semi = rest[amp..].find(';').expect("entity ends") + amp;
        let entity = &rest[amp + 1..semi];
        assert!(
            ["amp", "lt", "gt", "quot", "apos"].contains(&entity) || entity.starts_with('#'),
            "{name}: unknown entity &{entity};"
        );
        rest = &rest[semi + 1..];
    }
}

/// `backprop graph ID` (the built binary) against the test server: SVG by default, DOT
/// and JSON on request, a CSV batch, and a clear failure for a batch of the wrong width.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graph_subcommand_writes_svg_dot_and_json() {
    let server = TestServer::start().await;
    let mut c = server.trainer();
    let spec = pb::ModelSpec {
        l2: 0.01,
        loss: pb::LossKind::Softmax as i32,
        ..wire_spec(2, &[layer(3, pb::Activation::Relu)], 3)
    };
    let (id, _) = create(&mut c, spec).await;
    let dir = std::env::temp_dir().join(format!("backprop-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let csv = dir.join("batch.csv");
    std::fs::write(&csv, "label,a,b\n0,1.0,-2.0\n2,0.5,1.5\n").expect("csv");
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "0,1.0,2.0,3.0\n").expect("csv");
    let (addr, dir2) = (server.addr.to_string(), dir.clone());
    let run = move |args: Vec<String>| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_backprop"))
            .args(&args)
            .args(["--address", &addr])
            .output()
            .expect("run backprop");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let p = |name: &str| dir2.join(name).display().to_string();
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let calls = vec![
        s(&["graph", &id, "--out", &p("g.svg")]),
        s(&[
            "graph",
            &id,
            "--batch",
            &csv.display().to_string(),
            "--out",
            &p("g.dot"),
        ]),
        s(&["graph", &id, "--format", "json", "--out", "-"]),
        s(&[
            "graph",
            &id,
            "--batch",
            &bad.display().to_string(),
            "--out",
            &p("x.svg"),
        ]),
    ];
    let results =
        tokio::task::spawn_blocking(move || calls.into_iter().map(run).collect::<Vec<_>>())
            .await
            .expect("runs");
    assert_eq!(results[0].0, Some(0), "svg: {results:?}");
    check_svg(
        "cli",
        &std::fs::read_to_string(dir.join("g.svg")).expect("g.svg"),
    );
    assert_eq!(results[1].0, Some(0), "dot: {results:?}");
    let dot = std::fs::read_to_string(dir.join("g.dot")).expect("g.dot");
    assert!(
        dot.starts_with("digraph") && dot.contains("color=blue"),
        "{dot}"
    );
    assert!(dot.contains("layers.0.weight"), "{dot}");
    assert_eq!(results[2].0, Some(0), "json: {results:?}");
    let v: serde_json::Value = serde_json::from_str(&results[2].1).expect("JSON on stdout");
    assert_eq!(v["nodes"][0]["value"]["shape"], serde_json::json!([2, 2]));
    assert_eq!(
        results[3].0,
        Some(1),
        "a 3-feature batch for a 2-input model"
    );
    assert!(results[3].2.contains("feature"), "{:?}", results[3].2);

    // A model too large for a trace with values (a 200×100 weight is over the per-node
    // limit): the structure is drawn, and the command says the values are left out.
    let (big, _) = create(
        &mut c,
        wire_spec(200, &[layer(100, pb::Activation::Relu)], 3),
    )
    .await;
    let (addr, out) = (server.addr.to_string(), p("big.json"));
    let r = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_backprop"))
            .args([
                "graph",
                &big,
                "--format",
                "json",
                "--out",
                &out,
                "--address",
                &addr,
            ])
            .output()
            .expect("run backprop")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("values left out: ")
            && stderr.contains("structure (kinds and shapes) only"),
        "{stderr}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("big.json")).unwrap()).unwrap();
    let nodes = v["nodes"].as_array().expect("nodes");
    assert!(
        nodes
            .iter()
            .any(|n| n["shape"] == serde_json::json!([200, 100]))
    );
    assert!(
        nodes.iter().all(|n| n["value"].is_null()),
        "no values in a shapes-only graph"
    );
    let _ = std::fs::remove_dir_all(&dir);
    server.stop().await;
}
