//! Seeing training: attention maps recomputed on the GPU for display (`maps`), PNG reports
//! written without a display (`report`), and, with the cargo feature `viz`, the live egui window.

pub mod canvas;
pub mod maps;
pub mod report;
#[cfg(all(feature = "viz", not(target_arch = "wasm32")))]
pub mod window;
