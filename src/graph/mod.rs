//! The graph scheduler: tensors, the recorded forward ops, autodiff, and the memory plan.

pub mod memplan;
pub mod tensor;

pub use tensor::{Class, DType, Tensor, TensorId, Tensors};
