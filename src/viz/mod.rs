//! Seeing training: attention maps recomputed on the GPU for display (`maps`), PNG reports
//! written without a display (`report`), and, with the cargo feature `viz`, the live egui window.

#[cfg(not(target_arch = "wasm32"))]
pub mod canvas;
pub mod maps;
#[cfg(not(target_arch = "wasm32"))]
pub mod report;
#[cfg(all(feature = "viz", not(target_arch = "wasm32")))]
pub mod window;
