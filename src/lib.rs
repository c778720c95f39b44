//! wgpt: train GPT-style language models with WGSL compute shaders on any GPU through wgpu.
//! Data flows text → tokens → batches → graph → compiled step → loss/gradients → AdamW.

#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
pub mod data;
pub mod dist;
pub mod error;
pub mod gpu;
pub mod graph;
pub mod infer;
pub mod model;
pub mod ops;
pub mod train;
pub mod util;
pub mod viz;

pub use error::{Error, Result};
