//! Text for bitmaps: DejaVu Sans, embedded in the binary, rasterized with `ab_glyph` — no font
//! library or font file of the system is read. [`Glyphs`] wraps a plotters bitmap backend and
//! draws its text; [`text_width`] measures text for layouts (legends, label areas) in the same
//! font, for the SVG as well.

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use plotters::prelude::DrawingBackend;
use plotters::style::text_anchor::{HPos, VPos};
use plotters_backend::{BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind};

/// The embedded font (DejaVu Sans 2.37, Bitstream Vera licence: `assets/fonts/LICENSE-DejaVu.txt`).
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
fn font() -> &'static FontRef<'static> {
    static FONT_REF: OnceLock<FontRef<'static>> = OnceLock::new();
    // the bytes are compiled in, and a unit test parses them: this cannot fail at run time
    FONT_REF.get_or_init(|| FontRef::try_from_slice(DEJAVU_SANS).expect("the embedded DejaVu Sans parses"))
}

/// The scale at which the font's em is `size` pixels, as CSS reads a font size (ab_glyph's
/// `PxScale` is the ascent-to-descent height, 1.164 em for DejaVu Sans).
fn scale(size: f64) -> PxScale {
    let f = font();
    PxScale::from(size as f32 * f.height_unscaled() / f.units_per_em().unwrap_or(2048.0))
}

/// The width in pixels of `text` at `size` px: advances plus kerning.
pub fn text_width(text: &str, size: f64) -> u32 {
    let sf = font().as_scaled(scale(size));
    let (mut w, mut prev) = (0f32, None);
    for c in text.chars() {
        let g = sf.glyph_id(c);
        if let Some(p) = prev {
            w += sf.kern(p, g);
        }
        w += sf.h_advance(g);
        prev = Some(g);
    }
    w.ceil() as u32
}

/// A text's layout box height, as a share of its size (plotters' own choice, `size / 1.24`),
/// and where in that box the baseline sits: digits and capitals centred on a `Center` anchor.
const BOX_HEIGHT: f64 = 1.0 / 1.24;
const BASELINE: f64 = 0.77;

/// A bitmap backend whose text is drawn with the embedded font, glyph by glyph at its advance
/// and side bearing, the em at the style's size. (plotters 0.3.7's own `ab_glyph` text drops each
/// glyph's side bearing — `top 5`, `non e` — and sizes the em 14% small.) Drawn at `k` device
/// pixels per figure pixel: the figure is laid out at its own size and every coordinate, stroke,
/// radius and font size is multiplied by `k` (`k = 2`: a PNG for print, sharp at twice the size).
pub struct Glyphs<B> {
    inner: B,
    k: i32,
}

impl<B: DrawingBackend> Glyphs<B> {
    /// Wrap `inner`, whose size is `k` times the figure's.
    pub fn new(inner: B, k: u32) -> Glyphs<B> {
        Glyphs { inner, k: k.max(1) as i32 }
    }

    fn at(&self, (x, y): BackendCoord) -> BackendCoord {
        (x * self.k, y * self.k)
    }
}

/// A style with its stroke `k` times as wide.
struct Wider<'a, S> {
    style: &'a S,
    k: u32,
}

impl<S: BackendStyle> BackendStyle for Wider<'_, S> {
    fn color(&self) -> BackendColor {
        self.style.color()
    }

    fn stroke_width(&self) -> u32 {
        self.style.stroke_width() * self.k
    }
}

impl<B: DrawingBackend> DrawingBackend for Glyphs<B> {
    type ErrorType = B::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        let (w, h) = self.inner.get_size();
        (w / self.k as u32, h / self.k as u32)
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.present()
    }

    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let (x, y) = self.at(point);
        for dy in 0..self.k {
            for dx in 0..self.k {
                self.inner.draw_pixel((x + dx, y + dy), color)?;
            }
        }
        Ok(())
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let (from, to) = (self.at(from), self.at(to));
        self.inner.draw_line(from, to, &Wider { style, k: self.k as u32 })
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let (a, b) = (self.at(upper_left), self.at(bottom_right));
        // a filled rectangle covers its last pixel row and column too
        let b = if fill { (b.0 + self.k - 1, b.1 + self.k - 1) } else { b };
        self.inner.draw_rect(a, b, &Wider { style, k: self.k as u32 }, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let k = self.k;
        self.inner.draw_path(path.into_iter().map(|(x, y)| (x * k, y * k)), &Wider { style, k: k as u32 })
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let c = self.at(center);
        self.inner.draw_circle(c, radius * self.k as u32, &Wider { style, k: self.k as u32 }, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let k = self.k;
        self.inner.fill_polygon(vert.into_iter().map(|(x, y)| (x * k, y * k)), &Wider { style, k: k as u32 })
    }

    fn blit_bitmap(&mut self, pos: BackendCoord, size: (u32, u32), src: &[u8]) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        // RGB rows of `size`: each source pixel becomes a k × k block
        for y in 0..size.1 as i32 {
            for x in 0..size.0 as i32 {
                let i = 3 * (y as usize * size.0 as usize + x as usize);
                let Some(rgb) = src.get(i..i + 3) else { continue };
                self.draw_pixel((pos.0 + x, pos.1 + y), BackendColor { alpha: 1.0, rgb: (rgb[0], rgb[1], rgb[2]) })?;
            }
        }
        Ok(())
    }

    fn estimate_text_size<S: BackendTextStyle>(&self, text: &str, style: &S) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        Ok((text_width(text, style.size()), (style.size() * BOX_HEIGHT).round() as u32))
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let colour = style.color();
        if colour.alpha == 0.0 {
            return Ok(());
        }
        // laid out in device pixels: the size, the anchor offsets and the position times k
        let k = self.k;
        let size = style.size() * k as f64;
        let pos = self.at(pos);
        let (width, height) = (text_width(text, size) as i32, (size * BOX_HEIGHT).round() as i32);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        let baseline = (size * BASELINE) as f32;
        let turn = style.transform();
        let (w, h) = self.inner.get_size();
        let sf = font().as_scaled(scale(size));
        let (mut caret, mut prev) = (0f32, None);
        for c in text.chars() {
            let id = sf.glyph_id(c);
            if let Some(p) = prev {
                caret += sf.kern(p, id);
            }
            prev = Some(id);
            let glyph = id.with_scale_and_position(sf.scale(), ab_glyph::point(caret, baseline));
            caret += sf.h_advance(id);
            let Some(outline) = font().outline_glyph(glyph) else { continue };
            let bounds = outline.px_bounds();
            let mut pixels = Vec::new();
            outline.draw(|x, y, coverage| pixels.push((x, y, coverage)));
            for (x, y, coverage) in pixels {
                if coverage <= 0.0 {
                    continue;
                }
                let (x, y) = turn.transform(bounds.min.x as i32 + x as i32 + dx, bounds.min.y as i32 + y as i32 + dy);
                let (x, y) = (pos.0 + x, pos.1 + y);
                if x >= 0 && y >= 0 && (x as u32) < w && (y as u32) < h {
                    let alpha = colour.alpha * coverage.min(1.0) as f64;
                    self.inner.draw_pixel((x, y), BackendColor { alpha, rgb: colour.rgb })?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_font_measures_text_at_its_em() {
        // DejaVu Sans: "0" advances 1303 of 2048 units per em
        assert_eq!(text_width("0000000000", 20.48), 131, "ten zeros at 20.48 px: 10 × 13.03 px");
        assert!(text_width("top5", 16.0) > text_width("top", 16.0));
        assert_eq!(text_width("", 16.0), 0);
    }
}
