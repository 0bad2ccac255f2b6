//! The oracle itself (`engine::gradcheck`), against functions whose gradient is known in
//! closed form: the Sample path checks exactly its per-tensor count of elements, drawn by
//! its seed, and finds a planted wrong element it draws; a column-major tensor is checked
//! element for element in row-major (logical) order and given back bit for bit; a
//! non-finite analytic or numeric gradient is an infinite error at that element.

use std::cell::RefCell;

use backprop::engine::EngineError;
use backprop::engine::gradcheck::{self, Elements, H, TensorCheck};
use ndarray::{Array2, ArrayD, ShapeBuilder};

/// `f(w) = Σ_k Σ_i c_i·w_i³` with `c_i = 1 + i` (i the row-major index within tensor k).
fn cubic(v: &[ArrayD<f64>]) -> f64 {
    v.iter()
        .flat_map(|t| t.iter().enumerate())
        .map(|(i, x)| (1 + i) as f64 * x * x * x)
        .sum()
}

/// `∂f/∂w_i = 3·c_i·w_i²`, in standard layout whatever `w`'s layout.
fn cubic_grad(w: &ArrayD<f64>) -> ArrayD<f64> {
    let g = w
        .iter()
        .enumerate()
        .map(|(i, x)| 3.0 * (1 + i) as f64 * x * x)
        .collect();
    ArrayD::from_shape_vec(w.shape(), g).unwrap()
}

/// Values none of which survives `(x + H) − H` unchanged as a rule, so a restore that
/// recomputed instead of copying back would show in the bits; all of magnitude ≥ 0.3, so
/// the cubic's truncation error `h²/(3w²)` stays far below the bounds used here.
fn values(shape: &[usize], salt: f64) -> ArrayD<f64> {
    let n = shape.iter().product::<usize>();
    let v = (0..n)
        .map(|i| {
            let x = (i as f64 * 0.7 + salt).sin();
            x.signum() * (0.3 + x.abs() * 0.9) + 1e-7 / 3.0
        })
        .collect();
    ArrayD::from_shape_vec(shape, v).unwrap()
}

fn bits(a: &ArrayD<f64>) -> Vec<u64> {
    a.iter().map(|x| x.to_bits()).collect()
}

/// One evaluation of f: the (tensor, row-major element) moved and by how much, or `None`
/// at the unperturbed point.
type Moved = Option<(usize, usize, f64)>;

/// Runs the check and records, for every evaluation of f, which (tensor, row-major
/// element) was moved away from `originals` and by how much (`None` for an evaluation
/// at the unperturbed point).
fn run_recorded(
    state: &mut Vec<ArrayD<f64>>,
    analytic: &[ArrayD<f64>],
    elements: Elements,
) -> (Vec<TensorCheck>, Vec<Moved>) {
    let originals = state.clone();
    let seen = RefCell::new(vec![]);
    let c = gradcheck::check(
        state,
        analytic,
        elements,
        |v, k| &mut v[k],
        |v| {
            let moved: Vec<_> = v
                .iter()
                .zip(&originals)
                .enumerate()
                .flat_map(|(k, (t, o))| {
                    t.iter()
                        .zip(o.iter())
                        .enumerate()
                        .filter(|(_, (x, o))| x.to_bits() != o.to_bits())
                        .map(move |(i, (x, o))| (k, i, x - o))
                })
                .collect();
            assert!(moved.len() <= 1, "more than one element moved: {moved:?}");
            seen.borrow_mut().push(moved.first().copied());
            Ok(cubic(v))
        },
    )
    .expect("gradcheck");
    (c, seen.into_inner())
}

/// The elements of tensor `k` that the recorded evaluations moved, one per pair
/// (each is moved up by H, then down by H).
fn drawn(seen: &[Option<(usize, usize, f64)>], k: usize) -> Vec<usize> {
    let of_k: Vec<_> = seen.iter().flatten().filter(|m| m.0 == k).collect();
    assert_eq!(of_k.len() % 2, 0, "{of_k:?}");
    of_k.chunks(2)
        .map(|pair| {
            let ((_, up, dh_up), (_, down, dh_down)) = (*pair[0], *pair[1]);
            assert_eq!(up, down, "a pair moves one element");
            assert!(
                (dh_up - H).abs() < 1e-12 && (dh_down + H).abs() < 1e-12,
                "{pair:?}"
            );
            up
        })
        .collect()
}

/// `Sample { per_tensor, seed }`: a tensor larger than `per_tensor` gets exactly that
/// many elements checked, the ones its seed draws (the same for the same seed, others for
/// another); a tensor no larger gets every element once. A wrong analytic element is
/// found when drawn, and not when it is not (the sample is what was checked).
#[test]
fn sample_checks_its_count_drawn_by_its_seed() {
    let shapes: [&[usize]; 3] = [&[5, 10], &[3], &[2, 2]];
    let base: Vec<_> = shapes
        .iter()
        .enumerate()
        .map(|(k, s)| values(s, k as f64))
        .collect();
    let exact: Vec<_> = base.iter().map(cubic_grad).collect();
    // 4 is more than tensor 1's 3 elements and exactly tensor 2's 4.
    let sample = Elements::Sample {
        per_tensor: 4,
        seed: 42,
    };

    let mut state = base.clone();
    let (c, seen) = run_recorded(&mut state, &exact, sample);
    assert_eq!(
        c.iter().map(|c| c.elements_checked).collect::<Vec<_>>(),
        [4, 3, 4]
    );
    assert_eq!(seen.len(), 2 * (4 + 3 + 4), "two evaluations per element");
    let first = drawn(&seen, 0);
    assert_eq!(first.len(), 4);
    assert!(first.iter().all(|&i| i < 50), "{first:?}");
    // Not larger than the count: every element once, in order (no draw with replacement).
    assert_eq!(drawn(&seen, 1), [0, 1, 2]);
    assert_eq!(drawn(&seen, 2), [0, 1, 2, 3]);
    for (k, c) in c.iter().enumerate() {
        assert!(c.max_relative_error < 1e-7, "tensor {k}: {c:?}");
        assert!(c.worst_element.is_some(), "tensor {k}: {c:?}");
    }
    assert!(
        first.contains(&c[0].worst_element.unwrap()),
        "the worst element is one that was checked: {c:?} {first:?}"
    );
    for (s, b) in state.iter().zip(&base) {
        assert_eq!(bits(s), bits(b), "restored bit for bit");
    }

    // The same seed draws the same elements; another seed others.
    let (_, again) = run_recorded(&mut state, &exact, sample);
    assert_eq!(drawn(&again, 0), first, "the same seed");
    let (_, other) = run_recorded(
        &mut state,
        &exact,
        Elements::Sample {
            per_tensor: 4,
            seed: 43,
        },
    );
    assert_ne!(drawn(&other, 0), first, "another seed");
    // Tensor k's draw depends on k, not only on the seed: the same values in tensors 0
    // and 1 (both 50 elements) are sampled at different places.
    let mut twins = vec![base[0].clone(), base[0].clone()];
    let twin_exact = vec![exact[0].clone(), exact[0].clone()];
    let (_, seen_twins) = run_recorded(&mut twins, &twin_exact, sample);
    assert_eq!(drawn(&seen_twins, 0), first);
    assert_ne!(
        drawn(&seen_twins, 1),
        first,
        "tensor 1 drew tensor 0's elements"
    );

    // A wrong element that is drawn is found, and is the worst.
    let planted = first[2];
    let mut wrong = exact.clone();
    wrong[0].as_slice_mut().unwrap()[planted] *= 1.5;
    let (c, _) = run_recorded(&mut state, &wrong, sample);
    assert_eq!(c[0].worst_element, Some(planted), "{c:?}");
    // |1.5g − g| / (1.5g + g) = 0.2 (up to the numeric gradient's own error).
    assert!((c[0].max_relative_error - 0.2).abs() < 1e-6, "{c:?}");
    assert!(c[1].max_relative_error < 1e-7 && c[2].max_relative_error < 1e-7);
    // One that is not drawn is not checked, so not seen.
    let missed = (0..50).find(|i| !first.contains(i)).unwrap();
    let mut wrong = exact.clone();
    wrong[0].as_slice_mut().unwrap()[missed] *= 1.5;
    let (c, _) = run_recorded(&mut state, &wrong, sample);
    assert!(c[0].max_relative_error < 1e-7, "{c:?}");
    assert_eq!(c[0].elements_checked, 4);

    // A count of 0 checks nothing and never evaluates f.
    let (c, seen) = run_recorded(
        &mut state,
        &exact,
        Elements::Sample {
            per_tensor: 0,
            seed: 42,
        },
    );
    assert!(seen.is_empty(), "{seen:?}");
    for c in &c {
        assert_eq!(
            (c.elements_checked, c.worst_element, c.max_relative_error),
            (0, None, 0.0)
        );
    }
}

/// The seed reaches every tensor's draw, not only the first one's: seeds 42 and 43,
/// which differ in their lowest bit alone, draw different elements in each of three
/// tensors of 50, and the same seed draws the same ones again.
#[test]
fn every_tensors_draw_follows_the_seed() {
    let base = values(&[5, 10], 0.0);
    let analytic = vec![cubic_grad(&base); 3];
    let mut state = vec![base; 3];
    let mut draws = |seed| {
        let sample = Elements::Sample {
            per_tensor: 4,
            seed,
        };
        let (_, seen) = run_recorded(&mut state, &analytic, sample);
        (0..3).map(|k| drawn(&seen, k)).collect::<Vec<_>>()
    };
    let (a, b) = (draws(42), draws(43));
    assert_eq!(draws(42), a, "the same seed");
    for k in 0..3 {
        assert_eq!((a[k].len(), b[k].len()), (4, 4), "tensor {k}");
        assert_ne!(
            a[k], b[k],
            "tensor {k}: seeds 42 and 43 drew {:?} alike",
            a[k]
        );
    }
}

/// A column-major tensor (Fortran order, as a transposed matrix is stored) is checked in
/// its logical, row-major order: element i of the check is the element at row-major
/// index i of the tensor, compared with the analytic gradient's element at the same
/// logical place (whatever the analytic gradient's own layout), worst_element is that
/// row-major index, and the tensor's values come back bit for bit.
#[test]
fn a_column_major_tensor_is_checked_in_row_major_order_and_restored() {
    let logical = values(&[3, 4], 0.25);
    let mut fortran = Array2::<f64>::zeros((3, 4).f()).into_dyn();
    fortran.assign(&logical);
    assert!(!fortran.is_standard_layout(), "the setup is column-major");
    // Logical [2, 1]: row-major index 2·4 + 1 = 9; in column-major memory it is 1·3 + 2 = 5.
    let planted = 9;
    let mut wrong = cubic_grad(&logical);
    wrong[[2, 1]] *= 1.5;
    let mut wrong_fortran = Array2::<f64>::zeros((3, 4).f()).into_dyn();
    wrong_fortran.assign(&wrong);
    let transposed_view = {
        // The same tensor built as the transpose of a row-major [4, 3] matrix.
        let t = logical.t().as_standard_layout().into_owned();
        t.reversed_axes()
    };
    assert_eq!(transposed_view, logical);
    assert!(!transposed_view.is_standard_layout());

    for (name, start, analytic) in [
        ("fortran state", &fortran, &wrong),
        ("fortran state and gradient", &fortran, &wrong_fortran),
        ("transposed state", &transposed_view, &wrong),
        (
            "row-major state, fortran gradient",
            &logical,
            &wrong_fortran,
        ),
    ] {
        let mut state = vec![start.clone()];
        let (c, seen) = run_recorded(&mut state, std::slice::from_ref(analytic), Elements::All);
        assert_eq!(c[0].elements_checked, 12, "{name}");
        assert_eq!(c[0].worst_element, Some(planted), "{name}: {c:?}");
        assert!(
            (c[0].max_relative_error - 0.2).abs() < 1e-6,
            "{name}: {c:?}"
        );
        assert_eq!(drawn(&seen, 0), (0..12).collect::<Vec<_>>(), "{name}");
        assert_eq!(state[0], logical, "{name}: the values");
        assert_eq!(
            bits(&state[0]),
            bits(&logical),
            "{name}: restored bit for bit"
        );

        // The right gradient in either layout passes.
        let (c, _) = run_recorded(&mut state, &[cubic_grad(&logical)], Elements::All);
        assert!(c[0].max_relative_error < 1e-7, "{name}: {c:?}");
        // A sample of 5 of the 12: what it draws are row-major indices too.
        let (c, seen) = run_recorded(
            &mut state,
            std::slice::from_ref(&wrong_fortran),
            Elements::Sample {
                per_tensor: 5,
                seed: 7,
            },
        );
        let d = drawn(&seen, 0);
        assert_eq!((c[0].elements_checked, d.len()), (5, 5), "{name}");
        assert!(
            d.contains(&c[0].worst_element.unwrap()),
            "{name}: {c:?} {d:?}"
        );
        assert_eq!(
            c[0].max_relative_error > 0.1,
            d.contains(&planted),
            "{name}: found exactly when drawn, {c:?} {d:?}"
        );
        assert_eq!(
            bits(&state[0]),
            bits(&logical),
            "{name}: restored bit for bit"
        );
    }
}

/// An analytic gradient of the wrong shape is a typed error naming which one and both
/// shapes; the state is left as it was.
#[test]
fn an_analytic_gradient_of_the_wrong_shape_is_an_error() {
    let mut state = vec![values(&[2, 3], 0.0), values(&[4], 1.0)];
    let analytic = [cubic_grad(&state[0]), cubic_grad(&values(&[2, 2], 1.0))];
    let before = state.clone();
    let e = gradcheck::check(
        &mut state,
        &analytic,
        Elements::All,
        |v, k| &mut v[k],
        |v| Ok(cubic(v)),
    )
    .unwrap_err();
    match &e {
        EngineError::Shape {
            field,
            expected,
            got,
        } => {
            assert_eq!(field, "gradcheck.analytic[1]");
            assert_eq!(expected, "[4]");
            assert_eq!(got, "[2, 2]");
        }
        other => panic!("{other:?}"),
    }
    for (s, b) in state.iter().zip(&before) {
        assert_eq!(bits(s), bits(b));
    }
}

/// When f fails at a perturbed point, the check stops with f's error and the element is
/// restored all the same.
#[test]
fn an_error_from_f_is_returned_with_the_state_restored() {
    let base = values(&[2, 2], 0.5);
    let mut state = vec![base.clone()];
    let e = gradcheck::check(
        &mut state,
        &[cubic_grad(&base)],
        Elements::All,
        |v, k| &mut v[k],
        |v| {
            if v[0][[0, 1]] < base[[0, 1]] {
                return Err(EngineError::EmptyBatch {
                    field: "probe".into(),
                });
            }
            Ok(cubic(v))
        },
    )
    .unwrap_err();
    assert_eq!(e.field(), "probe");
    assert_eq!(bits(&state[0]), bits(&base), "restored after the failure");
}

/// Among several non-finite analytic elements the first is the worst one reported, ahead
/// of any finite error however large, on the All and the Sample path alike.
#[test]
fn the_first_non_finite_element_is_the_worst() {
    let base = values(&[6], 2.0);
    let exact = cubic_grad(&base);
    for elements in [
        Elements::All,
        Elements::Sample {
            per_tensor: 6,
            seed: 1,
        },
    ] {
        for (first, second) in [(1, 4), (0, 5)] {
            let mut analytic = exact.clone();
            // Every other element the opposite of its true value: relative error 1,
            // the largest a finite pair can have.
            analytic.mapv_inplace(|g| -g);
            analytic[first] = f64::NAN;
            analytic[second] = f64::INFINITY;
            let mut state = vec![base.clone()];
            let (c, _) = run_recorded(&mut state, &[analytic], elements);
            assert_eq!(c[0].max_relative_error, f64::INFINITY, "{elements:?}");
            assert_eq!(c[0].worst_element, Some(first), "{elements:?} {c:?}");
            assert_eq!(bits(&state[0]), bits(&base));
        }
    }
}

/// A NaN or an infinity in the analytic gradient, or a loss that evaluates to NaN (the
/// numeric side), is an infinite error at that element, never a perfect one: `f64::max`
/// used to drop the NaN, so a NaN gradient passed every check.
#[test]
fn non_finite_gradients_are_infinite_errors() {
    assert_eq!(gradcheck::relative_error(f64::NAN, 1.0), f64::INFINITY);
    assert_eq!(gradcheck::relative_error(1.0, f64::NAN), f64::INFINITY);
    assert_eq!(gradcheck::relative_error(f64::INFINITY, 1.0), f64::INFINITY);
    assert_eq!(
        gradcheck::relative_error(1.0, f64::NEG_INFINITY),
        f64::INFINITY
    );
    // Finite but overflowing: |a − n| and |a| + |n| are both inf.
    assert_eq!(
        gradcheck::relative_error(f64::MAX, -f64::MAX),
        f64::INFINITY
    );
    assert_eq!(gradcheck::relative_error(0.5, 0.5), 0.0);

    // f(w) = Σ w², gradient 2w; element 2 of the analytic gradient replaced.
    let w = ArrayD::from_shape_vec(vec![2, 2], vec![0.5, -1.0, 2.0, 0.25]).unwrap();
    let sum_sq = |v: &Vec<ArrayD<f64>>| Ok(v[0].iter().map(|x| x * x).sum::<f64>());
    let exact = w.mapv(|x| 2.0 * x);
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut analytic = exact.clone();
        analytic[[1, 0]] = bad;
        let mut state = vec![w.clone()];
        let c = gradcheck::check(
            &mut state,
            &[analytic],
            Elements::All,
            |v, k| &mut v[k],
            sum_sq,
        )
        .unwrap();
        assert_eq!(c[0].max_relative_error, f64::INFINITY, "analytic {bad}");
        assert_eq!(c[0].worst_element, Some(2), "analytic {bad}");
        assert_eq!(c[0].elements_checked, 4);
        assert_eq!(state[0], w, "every element restored");
    }
    // The correct gradient: tiny error, and the worst element is one of the four.
    let mut state = vec![w.clone()];
    let c = gradcheck::check(
        &mut state,
        std::slice::from_ref(&exact),
        Elements::All,
        |v, k| &mut v[k],
        sum_sq,
    )
    .unwrap();
    assert!(c[0].max_relative_error < 1e-8, "{c:?}");
    assert!(c[0].worst_element.is_some_and(|i| i < 4), "{c:?}");
    // A loss that is NaN when element 3 moves up: the numeric gradient there is NaN.
    let mut state = vec![w.clone()];
    let c = gradcheck::check(
        &mut state,
        std::slice::from_ref(&exact),
        Elements::All,
        |v, k| &mut v[k],
        |v| {
            let s = v[0].iter().map(|x| x * x).sum::<f64>();
            Ok(if v[0][[1, 1]] > 0.25 { f64::NAN } else { s })
        },
    )
    .unwrap();
    assert_eq!(c[0].max_relative_error, f64::INFINITY);
    assert_eq!(c[0].worst_element, Some(3));
    // Nothing checked: no worst element, zero error.
    let empty = ArrayD::<f64>::zeros(vec![0]);
    let mut state = vec![empty.clone()];
    let c = gradcheck::check(
        &mut state,
        &[empty],
        Elements::All,
        |v, k| &mut v[k],
        sum_sq,
    )
    .unwrap();
    assert_eq!((c[0].max_relative_error, c[0].worst_element), (0.0, None));
}
