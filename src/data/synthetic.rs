//! A labelled set of drawn shapes that saeflow makes itself, for the demo and tests: class =
//! (colour, shape), drawn at a random position and size with a random colour jitter over a noisy
//! background. An image is a pure function of (seed, image_id): nothing is stored, and
//! `source` = `synthetic:<id>`.
//!
//! Records: `train_per_class × classes` train images (labels round-robin: id % classes), then
//! `test_per_class × classes` test images numbered after them. Class i draws shape i mod 4 in
//! colour (i + i div 12) mod 6, so the up to 24 classes are distinct combinations and the first
//! ones differ in both shape and colour.

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use super::{DataError, ImageSource, Record, Rgb8, Split, number};

pub const SHAPES: [&str; 4] = ["circle", "square", "triangle", "cross"];
pub const COLOURS: [(&str, [u8; 3]); 6] = [
    ("red", [220, 40, 40]),
    ("green", [40, 180, 60]),
    ("blue", [50, 80, 220]),
    ("yellow", [230, 210, 40]),
    ("magenta", [200, 50, 200]),
    ("cyan", [40, 200, 210]),
];
/// Distinct (shape, colour) classes.
pub const MAX_CLASSES: u32 = 24;

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntheticSpec {
    pub classes: u32,
    pub train_per_class: u32,
    pub test_per_class: u32,
    /// Width and height in pixels.
    pub size: u32,
    pub seed: u64,
}

pub struct Synthetic {
    spec: SyntheticSpec,
    records: Vec<Record>,
    names: Vec<String>,
}

/// (shape index, colour index) of class `c`.
fn class_parts(c: u32) -> (usize, usize) {
    ((c % 4) as usize, ((c + c / 12) % 6) as usize)
}

impl Synthetic {
    pub fn new(spec: SyntheticSpec) -> Result<Synthetic, DataError> {
        if spec.classes == 0 || spec.classes > MAX_CLASSES {
            return Err(DataError::Param(format!(
                "synthetic: classes must be in 1..={MAX_CLASSES} (4 shapes × 6 colours), got {}",
                spec.classes
            )));
        }
        if !(8..=4096).contains(&spec.size) {
            return Err(DataError::Param(format!("synthetic: image_size must be in 8..=4096, got {}", spec.size)));
        }
        let total = u64::from(spec.classes) * (u64::from(spec.train_per_class) + u64::from(spec.test_per_class));
        if total > 10_000_000 {
            return Err(DataError::Param(format!("synthetic: {total} images requested; at most 10 000 000")));
        }
        let n_train = spec.classes * spec.train_per_class;
        let n_test = spec.classes * spec.test_per_class;
        let labels = (0..n_train)
            .map(|i| (Split::Train, (i % spec.classes) as u16))
            .chain((0..n_test).map(|i| (Split::Test, (i % spec.classes) as u16)));
        let names = (0..spec.classes)
            .map(|c| {
                let (s, col) = class_parts(c);
                format!("{} {}", COLOURS[col].0, SHAPES[s])
            })
            .collect();
        Ok(Synthetic { records: number(labels)?, names, spec })
    }
}

/// Draw image `image_id` of class `label`.
pub fn render(seed: u64, image_id: u32, label: u16, size: u32) -> Rgb8 {
    let mut h = blake3::Hasher::new();
    h.update(b"saeflow.data.synthetic");
    h.update(&seed.to_le_bytes());
    h.update(&image_id.to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(*h.finalize().as_bytes());
    let mut unit = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let (shape, colour) = class_parts(u32::from(label));
    let s = f64::from(size);
    let r = s * (0.18 + 0.14 * unit());
    let cx = r + (s - 2.0 * r) * unit();
    let cy = r + (s - 2.0 * r) * unit();
    let jitter: Vec<i32> = (0..3).map(|_| (unit() * 40.0) as i32 - 20).collect();
    let fg: Vec<u8> = (0..3).map(|i| (i32::from(COLOURS[colour].1[i]) + jitter[i]).clamp(0, 255) as u8).collect();
    let bg = (40.0 + 60.0 * unit()) as i32;
    let mut pixels = Vec::with_capacity((size * size * 3) as usize);
    for y in 0..size {
        for x in 0..size {
            let (dx, dy) = (f64::from(x) + 0.5 - cx, f64::from(y) + 0.5 - cy);
            let inside = match shape {
                0 => dx * dx + dy * dy <= r * r,
                1 => dx.abs() <= r * 0.85 && dy.abs() <= r * 0.85,
                2 => dy <= r * 0.8 && dy >= -r && dx.abs() <= (dy + r) * 0.55,
                _ => dx.abs() <= r && dy.abs() <= r && (dx.abs() <= r / 3.0 || dy.abs() <= r / 3.0),
            };
            if inside {
                pixels.extend_from_slice(&fg);
            } else {
                for _ in 0..3 {
                    pixels.push((bg + (unit() * 30.0) as i32 - 15).clamp(0, 255) as u8);
                }
            }
        }
    }
    Rgb8 { width: size, height: size, pixels }
}

impl ImageSource for Synthetic {
    fn records(&self) -> &[Record] {
        &self.records
    }

    fn label_names(&self) -> &[String] {
        &self.names
    }

    fn source(&self, image_id: u32) -> String {
        format!("synthetic:{image_id}")
    }

    fn read(&self, image_id: u32) -> Result<Rgb8, DataError> {
        let r = self.records.get(image_id as usize).ok_or_else(|| DataError::image(self, image_id, "no such record"))?;
        Ok(render(self.spec.seed, image_id, r.label, self.spec.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SyntheticSpec {
        SyntheticSpec { classes: 6, train_per_class: 4, test_per_class: 2, size: 32, seed: 3 }
    }

    #[test]
    fn classes_are_distinct_combinations() {
        let combos: std::collections::BTreeSet<_> = (0..MAX_CLASSES).map(class_parts).collect();
        assert_eq!(combos.len(), MAX_CLASSES as usize);
        let s = Synthetic::new(spec()).unwrap();
        assert_eq!(s.label_names()[..3], ["red circle", "green square", "blue triangle"]);
    }

    #[test]
    fn images_are_a_pure_function_of_seed_and_id() {
        let s = Synthetic::new(spec()).unwrap();
        assert_eq!(s.records().len(), 36);
        assert_eq!(s.records()[24].split, Split::Test);
        assert_eq!(s.records()[25].label, 1);
        let a = s.read(7).unwrap();
        assert_eq!(a, s.read(7).unwrap());
        assert_eq!((a.width, a.height, a.pixels.len()), (32, 32, 32 * 32 * 3));
        assert_ne!(a, s.read(8).unwrap());
        let other = Synthetic::new(SyntheticSpec { seed: 4, ..spec() }).unwrap();
        assert_ne!(a, other.read(7).unwrap());
        assert!(Synthetic::new(SyntheticSpec { classes: 25, ..spec() }).is_err());
    }
}
