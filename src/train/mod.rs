//! Training: the compiled step (model + backward + optimizer) and the optimizer section.

pub mod accumulate;
#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
#[cfg(not(target_arch = "wasm32"))]
pub mod budget;
pub mod checkpoint;
#[cfg(not(target_arch = "wasm32"))]
pub mod checkpoints;
pub mod config;
pub mod exchange;
pub mod guard;
#[cfg(not(target_arch = "wasm32"))]
pub mod interrupt;
#[cfg(not(target_arch = "wasm32"))]
pub mod launch;
pub mod llmc;
pub mod optimizer;
pub mod precision;
pub mod profile;
#[cfg(not(target_arch = "wasm32"))]
pub mod run;
pub mod schedule;
#[cfg(not(target_arch = "wasm32"))]
pub mod setup;
pub mod step;
pub mod trainer;
pub mod zero;

pub use precision::{LossScale, Precision};
pub use step::{StepConfig, StepStats, TrainStep};
