//! The GPT model: its configuration, parameter table and the graph recording of its forward pass.

pub mod config;
pub mod gpt;
pub mod params;

pub use config::GptConfig;
pub use params::{param_table, Init, ParamSpec};
