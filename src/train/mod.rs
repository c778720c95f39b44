//! Training: the compiled step (model + backward + optimizer) and the optimizer section.

pub mod optimizer;
pub mod schedule;
pub mod step;

pub use step::{StepConfig, StepStats, TrainStep};
