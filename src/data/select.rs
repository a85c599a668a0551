//! Which records a `dataset` stage keeps: a split choice, then per split an optional per-class
//! cap and an optional overall cap, either the first ones in listing order or a seeded random
//! draw. Selection never renumbers: the result is a sorted list of image ids.

use std::collections::BTreeMap;

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use super::{Record, Split};

/// `split:` — which official roles to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitChoice {
    Train,
    Test,
    /// Both, each keeping its official role.
    Predefined,
}

impl SplitChoice {
    pub fn keeps(self, s: Split) -> bool {
        match self {
            SplitChoice::Train => s == Split::Train,
            SplitChoice::Test => s == Split::Test,
            SplitChoice::Predefined => true,
        }
    }
}

/// The selection parameters of a `dataset` stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub split: SplitChoice,
    /// At most this many records per class, per split.
    pub per_class: Option<u32>,
    /// At most this many records per split (after `per_class`).
    pub limit: Option<u32>,
    /// `None`: the first records in listing order; `Some(seed)`: a seeded random draw.
    pub sample: Option<u64>,
}

impl Selection {
    pub fn all(split: SplitChoice) -> Selection {
        Selection { split, per_class: None, limit: None, sample: None }
    }
}

/// The image ids `sel` keeps from `records` (given in id order), sorted.
pub fn select(records: &[Record], sel: &Selection) -> Vec<u32> {
    let mut out = Vec::new();
    for split in [Split::Train, Split::Test] {
        if !sel.split.keeps(split) {
            continue;
        }
        let ids: Vec<u32> = records.iter().filter(|r| r.split == split).map(|r| r.image_id).collect();
        let mut ids = match sel.per_class {
            None => ids,
            Some(n) => {
                let mut by_class: BTreeMap<u16, Vec<u32>> = BTreeMap::new();
                for &id in &ids {
                    by_class.entry(records[id as usize].label).or_default().push(id);
                }
                let mut kept = Vec::new();
                for (label, members) in by_class {
                    kept.extend(take(members, n as usize, sel.sample.map(|s| (s, split, Some(label)))));
                }
                kept.sort_unstable();
                kept
            }
        };
        if let Some(n) = sel.limit {
            ids = take(ids, n as usize, sel.sample.map(|s| (s, split, None)));
        }
        out.extend(ids);
    }
    out.sort_unstable();
    out
}

/// The first `n` of `ids`, or `n` drawn without replacement by a ChaCha8 stream seeded from
/// (seed, split, class); returned in id order.
fn take(mut ids: Vec<u32>, n: usize, draw: Option<(u64, Split, Option<u16>)>) -> Vec<u32> {
    if ids.len() <= n {
        return ids;
    }
    match draw {
        None => ids.truncate(n),
        Some((seed, split, class)) => {
            let mut h = blake3::Hasher::new();
            h.update(b"saeflow.data.select");
            h.update(&seed.to_le_bytes());
            h.update(split.as_str().as_bytes());
            h.update(&class.map_or(u32::MAX, u32::from).to_le_bytes());
            let mut rng = ChaCha8Rng::from_seed(*h.finalize().as_bytes());
            // partial Fisher–Yates: the first n slots become a uniform draw
            for i in 0..n {
                let span = (ids.len() - i) as u64;
                let j = i + ((u128::from(rng.next_u64()) * u128::from(span)) >> 64) as usize;
                ids.swap(i, j);
            }
            ids.truncate(n);
            ids.sort_unstable();
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<Record> {
        // 30 train (labels 0,1,2 round-robin), 9 test
        (0..39u32).map(|i| Record { image_id: i, label: (i % 3) as u16, split: if i < 30 { Split::Train } else { Split::Test } }).collect()
    }

    #[test]
    fn split_choice_keeps_roles() {
        let r = records();
        assert_eq!(select(&r, &Selection::all(SplitChoice::Train)).len(), 30);
        assert_eq!(select(&r, &Selection::all(SplitChoice::Test)), (30..39).collect::<Vec<_>>());
        assert_eq!(select(&r, &Selection::all(SplitChoice::Predefined)).len(), 39);
    }

    #[test]
    fn per_class_first_n_in_listing_order() {
        let r = records();
        let sel = Selection { per_class: Some(2), ..Selection::all(SplitChoice::Predefined) };
        assert_eq!(select(&r, &sel), vec![0, 1, 2, 3, 4, 5, 30, 31, 32, 33, 34, 35]);
        let sel = Selection { limit: Some(4), ..sel };
        assert_eq!(select(&r, &sel), vec![0, 1, 2, 3, 30, 31, 32, 33]);
    }

    #[test]
    fn sampling_is_seeded_balanced_and_stable() {
        let r = records();
        let sel = |seed| Selection { per_class: Some(3), sample: Some(seed), ..Selection::all(SplitChoice::Train) };
        let a = select(&r, &sel(1));
        assert_eq!(a, select(&r, &sel(1)), "same seed, same draw");
        assert_ne!(a, select(&r, &sel(2)), "another seed, another draw");
        assert_eq!(a.len(), 9);
        for c in 0..3 {
            assert_eq!(a.iter().filter(|&&i| r[i as usize].label == c).count(), 3);
        }
        assert!(a.windows(2).all(|w| w[0] < w[1]), "ids come back sorted");
        let limited = select(&r, &Selection { limit: Some(5), ..sel(1) });
        assert_eq!(limited.len(), 5);
        assert!(limited.iter().all(|i| a.contains(i)), "limit draws from the per-class draw");
    }
}
