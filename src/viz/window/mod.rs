//! The live window (cargo feature `viz`): loss, learning-rate, gradient-norm and tokens/s plots and
//! attention maps, fed over a channel by a training thread (`wgpt train --viz`) or by a thread that
//! follows a run directory (`wgpt viz RUN_DIR`).
//!
//! The feeding side never blocks: events go through a bounded channel with `try_send` and are
//! dropped when it is full (or when the window is gone). Attention maps are computed on the side
//! that owns the GPU, on a snapshot of the weights, every `every` steps, and sent as events too;
//! the window sends its settings (prompt, refresh interval) back over a second channel.

mod app;
mod feed;
mod follow;

pub use app::{open, Screenshot};
pub use feed::{MapMaker, WindowProgress, DEFAULT_MAP_EVERY};
pub use follow::{follow_run, run_prompt, MAP_TOKENS};

use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::time::Duration;

use super::maps::AttentionMaps;
use crate::train::trainer::StepReport;

/// What travels to the window.
#[derive(Debug, Clone)]
pub enum Event {
    Step(StepReport),
    Eval {
        step: u64,
        val_loss: f64,
    },
    /// The maps after `step` (or why there are none), with one label per token.
    Maps {
        step: u64,
        labels: Vec<String>,
        maps: std::result::Result<AttentionMaps, String>,
    },
    /// A line for the status bar (the run finished, failed, ...).
    Status(String),
}

/// What the window asks of the side that computes maps.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub prompt: String,
    /// Recompute the maps every this many steps (0: never).
    pub every: u64,
}

/// The sending end of the event channel: never blocks, drops events when the channel is full.
/// The window polls it once a second (no repaint per event: with small models that would be
/// hundreds of frames a second, and on a software adapter every frame is CPU taken from training).
#[derive(Clone)]
pub struct Feed {
    tx: SyncSender<Event>,
}

impl Feed {
    /// Sends `e` unless the channel is full; false once the window is gone.
    pub fn send(&self, e: Event) -> bool {
        !matches!(self.tx.try_send(e), Err(std::sync::mpsc::TrySendError::Disconnected(_)))
    }
}

/// The two channels between a feeding thread and the window.
pub struct Link {
    pub feed: Feed,
    pub settings: Receiver<Settings>,
}

/// The window's ends of the channels.
pub struct WindowEnds {
    events: Receiver<Event>,
    settings: Sender<Settings>,
    /// Dropped once the window has drawn its first frames (or failed to open).
    shown: Option<Sender<()>>,
}

/// Waits until the window of the same `link()` has drawn its first frames, failed to open or
/// `limit` passed. Training starts after it: opening a window (shader compilation, the font atlas)
/// costs seconds of CPU on a software adapter, which would otherwise be taken from the first steps.
pub fn wait_shown(shown: Receiver<()>, limit: Duration) {
    let _ = shown.recv_timeout(limit);
}

/// A linked pair: the feeder's ends, the window's, and the receiver `wait_shown` waits on.
pub fn link() -> (Link, WindowEnds, Receiver<()>) {
    // Room for several thousand steps between two frames; past that, events are dropped.
    let (tx, events) = sync_channel(8192);
    let (settings_tx, settings) = channel();
    let (shown_tx, shown) = channel();
    (Link { feed: Feed { tx }, settings }, WindowEnds { events, settings: settings_tx, shown: Some(shown_tx) }, shown)
}
