//! The graph scheduler: tensors, the recorded forward ops, autodiff (with recomputation policies),
//! and the memory plan.

pub mod autodiff;
pub mod flat;
pub mod fuse;
pub mod memplan;
pub mod recompute;
pub mod recorder;
pub mod tensor;

pub use recompute::Recompute;
pub use recorder::{Graph, Node};
pub use tensor::{Class, DType, Tensor, TensorId, Tensors};
