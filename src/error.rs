//! One error type for the library. Every variant says what went wrong and, where a user can act,
//! what to do; the CLI prints it as one line instead of a backtrace.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no GPU adapter found{detail}. Install a Vulkan driver (on Debian/Ubuntu without a GPU: `apt-get install mesa-vulkan-drivers`, the lavapipe software adapter) or pick another backend with --backend / WGPU_BACKEND")]
    NoAdapter { detail: String },
    #[error("could not open device on adapter '{adapter}': {reason}")]
    Device { adapter: String, reason: String },
    #[error("shader {file} failed to compile (entry point {entry}):\n{message}\n{numbered_source}")]
    Shader { file: String, entry: String, message: String, numbered_source: String },
    #[error("tensor '{tensor}' needs {needed} but the adapter allows at most {limit} ({what}); {advice}")]
    Limit { tensor: String, what: &'static str, needed: Bytes, limit: Bytes, advice: String },
    #[error("out of GPU memory: the step's {plan}, but {available}; {advice}")]
    OutOfMemory { plan: String, available: String, advice: String },
    #[error("GPU device lost at step {step}: {reason}. {checkpoint}; resume with `wgpt train --resume --out <run directory>`")]
    DeviceLost { step: u64, reason: String, checkpoint: String },
    #[error("dispatch {entry} needs {groups} workgroups in one dimension but the adapter allows at most {limit}")]
    Workgroups { entry: String, groups: u32, limit: u32 },
    #[error("dispatch {entry}: {reason}")]
    Binding { entry: String, reason: String },
    #[error("graph: {0}")]
    Graph(String),
    #[error("GPU error: {0}")]
    Gpu(String),
    #[error("stopped by {} at step {step}; checkpoint saved in {checkpoint}; continue with `wgpt train --resume --out <run directory>`", signal_name(*.signal))]
    Interrupted { signal: i32, step: u64, checkpoint: String },
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn signal_name(sig: i32) -> &'static str {
    match sig {
        2 => "SIGINT",
        15 => "SIGTERM",
        _ => "a signal",
    }
}

/// A byte count printed in a human unit next to the exact number (`{:#}`: the unit alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0 as f64;
        let (value, unit) = if b >= (1u64 << 30) as f64 {
            (format!("{:.2}", b / (1u64 << 30) as f64), "GiB")
        } else if b >= (1u64 << 20) as f64 {
            (format!("{:.2}", b / (1u64 << 20) as f64), "MiB")
        } else if b >= 1024.0 {
            (format!("{:.1}", b / 1024.0), "KiB")
        } else {
            return write!(f, "{} bytes", self.0);
        };
        if f.alternate() {
            write!(f, "{value} {unit}")
        } else {
            write!(f, "{value} {unit} ({} bytes)", self.0)
        }
    }
}

/// The error of `--viz` / `wgpt viz` in a build without the window.
#[cfg(not(feature = "viz"))]
pub fn no_viz() -> Error {
    Error::Other("this wgpt was built without the window; rebuild with `cargo build --release --features viz`".into())
}
