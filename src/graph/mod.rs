//! The graph scheduler: tensors, the recorded forward ops, autodiff, and the memory plan.

pub mod autodiff;
pub mod flat;
pub mod memplan;
pub mod recorder;
pub mod tensor;

pub use recorder::{Graph, Node};
pub use tensor::{Class, DType, Tensor, TensorId, Tensors};
