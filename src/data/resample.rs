//! Resampling of [`Rgb8`] images, pixel for pixel as Pillow's `Image.resize((w, h), filter)`.
//!
//! A Rust port of Pillow's convolution resampler (`src/libImaging/Resample.c`, python-pillow/Pillow,
//! MIT-CMU licence; written from a reading of it, not copied). What Pillow does, and so what
//! this does:
//!
//! - **Separable, two passes, rounded to `u8` in between.** A pass whose axis keeps its size is
//!   skipped (`need_horizontal` / `need_vertical`), and an image whose size does not change is
//!   copied (`Image.resize` returns `self.copy()`).
//! - **Pass order** (`ImagingResampleInner`): horizontal first, except that Pillow 13 runs the
//!   vertical pass first when the height shrinks by more than twice as many pixels as the width
//!   does: `in_h − out_h > 0 && in_h − out_h > 2·(in_w − out_w)` (so always when the height shrinks
//!   and the width does not). Pillow ≤ 12 always went horizontal first; the two orders round
//!   differently (up to ±12 on noise), so the order is part of being exact. This rule was read off
//!   Pillow 13.0.0's compiled `ImagingResampleInner` (python-pillow/Pillow#9549) and checked
//!   against it on 1,500 random size pairs; the goldens pin it.
//! - **Coefficients** (`precompute_coeffs`), per axis and output index `i`: `scale = in / out`;
//!   when downscaling the filter is stretched by `scale` (support × scale, argument ÷ scale);
//!   `center = (i + 0.5) · scale`; the taps run from `(int)(center − support + 0.5)` (at least 0)
//!   to `(int)(center + support + 0.5)` (at most `in`); tap `j` weighs
//!   `filter((j − center + 0.5) / filterscale)`, weights are divided by their sum (unless it is 0),
//!   all in `f64` in Pillow's order of operations.
//! - **Fixed point** (`normalize_coeffs_8bpc`): each weight becomes `(int)(w · 2²² ± 0.5)` (rounded
//!   half away from zero; `PRECISION_BITS = 32 − 8 − 2 = 22`).
//! - **Accumulation** (`ImagingResample{Horizontal,Vertical}_8bpc`): per channel, `i32` sum starting
//!   at `1 << 21` (the rounding half), plus `pixel · weight` per tap; `clip8` takes `sum >> 22`
//!   (arithmetic) clamped to 0..=255. The first pass rounds to `u8` before the second one.
//! - **Filters**: Pillow's box, bilinear (triangle), Hamming, bicubic (Keys, a = −0.5) and Lanczos
//!   (a = 3) kernels with supports 0.5, 1, 1, 2, 3. Pillow's nearest-neighbour path is an affine
//!   transform, not this resampler, and is not ported.
//!
//! Pillow computes the horizontal pass only for the source rows the vertical pass reads; this port
//! goes further and computes only the output pixels inside a [`Window`] (what a center crop keeps).
//! Each output pixel is computed independently with the same arithmetic, so a window is exactly the
//! same pixels as resizing everything and cropping afterwards.
//!
//! Speed: coefficients depend only on (filter, input size, output size); build a [`Resizer`] once
//! and reuse it for every image of that size (CIFAR: one for all 60,000 images). Resizing allocates
//! nothing when a [`Scratch`] is reused.

use super::decode::Rgb8;

/// `PRECISION_BITS` in Pillow: 8 bits for the result, 2 for overflow and sign.
const PRECISION_BITS: u32 = 32 - 8 - 2;
/// The rounding half every accumulator starts from.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// A resampling filter, as Pillow's `Image.Resampling` (nearest-neighbour excepted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Filter {
    /// `Image.BOX` (4): each output pixel averages the input pixels it covers.
    Box,
    /// `Image.BILINEAR` (2): triangle kernel, support 1.
    Bilinear,
    /// `Image.HAMMING` (5): Hamming-windowed sinc, support 1.
    Hamming,
    /// `Image.BICUBIC` (3): Keys' cubic convolution with a = −0.5, support 2. CLIP's filter.
    Bicubic,
    /// `Image.LANCZOS` (1): Lanczos-windowed sinc, a = 3.
    Lanczos,
}

impl Filter {
    /// Every filter, in Pillow's numbering order.
    pub const ALL: [Filter; 5] = [Filter::Lanczos, Filter::Bilinear, Filter::Bicubic, Filter::Box, Filter::Hamming];

    /// The filter with this `Image.Resampling` number (as in `preprocessor_config.json`'s
    /// `resample`). `None` for 0 (nearest), 6/7 (the MKS kernels of Pillow 13) and anything else.
    pub fn from_pil(code: i64) -> Option<Filter> {
        Filter::ALL.into_iter().find(|f| i64::from(f.pil_code()) == code)
    }

    /// Pillow's `Image.Resampling` number.
    pub fn pil_code(self) -> u8 {
        match self {
            Filter::Lanczos => 1,
            Filter::Bilinear => 2,
            Filter::Bicubic => 3,
            Filter::Box => 4,
            Filter::Hamming => 5,
        }
    }

    /// Lower-case name, as in messages.
    pub fn name(self) -> &'static str {
        match self {
            Filter::Box => "box",
            Filter::Bilinear => "bilinear",
            Filter::Hamming => "hamming",
            Filter::Bicubic => "bicubic",
            Filter::Lanczos => "lanczos",
        }
    }

    /// Half-width of the kernel at scale 1.
    fn support(self) -> f64 {
        match self {
            Filter::Box => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    /// The kernel, evaluated with Pillow's operations in Pillow's order (so the `f64` results are
    /// the same bits; `sin`/`cos` are the platform's libm, as for Pillow).
    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * std::f64::consts::PI;
                    // Pillow writes the window's constants as C floats (0.54f, 0.46f)
                    x.sin() / x * (f64::from(0.54f32) + f64::from(0.46f32) * x.cos())
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    let x = x * std::f64::consts::PI;
    x.sin() / x
}

/// The part of the resized image to compute: `width × height` pixels from (`left`, `top`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    pub left: u32,
    pub top: u32,
    pub width: u32,
    pub height: u32,
}

/// Why a resize could not be set up or run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResampleError {
    #[error("resize: {what} size {width}×{height} is empty; both sides must be ≥ 1")]
    Empty { what: &'static str, width: u32, height: u32 },
    #[error(
        "resize: window {}×{} at ({}, {}) does not fit in the {out_width}×{out_height} output; it must lie inside it",
        window.width, window.height, window.left, window.top
    )]
    Window { window: Window, out_width: u32, out_height: u32 },
    #[error("resize: this resizer takes {expected_width}×{expected_height} images, got {width}×{height}; build one per input size")]
    InputSize { expected_width: u32, expected_height: u32, width: u32, height: u32 },
    #[error("resize: a {width}×{height} image needs {expected} bytes of RGB, got {actual}")]
    Pixels { width: u32, height: u32, expected: usize, actual: usize },
}

/// Fixed-point coefficients of one axis, for the output indices of a window.
#[derive(Clone, Debug)]
struct Axis {
    /// Per output index: first input index and number of taps.
    spans: Vec<(usize, usize)>,
    /// `ksize` weights per output index (`spans[i].1` of them used), in units of 2⁻²².
    weights: Vec<i32>,
    ksize: usize,
}

impl Axis {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for output indices
    /// `first..first + count` of an `in_size → out_size` axis.
    fn new(filter: Filter, in_size: u32, out_size: u32, first: u32, count: u32) -> Axis {
        // Pillow passes the box edges as C floats; for a whole image they are 0 and in_size
        let in0 = 0.0f32;
        let in1 = in_size as f32;
        let scale = f64::from(in1 - in0) / f64::from(out_size);
        let filterscale = scale.max(1.0);
        let support = filter.support() * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let inv_filterscale = 1.0 / filterscale;
        let mut spans = Vec::with_capacity(count as usize);
        let mut weights = vec![0i32; count as usize * ksize];
        let mut w = vec![0f64; ksize];
        for (slot, i) in (first..first + count).enumerate() {
            let center = f64::from(in0) + (f64::from(i) + 0.5) * scale;
            // C's (int) truncates toward zero; a negative start is clamped to 0 either way
            let start = ((center - support + 0.5) as i64).max(0);
            let end = ((center + support + 0.5) as i64).min(i64::from(in_size));
            let taps = (end - start).max(0) as usize;
            let mut sum = 0.0;
            for (j, wj) in w.iter_mut().enumerate().take(taps) {
                *wj = filter.weight(((j as i64 + start) as f64 - center + 0.5) * inv_filterscale);
                sum += *wj;
            }
            let out = &mut weights[slot * ksize..][..ksize];
            for (o, &wj) in out.iter_mut().zip(&w[..taps]) {
                let wj = if sum != 0.0 { wj / sum } else { wj };
                let scaled = wj * f64::from(1u32 << PRECISION_BITS);
                *o = if wj < 0.0 { (-0.5 + scaled) as i32 } else { (0.5 + scaled) as i32 };
            }
            spans.push((start as usize, taps));
        }
        Axis { spans, weights, ksize }
    }

    fn taps(&self, slot: usize) -> (usize, &[i32]) {
        let (start, n) = self.spans[slot];
        (start, &self.weights[slot * self.ksize..][..n])
    }
}

#[inline(always)]
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Reusable buffers for [`Resizer::resize_rows`]: keep one per thread and no resize allocates.
#[derive(Debug, Default)]
pub struct Scratch {
    /// The first pass's output: horizontally resized rows, or one vertically resized row.
    mid: Vec<u8>,
    /// Vertical accumulators, one per channel value of an output row.
    acc: Vec<i32>,
    /// One output row.
    row: Vec<u8>,
}

/// Which pass runs first when both run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    HorizontalFirst,
    VerticalFirst,
}

/// A Pillow-exact resize from one input size to one output size with one filter; the
/// coefficients are computed once, in [`Resizer::new`].
#[derive(Clone, Debug)]
pub struct Resizer {
    filter: Filter,
    input: (u32, u32),
    output: (u32, u32),
    window: Window,
    /// `None` when the width does not change (Pillow skips the pass).
    horizontal: Option<Axis>,
    /// `None` when the height does not change.
    vertical: Option<Axis>,
    order: Order,
    /// Source columns the window needs (`first..last`).
    cols: (usize, usize),
    /// Source rows the window needs (`first..last`).
    rows: (usize, usize),
    /// Run the AVX2 build of the kernels.
    avx2: bool,
}

/// The input indices an axis reads for its window: `first..last`.
fn input_range(axis: Option<&Axis>, window_start: u32, window_len: u32) -> (usize, usize) {
    match axis {
        Some(a) => {
            let first = a.spans.iter().map(|s| s.0).min().unwrap_or(0);
            let last = a.spans.iter().map(|s| s.0 + s.1).max().unwrap_or(first);
            (first, last)
        }
        None => (window_start as usize, (window_start + window_len) as usize),
    }
}

impl Resizer {
    /// Resize `input` (width, height) images to `output` (width, height).
    pub fn new(filter: Filter, input: (u32, u32), output: (u32, u32)) -> Result<Resizer, ResampleError> {
        Resizer::with_window(filter, input, output, Window { left: 0, top: 0, width: output.0, height: output.1 })
    }

    /// Resize `input` images to `output`, but compute only `window` of the result (a crop of it).
    pub fn with_window(filter: Filter, input: (u32, u32), output: (u32, u32), window: Window) -> Result<Resizer, ResampleError> {
        for (what, (width, height)) in [("input", input), ("output", output), ("window", (window.width, window.height))] {
            if width == 0 || height == 0 {
                return Err(ResampleError::Empty { what, width, height });
            }
        }
        let fits = |start: u32, len: u32, size: u32| start.checked_add(len).is_some_and(|end| end <= size);
        if !fits(window.left, window.width, output.0) || !fits(window.top, window.height, output.1) {
            return Err(ResampleError::Window { window, out_width: output.0, out_height: output.1 });
        }
        let horizontal = (input.0 != output.0).then(|| Axis::new(filter, input.0, output.0, window.left, window.width));
        let vertical = (input.1 != output.1).then(|| Axis::new(filter, input.1, output.1, window.top, window.height));
        // Pillow 13's ImagingResampleInner: vertical first when the height loses more than twice
        // as many pixels as the width
        let shrink_h = i64::from(input.1) - i64::from(output.1);
        let shrink_w = i64::from(input.0) - i64::from(output.0);
        let order = if shrink_h > 0 && shrink_h > 2 * shrink_w { Order::VerticalFirst } else { Order::HorizontalFirst };
        let cols = input_range(horizontal.as_ref(), window.left, window.width);
        let rows = input_range(vertical.as_ref(), window.top, window.height);
        Ok(Resizer { filter, input, output, window, horizontal, vertical, order, cols, rows, avx2: has_avx2() })
    }

    pub fn filter(&self) -> Filter {
        self.filter
    }

    /// Input (width, height).
    pub fn input_size(&self) -> (u32, u32) {
        self.input
    }

    /// Full output (width, height), before the window.
    pub fn output_size(&self) -> (u32, u32) {
        self.output
    }

    /// The part of the output that is computed.
    pub fn window(&self) -> Window {
        self.window
    }

    /// Resize one image; the result is the window (the whole output for [`Resizer::new`]).
    pub fn resize(&self, src: &Rgb8) -> Result<Rgb8, ResampleError> {
        let mut pixels = Vec::with_capacity(self.window.width as usize * self.window.height as usize * 3);
        self.resize_rows(src, &mut Scratch::default(), |_, row| pixels.extend_from_slice(row))?;
        Ok(Rgb8 { width: self.window.width, height: self.window.height, pixels })
    }

    /// Resize one image and hand each output row of the window to `emit(row_index, rgb)`, top to
    /// bottom; nothing is allocated once `scratch` has grown to this size.
    pub fn resize_rows(&self, src: &Rgb8, scratch: &mut Scratch, mut emit: impl FnMut(usize, &[u8])) -> Result<(), ResampleError> {
        if (src.width, src.height) != self.input {
            return Err(ResampleError::InputSize {
                expected_width: self.input.0,
                expected_height: self.input.1,
                width: src.width,
                height: src.height,
            });
        }
        let expected = src.width as usize * src.height as usize * 3;
        if src.pixels.len() != expected {
            return Err(ResampleError::Pixels { width: src.width, height: src.height, expected, actual: src.pixels.len() });
        }
        let out_w3 = self.window.width as usize * 3;
        let in_w3 = src.width as usize * 3;
        let (row_first, row_last) = self.rows;
        let (col_first, col_last) = self.cols;
        let Scratch { mid, acc, row } = scratch;
        match (&self.horizontal, &self.vertical, self.order) {
            (Some(h), Some(v), Order::VerticalFirst) => {
                // per output row: the vertical pass over the source columns the horizontal taps
                // read, then the horizontal pass over that one intermediate row
                let mid_w3 = (col_last - col_first) * 3;
                mid.resize(mid_w3, 0);
                row.resize(out_w3, 0);
                let source = Plane { data: &src.pixels, stride: in_w3, first_row: 0, x0: col_first * 3 };
                for slot in 0..self.window.height as usize {
                    vertical_row(self.avx2, v, slot, &source, acc, mid);
                    horizontal_row(self.avx2, h, col_first, mid, row);
                    emit(slot, row);
                }
            }
            (Some(h), vertical, _) => {
                // the horizontal pass over the source rows the window needs, then the vertical
                // pass (if any) over that intermediate image
                mid.resize((row_last - row_first) * out_w3, 0);
                for (y, out) in (row_first..row_last).zip(mid.chunks_exact_mut(out_w3)) {
                    horizontal_row(self.avx2, h, 0, &src.pixels[y * in_w3..][..in_w3], out);
                }
                let plane = Plane { data: mid, stride: out_w3, first_row: row_first, x0: 0 };
                emit_rows(self.avx2, vertical.as_ref(), self.window, &plane, acc, row, emit);
            }
            (None, vertical, _) => {
                let plane = Plane { data: &src.pixels, stride: in_w3, first_row: 0, x0: self.window.left as usize * 3 };
                emit_rows(self.avx2, vertical.as_ref(), self.window, &plane, acc, row, emit);
            }
        }
        Ok(())
    }
}

/// Rows of u8 pixels: row `y` (absolute, ≥ `first_row`) starts at byte
/// `(y − first_row)·stride + x0`.
struct Plane<'a> {
    data: &'a [u8],
    stride: usize,
    first_row: usize,
    x0: usize,
}

impl Plane<'_> {
    fn row(&self, y: usize, len: usize) -> &[u8] {
        &self.data[(y - self.first_row) * self.stride + self.x0..][..len]
    }
}

/// The last pass: the vertical one over `plane` when there is one, else `plane`'s window rows.
fn emit_rows(
    avx2: bool,
    vertical: Option<&Axis>,
    window: Window,
    plane: &Plane,
    acc: &mut Vec<i32>,
    row: &mut Vec<u8>,
    mut emit: impl FnMut(usize, &[u8]),
) {
    let out_w3 = window.width as usize * 3;
    match vertical {
        Some(v) => {
            row.resize(out_w3, 0);
            for slot in 0..window.height as usize {
                vertical_row(avx2, v, slot, plane, acc, row);
                emit(slot, row);
            }
        }
        None => {
            for slot in 0..window.height as usize {
                emit(slot, plane.row(window.top as usize + slot, out_w3));
            }
        }
    }
}

/// Output row `slot` of the vertical pass over `plane`, `out.len()` bytes wide.
///
/// Up to four taps are summed in one sweep straight into `out`; more taps go through `acc`, four
/// at a time. The order of the additions differs from Pillow's, which changes nothing: the sums
/// are `i32` (wrapping, i.e. modulo 2³²) and Pillow's never overflow.
#[inline(always)]
fn vertical_row_portable(v: &Axis, slot: usize, plane: &Plane, acc: &mut Vec<i32>, out: &mut [u8]) {
    let (start, weights) = v.taps(slot);
    let n = out.len();
    // four rows and weights; missing taps weigh 0 on a row that exists
    let quad = |taps: &[i32], first: usize| -> ([&[u8]; 4], [i32; 4]) {
        let mut rows = [plane.row(first, n); 4];
        let mut ks = [0; 4];
        for (t, &k) in taps.iter().enumerate() {
            rows[t] = plane.row(first + t, n);
            ks[t] = k;
        }
        (rows, ks)
    };
    let term = |p: u8, k: i32| i32::from(p).wrapping_mul(k);
    if weights.len() <= 4 {
        let ([r0, r1, r2, r3], [k0, k1, k2, k3]) = quad(weights, start);
        for ((((o, &a), &b), &c), &d) in out.iter_mut().zip(r0).zip(r1).zip(r2).zip(r3) {
            let sum = HALF.wrapping_add(term(a, k0)).wrapping_add(term(b, k1)).wrapping_add(term(c, k2)).wrapping_add(term(d, k3));
            *o = clip8(sum);
        }
        return;
    }
    acc.clear();
    acc.resize(n, HALF);
    for (chunk, taps) in weights.chunks(4).enumerate() {
        let ([r0, r1, r2, r3], [k0, k1, k2, k3]) = quad(taps, start + 4 * chunk);
        for ((((s, &a), &b), &c), &d) in acc.iter_mut().zip(r0).zip(r1).zip(r2).zip(r3) {
            *s = s.wrapping_add(term(a, k0)).wrapping_add(term(b, k1)).wrapping_add(term(c, k2)).wrapping_add(term(d, k3));
        }
    }
    for (o, &a) in out.iter_mut().zip(acc.iter()) {
        *o = clip8(a);
    }
}

/// One row of the horizontal pass: `src` holds source pixels from index `base` on; `out` gets
/// the window's pixels.
#[inline(always)]
fn horizontal_row_portable(h: &Axis, base: usize, src: &[u8], out: &mut [u8]) {
    for (slot, px) in out.chunks_exact_mut(3).enumerate() {
        let (start, weights) = h.taps(slot);
        let (mut r, mut g, mut b) = (HALF, HALF, HALF);
        for (p, &k) in src[(start - base) * 3..].chunks_exact(3).zip(weights) {
            r = r.wrapping_add(i32::from(p[0]).wrapping_mul(k));
            g = g.wrapping_add(i32::from(p[1]).wrapping_mul(k));
            b = b.wrapping_add(i32::from(p[2]).wrapping_mul(k));
        }
        px[0] = clip8(r);
        px[1] = clip8(g);
        px[2] = clip8(b);
    }
}

/// The kernels compiled for AVX2 as well (8 `i32` lanes; SSE2 has no 32-bit multiply). Integer
/// arithmetic: the same bits either way.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Axis, Plane};

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn vertical_row(v: &Axis, slot: usize, plane: &Plane, acc: &mut Vec<i32>, out: &mut [u8]) {
        super::vertical_row_portable(v, slot, plane, acc, out)
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn horizontal_row(h: &Axis, base: usize, src: &[u8], out: &mut [u8]) {
        super::horizontal_row_portable(h, base, src, out)
    }
}

/// Whether the AVX2 kernels can run here (checked once per [`Resizer`]).
fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn vertical_row(avx2: bool, v: &Axis, slot: usize, plane: &Plane, acc: &mut Vec<i32>, out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` comes from `has_avx2()`.
        unsafe { avx2::vertical_row(v, slot, plane, acc, out) };
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = avx2;
    vertical_row_portable(v, slot, plane, acc, out)
}

fn horizontal_row(avx2: bool, h: &Axis, base: usize, src: &[u8], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` comes from `has_avx2()`.
        unsafe { avx2::horizontal_row(h, base, src, out) };
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = avx2;
    horizontal_row_portable(h, base, src, out)
}

/// `Image.resize((width, height), filter)` on one image. To resize many images of one size,
/// build a [`Resizer`] once instead.
pub fn resize(src: &Rgb8, width: u32, height: u32, filter: Filter) -> Result<Rgb8, ResampleError> {
    Resizer::new(filter, (src.width, src.height), (width, height))?.resize(src)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(width: u32, height: u32) -> Rgb8 {
        let pixels = (0..height)
            .flat_map(|y| (0..width).flat_map(move |x| [(x * 37 + y * 11) as u8, (x * 5 + y * 53) as u8, ((x ^ y) * 29) as u8]))
            .collect();
        Rgb8 { width, height, pixels }
    }

    #[test]
    fn same_size_is_a_copy() {
        let img = gradient(7, 5);
        for filter in Filter::ALL {
            assert_eq!(resize(&img, 7, 5, filter).unwrap(), img, "{filter:?}");
        }
    }

    #[test]
    fn bicubic_fixed_point_weights_by_hand() {
        // 2 → 4 bicubic: scale 0.5, support 2, ksize 5. Output 0: center 0.25, taps 0..2 at
        // distances 0.25 and 1.25: w = 0.8671875 and −0.0703125 (sum 0.796875), normalised
        // 1.0882352941… and −0.0882352941…, times 2²² = 4564389.647… and −370085.647…,
        // rounded half away from zero: 4564390 and −370086 (sum exactly 2²²)
        let axis = Axis::new(Filter::Bicubic, 2, 4, 0, 4);
        assert_eq!(axis.ksize, 5);
        assert_eq!(axis.spans, vec![(0, 2), (0, 2), (0, 2), (0, 2)]);
        assert_eq!(axis.taps(0), (0, &[4_564_390, -370_086][..]));
    }

    #[test]
    fn downscale_support_is_stretched() {
        // 100 → 10 bicubic: scale 10, support 20 → ksize 41; the middle outputs use 40 taps
        let axis = Axis::new(Filter::Bicubic, 100, 10, 0, 10);
        assert_eq!(axis.ksize, 41);
        assert_eq!(axis.spans[5], (35, 40));
        assert_eq!(axis.spans[0], (0, 25));
    }

    #[test]
    fn window_is_a_crop_of_the_full_resize() {
        let img = gradient(13, 9);
        // up, vertical first (wider and lower; narrower and much lower), one pass only
        for (w, h) in [(29, 17), (20, 5), (12, 4), (13, 4), (6, 9)] {
            for filter in Filter::ALL {
                let full = resize(&img, w, h, filter).unwrap();
                for window in [
                    Window { left: 0, top: 0, width: w, height: h },
                    Window { left: 3, top: 1, width: w - 5, height: h - 2 },
                    Window { left: w - 1, top: h - 1, width: 1, height: 1 },
                ] {
                    let part = Resizer::with_window(filter, (13, 9), (w, h), window).unwrap().resize(&img).unwrap();
                    let row_len = window.width as usize * 3;
                    for y in 0..window.height as usize {
                        let a = &part.pixels[y * row_len..][..row_len];
                        let b = &full.pixels[((window.top as usize + y) * w as usize + window.left as usize) * 3..][..row_len];
                        assert_eq!(a, b, "{filter:?} {w}×{h} {window:?} row {y}");
                    }
                }
            }
        }
    }

    #[test]
    fn portable_and_avx2_kernels_agree() {
        // the parity tests run whichever build this CPU picks; both must give the same bytes
        let img = gradient(23, 17);
        for filter in Filter::ALL {
            for (w, h) in [(50, 40), (7, 5), (30, 8), (11, 16), (23, 40), (40, 17)] {
                let fast = Resizer::new(filter, (23, 17), (w, h)).unwrap();
                let portable = Resizer { avx2: false, ..fast.clone() };
                assert_eq!(fast.resize(&img).unwrap(), portable.resize(&img).unwrap(), "{filter:?} {w}×{h}");
            }
        }
    }

    #[test]
    fn pass_order_follows_pillow_13() {
        let order = |input, output| Resizer::new(Filter::Bicubic, input, output).unwrap().order;
        assert_eq!(order((32, 32), (336, 336)), Order::HorizontalFirst);
        assert_eq!(order((500, 375), (448, 336)), Order::HorizontalFirst); // 39 ≤ 2·52
        assert_eq!(order((400, 2000), (336, 1680)), Order::VerticalFirst); // 320 > 2·64
        assert_eq!(order((10, 50), (12, 49)), Order::VerticalFirst); // width grows, height shrinks
        assert_eq!(order((20, 30), (18, 26)), Order::HorizontalFirst); // 4 = 2·2: the tie
        assert_eq!(order((20, 30), (18, 25)), Order::VerticalFirst);
        // the two orders round differently, so the rule matters: on this image they disagree
        let img = gradient(13, 9);
        let vertical_first = resize(&img, 20, 5, Filter::Bicubic).unwrap();
        let h = Resizer::new(Filter::Bicubic, (13, 9), (20, 9)).unwrap().resize(&img).unwrap();
        let horizontal_first = Resizer::new(Filter::Bicubic, (20, 9), (20, 5)).unwrap().resize(&h).unwrap();
        assert_ne!(vertical_first, horizontal_first);
    }

    #[test]
    fn constant_images_stay_constant() {
        // weights sum to 1 (±rounding), so a flat image stays flat up and down
        let img = Rgb8 { width: 9, height: 4, pixels: [10u8, 128, 250].repeat(36) };
        for filter in Filter::ALL {
            for (w, h) in [(3, 2), (20, 11), (9, 1), (1, 4)] {
                let out = resize(&img, w, h, filter).unwrap();
                assert!(out.pixels.chunks_exact(3).all(|p| p == [10, 128, 250]), "{filter:?} {w}×{h}: {:?}", &out.pixels[..6]);
            }
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        let img = gradient(4, 4);
        assert_eq!(resize(&img, 0, 3, Filter::Bicubic).unwrap_err(), ResampleError::Empty { what: "output", width: 0, height: 3 });
        let r = Resizer::new(Filter::Bicubic, (5, 4), (8, 8)).unwrap();
        let e = r.resize(&img).unwrap_err();
        assert!(e.to_string().contains("takes 5×4 images, got 4×4"), "{e}");
        let e = Resizer::with_window(Filter::Bilinear, (4, 4), (8, 8), Window { left: 4, top: 0, width: 5, height: 8 }).unwrap_err();
        assert!(matches!(e, ResampleError::Window { .. }), "{e}");
        let short = Rgb8 { width: 4, height: 4, pixels: vec![0; 47] };
        assert!(matches!(resize(&short, 2, 2, Filter::Box), Err(ResampleError::Pixels { expected: 48, actual: 47, .. })));
    }

    #[test]
    fn pil_codes_round_trip() {
        for f in Filter::ALL {
            assert_eq!(Filter::from_pil(i64::from(f.pil_code())), Some(f));
        }
        assert_eq!(Filter::from_pil(0), None);
        assert_eq!(Filter::from_pil(6), None);
    }
}
