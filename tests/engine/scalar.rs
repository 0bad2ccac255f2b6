//! The non-finite scan every batch, gradient and update goes through: the flat row-major
//! index of the first NaN or infinity, on each of its paths (one block, several blocks of
//! 4096, a strided view), since a wrong index names the wrong element in the error and a
//! missed one lets a NaN into the weights.

use backprop::engine::scalar::first_non_finite;
use ndarray::{Array1, arr2};

/// Block size of the contiguous path's or-reduction (`scalar.rs`).
const BLOCK: usize = 4096;

#[test]
fn two_bad_values_in_one_block_give_the_first() {
    // An even count of bad values in a block must not cancel out.
    let a = Array1::from(vec![1.0, f64::NAN, 2.0, f64::INFINITY, 3.0]);
    assert_eq!(first_non_finite(&a), Some(1));
    assert_eq!(
        first_non_finite(&Array1::from(vec![1.0f32, -2.0, 0.0])),
        None
    );
    assert_eq!(first_non_finite(&Array1::<f64>::zeros(0)), None);
}

#[test]
fn a_block_with_no_finite_value_is_found() {
    // Nothing finite at all: the first element is the answer.
    assert_eq!(first_non_finite(&Array1::from(vec![f64::NAN])), Some(0));
    assert_eq!(
        first_non_finite(&Array1::from(vec![f32::INFINITY, f32::NAN])),
        Some(0)
    );
    // A whole block of infinities, then a finite block.
    let mut a = Array1::<f64>::zeros(2 * BLOCK);
    a.slice_mut(ndarray::s![..BLOCK]).fill(f64::INFINITY);
    assert_eq!(first_non_finite(&a), Some(0));
}

#[test]
fn the_index_counts_from_the_start_of_the_array_not_of_its_block() {
    let mut big = Array1::<f64>::zeros(2 * BLOCK);
    big[BLOCK] = f64::NEG_INFINITY;
    big[BLOCK + 904] = f64::NAN;
    assert_eq!(first_non_finite(&big), Some(BLOCK));
    big[BLOCK] = 0.0;
    assert_eq!(first_non_finite(&big), Some(BLOCK + 904));
    big[BLOCK + 904] = 0.0;
    assert_eq!(first_non_finite(&big), None);
}

#[test]
fn a_strided_view_counts_in_its_own_row_major_order() {
    // aᵀ = [[1, 4], [NaN, 5], [3, 6]]: the NaN is element 2 of the view (element 1 of a).
    let a = arr2(&[[1.0, f64::NAN, 3.0], [4.0, 5.0, 6.0]]);
    let t = a.t();
    assert!(t.as_slice().is_none(), "the strided path is the one tested");
    assert_eq!(first_non_finite(&t), Some(2));
    assert_eq!(first_non_finite(&arr2(&[[1.0, 2.0], [3.0, 4.0]]).t()), None);
}
