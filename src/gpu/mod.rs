//! The wgpu runtime: device choice, shader loading, pipeline cache, and the executor that replays
//! a compiled step.

pub mod context;
pub mod driver_cache;
pub mod executor;
pub mod faults;
pub mod pipeline;
pub mod profile;
pub mod shader;
pub mod subgroup_lanes;
pub mod tuning;
pub mod tuning_cache;

pub use context::{BackendChoice, Gpu};
pub use executor::{Program, Step};
pub use pipeline::PipelineCache;
pub use shader::StorageType;
