//! The training side of the window: a `Progress` that forwards steps and evaluations, and the
//! attention maps it makes on the trainer's GPU from snapshots of the weights, at a cadence that
//! keeps their cost to about 1% of training.

use std::collections::HashMap;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use super::{Event, Feed, Settings};
use crate::data::Tokenizer;
use crate::gpu::Gpu;
use crate::model::GptConfig;
use crate::train::trainer::{Progress, StepReport};
use crate::viz::maps::AttentionProbe;

/// Attention maps of a prompt under snapshots of the weights, on the GPU of the feeding thread.
pub struct MapMaker {
    probe: std::result::Result<AttentionProbe, String>,
    tokenizer: Tokenizer,
    settings: Settings,
    rx: Receiver<Settings>,
    cadence: Cadence,
}

/// When maps are due: at once when the settings changed, else every `every` steps, but never
/// sooner than `COST_RATIO` times the cost of the last ones (weights read back and the probe's
/// forward pass) after them, so that whatever `every` says they take at most about 1% of the
/// training thread.
#[derive(Debug, Default)]
struct Cadence {
    /// The settings changed since the last maps.
    dirty: bool,
    /// When the maps being made were asked for, and when the last ones were done and what they cost.
    asked: Option<Instant>,
    last: Option<(Instant, Duration)>,
}

impl Cadence {
    const COST_RATIO: u32 = 100;

    fn due(&mut self, step: u64, every: u64, now: Instant) -> bool {
        let on_step = every > 0 && step.is_multiple_of(every);
        let rested = self.last.is_none_or(|(at, cost)| now >= at + cost * Self::COST_RATIO);
        let due = self.dirty || (on_step && rested);
        if due {
            self.asked = Some(now);
        }
        due
    }

    fn done(&mut self, now: Instant) {
        let asked = self.asked.take().unwrap_or(now);
        self.last = Some((now, now - asked));
        self.dirty = false;
    }
}

impl MapMaker {
    /// Maps of at most `t` tokens; `prompt` is the default prompt.
    pub fn new(
        gpu: &Gpu,
        model: GptConfig,
        t: usize,
        tokenizer: Tokenizer,
        prompt: String,
        rx: Receiver<Settings>,
    ) -> Self {
        let probe = AttentionProbe::new(gpu, model, t.min(model.block_size)).map_err(|e| e.to_string());
        MapMaker {
            probe,
            tokenizer,
            settings: Settings { prompt, every: DEFAULT_MAP_EVERY },
            rx,
            cadence: Cadence { dirty: true, ..Cadence::default() },
        }
    }

    pub fn prompt(&self) -> &str {
        &self.settings.prompt
    }

    /// Takes the window's latest settings; true when they changed.
    pub fn poll(&mut self) -> bool {
        let mut changed = false;
        while let Ok(s) = self.rx.try_recv() {
            changed |= s != self.settings;
            self.settings = s;
        }
        self.cadence.dirty |= changed;
        changed
    }

    /// Whether the maps are due after `step` (see `Cadence`).
    pub fn due(&mut self, step: u64) -> bool {
        self.poll();
        self.cadence.due(step, self.settings.every, Instant::now())
    }

    /// The maps of the prompt under `params`, as an event.
    pub fn make(&mut self, step: u64, params: &HashMap<String, Vec<f32>>) -> Event {
        let e = self.maps_event(step, params);
        self.cadence.done(Instant::now());
        e
    }

    fn maps_event(&self, step: u64, params: &HashMap<String, Vec<f32>>) -> Event {
        let probe = match &self.probe {
            Ok(p) => p,
            Err(e) => return Event::Maps { step, labels: Vec::new(), maps: Err(e.clone()) },
        };
        let mut ids = match self.tokenizer.encode(&self.settings.prompt) {
            Ok(ids) => ids,
            Err(e) => return Event::Maps { step, labels: Vec::new(), maps: Err(format!("the prompt: {e}")) },
        };
        ids.truncate(probe.t);
        if ids.is_empty() {
            return Event::Maps { step, labels: Vec::new(), maps: Err("the prompt is empty".into()) };
        }
        let labels = ids.iter().map(|&id| label(&self.tokenizer.decode(&[id]))).collect();
        Event::Maps { step, labels, maps: probe.maps(params, &ids).map_err(|e| e.to_string()) }
    }
}

/// A token as an axis label: whitespace made visible with characters egui's default fonts have.
fn label(s: &str) -> String {
    s.replace(' ', "·").replace('\n', "\\n").replace('\t', "\\t").replace('\r', "\\r")
}

/// The default of the window's "refresh every N steps".
pub const DEFAULT_MAP_EVERY: u64 = 10;

/// A `Progress` that keeps reporting to `inner` (the terminal) and forwards every step, evaluation
/// and line to the window, with attention maps every so many steps while the window is open.
pub struct WindowProgress<P> {
    pub inner: P,
    pub feed: Feed,
    pub maps: MapMaker,
    open: bool,
}

impl<P: Progress> WindowProgress<P> {
    pub fn new(inner: P, feed: Feed, maps: MapMaker) -> Self {
        WindowProgress { inner, feed, maps, open: true }
    }

    fn send(&mut self, e: Event) {
        self.open &= self.feed.send(e);
    }
}

impl<P: Progress> Progress for WindowProgress<P> {
    fn line(&mut self, text: &str) {
        self.inner.line(text);
    }

    fn step(&mut self, r: &StepReport) {
        self.inner.step(r);
        self.send(Event::Step(*r));
    }

    fn eval(&mut self, step: u64, val_loss: f64) {
        self.inner.eval(step, val_loss);
        self.send(Event::Eval { step, val_loss });
    }

    fn wants_params(&mut self, step: u64) -> bool {
        self.open && self.maps.due(step)
    }

    fn params(&mut self, step: u64, params: &HashMap<String, Vec<f32>>) {
        let e = self.maps.make(step, params);
        self.send(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_come_every_n_steps_unless_their_cost_says_wait() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = Cadence::default();
        assert!(!c.due(9, 10, t0));
        assert!(c.due(10, 10, t0));
        c.done(t0 + ms(20));
        // 20 ms of maps: none for the next 2 s, whatever the step.
        assert!(!c.due(20, 10, t0 + ms(1000)));
        assert!(!c.due(30, 10, t0 + ms(2019)));
        assert!(!c.due(31, 10, t0 + ms(2100)));
        assert!(c.due(40, 10, t0 + ms(2100)));
        c.done(t0 + ms(2101));
        // Changed settings are honoured at once; every = 0 turns the cadence off.
        c.dirty = true;
        assert!(c.due(41, 0, t0 + ms(2102)));
        c.done(t0 + ms(2103));
        assert!(!c.due(1000, 0, t0 + ms(100_000)));
    }

    #[test]
    fn token_labels_show_whitespace() {
        assert_eq!(label(" a\n\t"), "·a\\n\\t");
    }
}
