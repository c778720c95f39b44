//! `wgpt report RUN_DIR`: PNG charts of a run without a display: `loss.png` (train loss per logged
//! step, validation loss points, from metrics.jsonl) and `attention_L<l>.png` (every head of layer
//! l as heat maps, from the latest checkpoint on a prompt), drawn with `canvas`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::canvas::{heat, text_width, Canvas, Rgb, BLACK, BLUE, DARK, GREY, ORANGE, WHITE};
use super::maps::{AttentionMaps, AttentionProbe};
use crate::data::Tokenizer;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::train::checkpoint::{load_json, load_model, model_from_config};

/// Tokens of the default text at most (the maps stay readable); a --prompt may use block_size.
pub const DEFAULT_TOKENS: usize = 64;
/// Sequences this long or shorter get a token label on every row and column.
pub const LABEL_MAX_T: usize = 64;

/// What `report` wrote.
#[derive(Debug, Clone)]
pub struct Written {
    pub loss: PathBuf,
    pub attention: Vec<PathBuf>,
}

/// Writes loss.png and attention_L<l>.png (for `layers`, or every layer when empty) into `dir`.
pub fn report(gpu: &Gpu, dir: &Path, layers: &[usize], prompt: Option<&str>) -> Result<Written> {
    let run = |m: String| Error::Other(format!("report: {}: {m}", dir.display()));
    if !dir.is_dir() {
        return Err(run("no such run directory".into()));
    }
    for f in ["metrics.jsonl", "config.json", "model.safetensors", "tokenizer.json"] {
        if !dir.join(f).is_file() {
            return Err(run(format!("{f} is missing (not a wgpt run directory, or no checkpoint saved yet)")));
        }
    }
    let metrics = read_metrics(&dir.join("metrics.jsonl"))?;
    let loss = dir.join("loss.png");
    loss_chart(&metrics)?.save(&loss)?;

    let model = model_from_config(&load_json(&dir.join("config.json"))?)?;
    let tok = Tokenizer::load(&dir.join("tokenizer.json"))?;
    if let Some(&bad) = layers.iter().find(|&&l| l >= model.n_layer) {
        return Err(run(format!("--layer {bad}: the model has layers 0..{}", model.n_layer - 1)));
    }
    let params = load_model(&dir.join("model.safetensors"), &model)?;
    let ids = prompt_tokens(&tok, prompt, model.block_size)?;
    let probe = AttentionProbe::new(gpu, model, ids.len())?;
    let maps = probe.maps(&params, &ids)?;
    let labels: Vec<String> = ids.iter().map(|&i| token_label(&tok, i)).collect();
    let all: Vec<usize> = (0..model.n_layer).collect();
    let mut attention = Vec::new();
    for &l in if layers.is_empty() { &all[..] } else { layers } {
        let path = dir.join(format!("attention_L{l}.png"));
        attention_chart(&maps, l, &labels).save(&path)?;
        attention.push(path);
    }
    Ok(Written { loss, attention })
}

/// Every JSON line of metrics.jsonl (a torn last line, from a run killed mid-write, is skipped).
pub fn read_metrics(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::util::io_error(path, &e))?;
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

/// The prompt's tokens (at most block_size), or the first tokens of the built-in stories.
/// Characters a char-level tokenizer does not know are dropped from the default text.
pub fn prompt_tokens(tok: &Tokenizer, prompt: Option<&str>, block_size: usize) -> Result<Vec<u32>> {
    let mut ids = match prompt {
        Some(p) => {
            let ids = tok.encode(p).map_err(|e| Error::Other(format!("--prompt: {e}")))?;
            if ids.len() > block_size {
                return Err(Error::Other(format!(
                    "--prompt: {} tokens, the model's block_size is {block_size}",
                    ids.len()
                )));
            }
            ids
        }
        None => {
            let text = crate::data::stories::corpus(1, 4096);
            let n = block_size.min(DEFAULT_TOKENS);
            let known: String = text.chars().filter(|c| tok.encode(&c.to_string()).is_ok()).collect();
            let mut ids = tok.encode(&known)?;
            ids.truncate(n);
            ids
        }
    };
    ids.truncate(block_size);
    if ids.is_empty() {
        return Err(Error::Other("report: the prompt has no tokens".into()));
    }
    Ok(ids)
}

/// A short printable label of one token: spaces as '_', newlines as "\n", at most 6 characters.
pub fn token_label(tok: &Tokenizer, id: u32) -> String {
    let s = tok.decode(&[id]);
    let mut out = String::new();
    for c in s.chars() {
        match c {
            ' ' => out.push('_'),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_graphic() => out.push(c),
            _ => out.push('?'),
        }
    }
    out.chars().take(6).collect()
}

/// Tick values covering lo..=hi at a 1/2/5 x 10^k spacing, about `n` of them.
pub fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * mag).find(|&s| s >= raw).unwrap_or(10.0 * mag);
    let mut v = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while v <= hi + step * 1e-9 {
        out.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        v += step;
    }
    out
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 10000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The loss chart: train loss as a line, val loss as squares, axes with ticks, a legend.
pub fn loss_chart(metrics: &[Value]) -> Result<Canvas> {
    let pts = |key: &str| -> Vec<(f64, f64)> {
        metrics
            .iter()
            .filter_map(|m| Some((m.get("step")?.as_f64()?, m.get(key)?.as_f64()?)))
            .filter(|p| p.1.is_finite())
            .collect()
    };
    let (train, val) = (pts("loss"), pts("val_loss"));
    if train.is_empty() && val.is_empty() {
        return Err(Error::Other("report: metrics.jsonl has no loss records yet".into()));
    }
    let (w, h) = (800usize, 500usize);
    let (left, right, top, bottom) = (72i64, 24i64, 44i64, 56i64);
    let (pw, ph) = (w as i64 - left - right, h as i64 - top - bottom);
    let mut c = Canvas::new(w, h, WHITE);
    c.text_centered(w as i64 / 2, 12, "loss", 2, BLACK);

    let all: Vec<&(f64, f64)> = train.iter().chain(&val).collect();
    let (mut x0, mut x1) = all.iter().fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.0), a.1.max(p.0)));
    let (mut y0, mut y1) = all.iter().fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.1), a.1.max(p.1)));
    if x1 - x0 < 1.0 {
        (x0, x1) = (x0 - 1.0, x1 + 1.0);
    }
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    (y0, y1) = ((y0 - pad).max(0.0), y1 + pad);
    let px = |x: f64| left + ((x - x0) / (x1 - x0) * (pw - 1) as f64).round() as i64;
    let py = |y: f64| top + ph - 1 - ((y - y0) / (y1 - y0) * (ph - 1) as f64).round() as i64;

    for t in ticks(y0, y1, 6) {
        let y = py(t);
        c.rect(left, y, pw, 1, GREY);
        c.rect(left - 5, y, 5, 1, BLACK);
        let s = fmt_tick(t);
        c.text(left - 8 - text_width(&s), y - 4, &s, 1, BLACK);
    }
    for t in ticks(x0, x1, 8) {
        let x = px(t);
        c.rect(x, top, 1, ph, GREY);
        c.rect(x, top + ph, 1, 5, BLACK);
        c.text_centered(x, top + ph + 9, &fmt_tick(t), 1, BLACK);
    }
    c.frame(left, top, pw, ph, BLACK);
    c.text_centered(left + pw / 2, h as i64 - 20, "step", 1, BLACK);
    c.text_up(8, top + ph / 2 + 16, "loss", BLACK);

    for p in train.windows(2) {
        c.line((px(p[0].0), py(p[0].1)), (px(p[1].0), py(p[1].1)), 2, BLUE);
    }
    if let [p] = train[..] {
        c.rect(px(p.0) - 2, py(p.1) - 2, 5, 5, BLUE);
    }
    for &(x, y) in &val {
        c.rect(px(x) - 4, py(y) - 4, 9, 9, ORANGE);
        c.frame(px(x) - 4, py(y) - 4, 9, 9, BLACK);
    }

    // Legend, top right inside the plot.
    let entries: [(&str, Rgb, bool); 2] = [("train loss", BLUE, true), ("val loss", ORANGE, false)];
    let (lw, lx, ly) = (130, left + pw - 140, top + 10);
    c.rect(lx, ly, lw, 44, WHITE);
    c.frame(lx, ly, lw, 44, DARK);
    for (i, (name, col, is_line)) in entries.into_iter().enumerate() {
        let y = ly + 10 + i as i64 * 18;
        if is_line {
            c.rect(lx + 8, y + 3, 24, 2, col);
        } else {
            c.rect(lx + 16, y, 9, 9, col);
            c.frame(lx + 16, y, 9, 9, BLACK);
        }
        c.text(lx + 40, y, name, 1, BLACK);
    }
    Ok(c)
}

/// Every head of one layer as a grid of T x T heat maps (query rows, key columns), coloured from
/// 0 to the layer's largest probability, with the head number over each map, token labels along
/// the axes when T <= LABEL_MAX_T, and a colour bar.
pub fn attention_chart(maps: &AttentionMaps, layer: usize, labels: &[String]) -> Canvas {
    let (t, nh) = (maps.t() as i64, maps.n_head);
    let cell = (384 / t).clamp(1, 16);
    let side = t * cell;
    let labelled = maps.t() <= LABEL_MAX_T && labels.len() == maps.t();
    // Room for the longest label (rows: left of the map; columns: below it, read upwards).
    let lab = if labelled { labels.iter().map(|s| text_width(s)).max().unwrap_or(0) + 6 } else { 0 };
    let font_fits = cell >= 8;
    let lab = if font_fits { lab } else { 0 };
    let cols = (nh as f64).sqrt().ceil() as i64;
    let rows = (nh as i64 + cols - 1) / cols;
    let (pad, title_h, head_h, bar_w) = (20i64, 36i64, 16i64, 70i64);
    let panel_w = lab + side + pad;
    let panel_h = head_h + side + lab + pad;
    let w = pad + cols * panel_w + bar_w;
    let h = title_h + rows * panel_h + pad;
    let mut c = Canvas::new(w as usize, h as usize, WHITE);
    let title = format!("layer {layer}: attention of {nh} heads over {t} tokens (rows: query, cols: key)");
    c.text(pad, 12, &title, 1, BLACK);

    let hi = (0..nh).flat_map(|hd| maps.head(layer, hd).iter().cloned()).fold(0f32, f32::max).max(1e-12);
    for hd in 0..nh {
        let (gx, gy) = (hd as i64 % cols, hd as i64 / cols);
        let ox = pad + gx * panel_w + lab;
        let oy = title_h + gy * panel_h + head_h;
        c.text_centered(ox + side / 2, oy - 12, &format!("head {hd}"), 1, BLACK);
        let m = maps.head(layer, hd);
        for q in 0..t {
            for k in 0..t {
                let v = m[(q * t + k) as usize];
                let col = if k > q { [235, 235, 235] } else { heat(v / hi) };
                c.rect(ox + k * cell, oy + q * cell, cell, cell, col);
            }
        }
        c.frame(ox - 1, oy - 1, side + 2, side + 2, DARK);
        if labelled && font_fits {
            for (i, s) in labels.iter().enumerate() {
                let at = i as i64 * cell + (cell - 8) / 2;
                c.text(ox - 4 - text_width(s), oy + at, s, 1, BLACK);
                c.text_up(ox + at, oy + side + 4 + text_width(s), s, BLACK);
            }
        }
    }

    // Colour bar: 0 at the bottom, the largest probability at the top.
    let (bx, by, bh) = (w - bar_w + 10, title_h + head_h, (rows * panel_h - head_h - pad).clamp(40, 300));
    for i in 0..bh {
        c.rect(bx, by + i, 14, 1, heat(1.0 - i as f32 / (bh - 1) as f32));
    }
    c.frame(bx - 1, by - 1, 16, bh + 2, DARK);
    c.text(bx + 18, by - 3, &format!("{hi:.2}"), 1, BLACK);
    c.text(bx + 18, by + bh - 5, "0", 1, BLACK);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = ticks(1.37, 4.2, 6);
        assert!(t.iter().all(|&v| (1.37..=4.2).contains(&v)) && t.len() >= 4, "{t:?}");
        assert_eq!(fmt_tick(2.5), "2.5");
        assert_eq!(fmt_tick(300.0), "300");
    }
}
