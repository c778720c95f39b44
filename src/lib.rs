//! wgpt: train GPT-style language models with WGSL compute shaders on any GPU through wgpu.
//! Data flows text → tokens → batches → graph → compiled step → loss/gradients → AdamW.

pub mod error;
pub mod gpu;
pub mod graph;
pub mod ops;

pub use error::{Error, Result};
