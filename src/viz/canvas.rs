//! A tiny RGB raster for the PNG report: filled rectangles, lines, an 8x8 bitmap font (`font8x8`),
//! a heat-map colour ramp, and PNG encoding (`png`). No other graphics stack: charts are drawn
//! here pixel by pixel.

use std::path::Path;

use font8x8::UnicodeFonts;

use crate::error::{Error, Result};

pub type Rgb = [u8; 3];

pub const WHITE: Rgb = [255, 255, 255];
pub const BLACK: Rgb = [0, 0, 0];
pub const GREY: Rgb = [200, 200, 200];
pub const DARK: Rgb = [90, 90, 90];
pub const BLUE: Rgb = [31, 119, 180];
pub const ORANGE: Rgb = [255, 127, 14];
pub const GREEN: Rgb = [44, 160, 44];

/// Pixel size of one glyph at scale 1.
pub const GLYPH: usize = 8;

pub struct Canvas {
    pub w: usize,
    pub h: usize,
    pub px: Vec<Rgb>,
}

impl Canvas {
    pub fn new(w: usize, h: usize, bg: Rgb) -> Self {
        Canvas { w, h, px: vec![bg; w * h] }
    }

    pub fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            self.px[y as usize * self.w + x as usize] = c;
        }
    }

    pub fn get(&self, x: usize, y: usize) -> Rgb {
        self.px[y * self.w + x]
    }

    pub fn rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: Rgb) {
        for yy in y.max(0)..(y + h).min(self.h as i64) {
            for xx in x.max(0)..(x + w).min(self.w as i64) {
                self.px[yy as usize * self.w + xx as usize] = c;
            }
        }
    }

    /// A 1-pixel outline.
    pub fn frame(&mut self, x: i64, y: i64, w: i64, h: i64, c: Rgb) {
        self.rect(x, y, w, 1, c);
        self.rect(x, y + h - 1, w, 1, c);
        self.rect(x, y, 1, h, c);
        self.rect(x + w - 1, y, 1, h, c);
    }

    /// A line `width` pixels thick (Bresenham, stamped with a square).
    pub fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), width: i64, c: Rgb) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        let half = width / 2;
        loop {
            self.rect(x - half, y - half, width, width, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Text with its top-left corner at (x, y), glyphs `scale` pixels per font pixel; characters
    /// outside the font show as '?'. Returns the width drawn.
    pub fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: Rgb) -> i64 {
        let mut cx = x;
        for ch in s.chars() {
            let g = glyph(ch);
            for (row, bits) in g.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        self.rect(cx + col * scale, y + row as i64 * scale, scale, scale, c);
                    }
                }
            }
            cx += GLYPH as i64 * scale;
        }
        cx - x
    }

    /// Text read bottom to top (rotated 90° counter-clockwise), its baseline's start at (x, y):
    /// the glyphs run upwards from y.
    pub fn text_up(&mut self, x: i64, y: i64, s: &str, c: Rgb) {
        for (i, ch) in s.chars().enumerate() {
            let g = glyph(ch);
            let base = y - (i as i64 + 1) * GLYPH as i64;
            for (row, bits) in g.iter().enumerate() {
                for col in 0..8i64 {
                    if bits & (1 << col) != 0 {
                        // Font pixel (col, row) → canvas (x + row, base + 7 - col).
                        self.set(x + row as i64, base + 7 - col, c);
                    }
                }
            }
        }
    }

    /// Text centred horizontally on `cx`.
    pub fn text_centered(&mut self, cx: i64, y: i64, s: &str, scale: i64, c: Rgb) {
        let w = text_width(s) * scale;
        self.text(cx - w / 2, y, s, scale, c);
    }

    /// PNG bytes (8-bit RGB).
    pub fn png(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.w as u32, self.h as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let err = |e: png::EncodingError| Error::Other(format!("png: {e}"));
            let mut wr = enc.write_header().map_err(err)?;
            wr.write_image_data(self.px.as_flattened()).map_err(err)?;
        }
        Ok(out)
    }

    /// Writes the PNG atomically (a temporary file renamed over `path`).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::util::write_atomic(path, &self.png()?)
    }
}

fn glyph(ch: char) -> [u8; 8] {
    font8x8::BASIC_FONTS.get(ch).or_else(|| font8x8::BASIC_FONTS.get('?')).unwrap_or([0; 8])
}

/// Pixel width of `s` at scale 1.
pub fn text_width(s: &str) -> i64 {
    (s.chars().count() * GLYPH) as i64
}

/// Heat-map colour of `v` in 0..=1 (clamped): a viridis-like ramp from dark purple through teal
/// to yellow, so low and high values differ in hue as well as brightness.
pub fn heat(v: f32) -> Rgb {
    const STOPS: [Rgb; 5] = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
    let v = if v.is_finite() { v.clamp(0.0, 1.0) } else { 0.0 };
    let f = v * (STOPS.len() - 1) as f32;
    let i = (f as usize).min(STOPS.len() - 2);
    let t = f - i as f32;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    [0, 1, 2].map(|k| (a[k] as f32 + (b[k] as f32 - a[k] as f32) * t).round() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_ends_and_text_draws() {
        assert_eq!(heat(0.0), [68, 1, 84]);
        assert_eq!(heat(1.0), [253, 231, 37]);
        assert_eq!(heat(2.0), heat(1.0));
        let mut c = Canvas::new(40, 12, WHITE);
        assert_eq!(c.text(0, 0, "Ab", 1, BLACK), 16);
        assert!(c.px.contains(&BLACK));
        c.line((0, 11), (39, 0), 1, BLUE);
        assert_eq!(c.get(0, 11), BLUE);
        assert_eq!(c.get(39, 0), BLUE);
        let png = c.png().unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
