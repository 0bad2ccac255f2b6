//! Which rows each step of a fit takes (the proto's `Sampling` documents the same
//! algorithm, so a client can reproduce a fit with TrainSteps): SplitMix64 seeded with
//! the fit's seed ([`Rng`]), a draw below n being the high half of the 128-bit product.
//! An optional validation split shuffles 0..N first; then each epoch either shuffles
//! the training rows in place (Fisher–Yates) and slices them into batches, or draws
//! every batch with replacement (CS231n's Solver).
use crate::engine::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// Each epoch a permutation of the training rows, in consecutive batches.
    Shuffle { drop_last: bool },
    /// max(M / batch, 1) batches per epoch, each `batch` draws with replacement.
    WithReplacement,
}

/// Fisher–Yates from the last index down: for i = n−1 … 1, swap i with a draw below i+1.
pub fn shuffle(rng: &mut Rng, rows: &mut [usize]) {
    for i in (1..rows.len()).rev() {
        let j = rng.below(i + 1);
        rows.swap(i, j);
    }
}

/// Splits 0..n into (validation, training): a shuffle of 0..n, the first
/// round(n · fraction) rows held out, both in shuffled order. Draws nothing when
/// `fraction` is 0 (then training is 0..n in order).
pub fn split(rng: &mut Rng, n: usize, fraction: f64) -> (Vec<usize>, Vec<usize>) {
    let mut rows: Vec<usize> = (0..n).collect();
    if fraction <= 0.0 {
        return (Vec::new(), rows);
    }
    shuffle(rng, &mut rows);
    let held = held_out(n, fraction);
    let train = rows.split_off(held);
    (rows, train)
}

/// The rows a validation fraction holds out of n.
pub fn held_out(n: usize, fraction: f64) -> usize {
    ((n as f64) * fraction).round() as usize
}

/// The batches of a fit, epoch after epoch.
pub struct Sampler {
    rng: Rng,
    train: Vec<usize>,
    batch: usize,
    sampling: Sampling,
}

impl Sampler {
    /// `rng` continues from the split's draws; `train` are the training rows (M ≥ 1),
    /// `batch` in 1..=M.
    pub fn new(rng: Rng, train: Vec<usize>, batch: usize, sampling: Sampling) -> Self {
        Sampler {
            rng,
            train,
            batch,
            sampling,
        }
    }

    /// Batches per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        let m = self.train.len();
        match self.sampling {
            Sampling::Shuffle { drop_last: true } => m / self.batch,
            Sampling::Shuffle { drop_last: false } => m.div_ceil(self.batch),
            Sampling::WithReplacement => (m / self.batch).max(1),
        }
    }

    /// The next epoch's batches (row indices into the dataset).
    pub fn epoch(&mut self) -> Vec<Vec<usize>> {
        match self.sampling {
            Sampling::Shuffle { drop_last } => {
                shuffle(&mut self.rng, &mut self.train);
                let mut batches: Vec<Vec<usize>> = self
                    .train
                    .chunks(self.batch)
                    .map(<[usize]>::to_vec)
                    .collect();
                if drop_last && batches.last().is_some_and(|b| b.len() < self.batch) {
                    batches.pop();
                }
                batches
            }
            Sampling::WithReplacement => {
                let m = self.train.len();
                (0..self.steps_per_epoch())
                    .map(|_| {
                        (0..self.batch)
                            .map(|_| self.train[self.rng.below(m)])
                            .collect()
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_is_a_permutation_in_batches_and_the_split_is_disjoint() {
        let mut rng = Rng::new(7);
        let (val, train) = split(&mut rng, 10, 0.3);
        assert_eq!(val.len(), 3);
        let mut all: Vec<usize> = val.iter().chain(&train).copied().collect();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        let mut s = Sampler::new(
            rng,
            train.clone(),
            3,
            Sampling::Shuffle { drop_last: false },
        );
        assert_eq!(s.steps_per_epoch(), 3);
        let e = s.epoch();
        assert_eq!(e.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 1]);
        let mut seen: Vec<usize> = e.concat();
        seen.sort();
        let mut want = train.clone();
        want.sort();
        assert_eq!(seen, want);
        let mut dropping =
            Sampler::new(Rng::new(1), train, 3, Sampling::Shuffle { drop_last: true });
        assert_eq!(dropping.epoch().len(), 2);
        assert_eq!(split(&mut Rng::new(3), 4, 0.0), (vec![], vec![0, 1, 2, 3]));
    }

    #[test]
    fn the_shuffle_is_the_documented_fisher_yates() {
        // By hand: i = 3, 2, 1 each swapped with the draw below i + 1.
        let mut by_hand = vec![0, 1, 2, 3];
        let mut r = Rng::new(42);
        for i in (1..4).rev() {
            let j = ((r.next_u64() as u128 * (i as u128 + 1)) >> 64) as usize;
            by_hand.swap(i, j);
        }
        let mut rows = vec![0, 1, 2, 3];
        shuffle(&mut Rng::new(42), &mut rows);
        assert_eq!(rows, by_hand);
    }

    #[test]
    fn sampling_with_replacement_draws_from_the_training_rows() {
        let mut s = Sampler::new(
            Rng::new(5),
            vec![10, 20, 30, 40, 50],
            2,
            Sampling::WithReplacement,
        );
        assert_eq!(s.steps_per_epoch(), 2);
        let e = s.epoch();
        assert_eq!(e.len(), 2);
        assert!(e.concat().iter().all(|r| [10, 20, 30, 40, 50].contains(r)));
    }
}
