//! The graph scheduler: tensors, the recorded forward ops, autodiff, and the memory plan.

// HOLD pub mod autodiff;
pub mod flat;
pub mod memplan;
// HOLD pub mod recorder;
pub mod tensor;

// HOLD pub use recorder::{Graph, Node};
pub use tensor::{Class, DType, Tensor, TensorId, Tensors};
