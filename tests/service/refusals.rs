//! The refusal decisions of `service::limits` at their edges, called directly on a
//! `SessionStore` (no server, no work): an answer or a peak exactly at its limit is taken
//! and one byte more is refused; the advice a refusal gives ("send at most R rows", "no
//! batch is small enough", "use a smaller model"), the field it names and the flag it
//! blames follow the call and the limits; the spec, checkpoint-header, trace and
//! GradientCheck limits take the limit itself and refuse one past it.

use backprop::model::{ActivationSpec, HiddenSpec, ModelSpec};
use backprop::service::RequestLimits;
use backprop::service::limits::{
    Admission, Call, Cost, MAX_CHECKPOINT_HEADER, MAX_DEPTH, MAX_DIM, TRACE_MAX_ROWS,
    check_checkpoint_header, check_gradcheck, check_spec_size, check_trace_size, estimate,
};
use backprop::session::{Limits, SessionStore};
use support::*;
use tonic::{Code, Status};

fn relu(units: usize) -> HiddenSpec {
    HiddenSpec {
        units,
        activation: ActivationSpec::Relu,
    }
}

/// 8 → 16 → 4, f32, with biases.
fn net() -> ModelSpec {
    ModelSpec::new(8, vec![relu(16)], 4)
}

fn store(max_call_memory: Option<u64>, max_memory: Option<u64>) -> SessionStore {
    SessionStore::new(Limits {
        max_call_memory,
        max_memory,
        ..Limits::default()
    })
}

/// Admits `call` on `rows` rows of `net()` holding `request_bytes`; the cost if taken.
fn admit(
    store: &SessionStore,
    max_message_bytes: usize,
    rows: usize,
    call: Call,
    request_bytes: u64,
) -> Result<Cost, Status> {
    let admission = Admission {
        limits: RequestLimits::default(),
        max_message_bytes,
    };
    admission
        .admit(store, &net(), rows, call, request_bytes)
        .map(|(cost, _reservation)| cost)
}

/// The `R` of "send at most R rows" in a refusal.
fn rows_advised(e: &Status) -> u64 {
    let m = e.message();
    let at = m
        .find("send at most ")
        .unwrap_or_else(|| panic!("no advice in {m:?}"));
    m[at + "send at most ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no row count in {m:?}"))
}

const LOTS: usize = 1 << 30;

#[test]
fn an_answer_at_the_message_limit_is_taken_and_one_byte_more_refused() {
    let unlimited = store(None, None);
    // The estimates are affine in the rows, so with the limit one byte below 10 rows'
    // answer exactly 9 rows fit.
    for call in [
        Call::Forward {
            labels: false,
            probabilities: false,
        },
        Call::Trace { values: true },
        Call::Backward {
            upstream: false,
            input_grad: true,
        },
    ] {
        let answer = estimate(&net(), 10, call).answer_bytes;
        let cost = admit(&unlimited, answer as usize, 10, call, 0)
            .unwrap_or_else(|e| panic!("{call:?} at the limit: {e:?}"));
        assert_eq!(cost.answer_bytes, answer);
        let e = admit(&unlimited, answer as usize - 1, 10, call, 0).unwrap_err();
        assert_reason(&e, Code::InvalidArgument, "ANSWER_TOO_LARGE");
        assert_invalid(&e, "x");
        assert_eq!(rows_advised(&e), 9, "{call:?}: {}", e.message());
        let limit = format!("more than the {}-byte message limit", answer - 1);
        let (flag, description) = quota(&e);
        assert_eq!(flag, "--max-message-mib");
        assert!(description.contains(&limit), "{description}");
    }
    // A trace that fits on fewer rows is told both ways out.
    let trace = Call::Trace { values: true };
    let e = admit(
        &unlimited,
        estimate(&net(), 10, trace).answer_bytes as usize - 1,
        10,
        trace,
        0,
    )
    .unwrap_err();
    assert!(
        e.message()
            .ends_with("send at most 9 rows, or set shapes_only"),
        "{}",
        e.message()
    );
    // Backward whose gradients alone are over the limit is not told to send fewer rows.
    let backward = Call::Backward {
        upstream: false,
        input_grad: true,
    };
    let one_row = estimate(&net(), 1, backward).answer_bytes;
    let e = admit(&unlimited, one_row as usize - 1, 10, backward, 0).unwrap_err();
    assert!(
        e.message()
            .contains("the gradients alone do not fit even without return_input_grad"),
        "{}",
        e.message()
    );
    // GetModel has no rows: the way under is ExportModel.
    let get = Call::GetModel { values: true };
    let answer = estimate(&net(), 0, get).answer_bytes;
    admit(&unlimited, answer as usize, 0, get, 0).expect("GetModel at the limit");
    let e = admit(&unlimited, answer as usize - 1, 0, get, 0).unwrap_err();
    assert_invalid(&e, "include_values");
    assert!(e.message().contains("ExportModel"), "{}", e.message());
}

#[test]
fn a_peak_at_the_call_cap_is_taken_and_one_byte_more_refused() {
    let call = Call::Forward {
        labels: true,
        probabilities: false,
    };
    // 10 rows of 8 f32 inputs and a label each: 40 request bytes a row.
    let request = 10 * 40;
    let need = estimate(&net(), 10, call).peak_bytes + request;
    admit(&store(Some(need), None), LOTS, 10, call, request).expect("at --max-call-memory");
    admit(&store(None, Some(need)), LOTS, 10, call, request).expect("at --max-memory");

    // One byte less: exactly 9 rows fit, the request's own bytes counted per row.
    let e = admit(&store(Some(need - 1), None), LOTS, 10, call, request).unwrap_err();
    assert_reason(&e, Code::InvalidArgument, "CALL_MEMORY");
    assert_invalid(&e, "x");
    assert_eq!(rows_advised(&e), 9, "{}", e.message());
    assert_eq!(quota(&e).0, "--max-call-memory");

    // With both limits set the smaller one is the cap, and is the one blamed.
    let e = admit(&store(Some(need - 1), Some(need)), LOTS, 10, call, request).unwrap_err();
    assert_eq!(quota(&e).0, "--max-call-memory", "{}", e.message());
    let e = admit(&store(Some(need), Some(need - 1)), LOTS, 10, call, request).unwrap_err();
    assert_eq!(quota(&e).0, "--max-memory", "{}", e.message());
    assert!(
        e.message().contains(&format!("({} bytes,", need - 1)),
        "{}",
        e.message()
    );
}

#[test]
fn a_refusal_over_the_call_cap_says_what_would_fit() {
    let call = Call::Forward {
        labels: true,
        probabilities: false,
    };
    let one_row = estimate(&net(), 1, call).peak_bytes + 40;
    // A cap of exactly one row's need: one row, and no more.
    let e = admit(&store(Some(one_row), None), LOTS, 2, call, 80).unwrap_err();
    assert_eq!(rows_advised(&e), 1, "{}", e.message());
    admit(&store(Some(one_row), None), LOTS, 1, call, 40).expect("the advised row");
    // Not even one row: no batch helps.
    let e = admit(&store(Some(one_row - 1), None), LOTS, 2, call, 80).unwrap_err();
    assert_invalid(&e, "x");
    assert!(
        e.message()
            .ends_with("; no batch is small enough for this model"),
        "{}",
        e.message()
    );

    // Calls without rows name their own field and can only be told to shrink the model.
    for (call, field, request) in [
        (Call::GetModel { values: true }, "include_values", 0),
        (Call::ApplyGradients, "gradients", 4 * 212),
    ] {
        let need = estimate(&net(), 0, call).peak_bytes + request;
        admit(&store(Some(need), None), LOTS, 0, call, request)
            .unwrap_or_else(|e| panic!("{call:?} at the cap: {e:?}"));
        let e = admit(&store(Some(need - 1), None), LOTS, 0, call, request).unwrap_err();
        assert_reason(&e, Code::InvalidArgument, "CALL_MEMORY");
        assert_invalid(&e, field);
        assert!(
            e.message().ends_with("; use a smaller model"),
            "{call:?}: {}",
            e.message()
        );
    }
}

#[test]
fn spec_dimensions_and_depth_are_refused_only_past_their_limits() {
    check_spec_size(&ModelSpec::new(MAX_DIM, vec![relu(MAX_DIM)], MAX_DIM))
        .expect("every dimension at the limit");
    let past = MAX_DIM + 1;
    for (spec, field) in [
        (ModelSpec::new(past, vec![relu(2)], 2), "spec.input_dim"),
        (
            ModelSpec::new(2, vec![relu(past)], 2),
            "spec.hidden[].units",
        ),
        (ModelSpec::new(2, vec![relu(2)], past), "spec.num_classes"),
    ] {
        let e = check_spec_size(&spec).unwrap_err();
        assert_invalid(&e, field);
        assert!(
            e.message().ends_with(&format!(
                "{past} is beyond the largest dimension, {MAX_DIM}"
            )),
            "{}",
            e.message()
        );
    }
    check_spec_size(&ModelSpec::new(2, vec![relu(2); MAX_DEPTH], 2)).expect("the deepest");
    let e = check_spec_size(&ModelSpec::new(2, vec![relu(2); MAX_DEPTH + 1], 2)).unwrap_err();
    assert_invalid(&e, "spec.hidden");
    assert!(
        e.message().ends_with("at most 128 hidden layers"),
        "{}",
        e.message()
    );
}

/// A file whose first 8 bytes say `header` (little-endian), `len` bytes in all.
fn file(header: u64, len: u64) -> Vec<u8> {
    let mut f = header.to_le_bytes().to_vec();
    f.resize(len as usize, b' ');
    f
}

#[test]
fn a_checkpoint_header_is_refused_only_past_the_largest_any_model_has() {
    let max = MAX_CHECKPOINT_HEADER;
    check_checkpoint_header(&file(max, 8 + max)).expect("a header at the limit");
    let e = check_checkpoint_header(&file(max + 1, 8 + max + 1)).unwrap_err();
    assert_invalid(&e, "checkpoint");
    assert!(
        e.message()
            .contains(&format!("the header is {} bytes", max + 1)),
        "{}",
        e.message()
    );
    // A length past the file's end, by one byte or by more, is left to the decoder
    // (which says the file is cut short), as is a file too short to hold a length.
    check_checkpoint_header(&file(max + 1, 8 + max)).expect("one byte past the end");
    check_checkpoint_header(&file(max + 1, max - 1)).expect("far past the end");
    check_checkpoint_header(&[1, 2, 3]).expect("no length at all");
}

#[test]
fn a_trace_with_values_is_refused_only_past_its_rows_and_node_size() {
    let small = ModelSpec::new(2, vec![relu(3)], 2);
    check_trace_size(&small, TRACE_MAX_ROWS).expect("the most rows");
    let e = check_trace_size(&small, TRACE_MAX_ROWS + 1).unwrap_err();
    assert_invalid(&e, "x");
    assert!(
        e.message()
            .contains("takes at most 64 rows, got 65; send fewer rows or set shapes_only"),
        "{}",
        e.message()
    );
    // 64 rows × 64 units is the largest node allowed; 17 rows × 241 units one more.
    check_trace_size(&ModelSpec::new(1, vec![relu(64)], 2), 64).expect("4096 elements");
    let e = check_trace_size(&ModelSpec::new(1, vec![relu(241)], 2), 17).unwrap_err();
    assert_invalid(&e, "shapes_only");
    assert!(
        e.message()
            .starts_with("shapes_only: layers.0 output has 4097 elements, more than the 4096"),
        "{}",
        e.message()
    );
}

#[test]
fn gradient_check_work_is_refused_only_past_its_budget() {
    // 2 → 3 with biases: a weight of 6 elements and a bias of 3, 9 parameters.
    let spec = ModelSpec::new(2, vec![], 3);
    assert_eq!(spec.parameter_count(), Some(9));
    let budget = |max_gradcheck_work| RequestLimits {
        max_gradcheck_work,
        ..RequestLimits::default()
    };
    // At most 2 per parameter: 2 + 2 = 4 elements, × 5 rows × 9 parameters = 180.
    assert_eq!(check_gradcheck(&budget(180), &spec, 5, 2).unwrap(), 4);
    let e = check_gradcheck(&budget(179), &spec, 5, 2).unwrap_err();
    assert_invalid(&e, "max_elements_per_parameter");
    assert!(
        e.message().contains("checking 4 elements on 5 rows"),
        "{}",
        e.message()
    );
    // 0 means every element: 9, × 5 × 9 = 405; a cap above the size changes nothing.
    assert_eq!(check_gradcheck(&budget(405), &spec, 5, 0).unwrap(), 9);
    assert_eq!(check_gradcheck(&budget(405), &spec, 5, 100).unwrap(), 9);
    let e = check_gradcheck(&budget(404), &spec, 5, 0).unwrap_err();
    assert!(
        e.message().contains("checking 9 elements on 5 rows"),
        "{}",
        e.message()
    );
}
