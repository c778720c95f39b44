//! The op library: one file per family, mirroring `shaders/`. Each file holds the shape rules and
//! `Dispatch` builders of its WGSL entry points (forward and backward side by side) and a plain-loop
//! CPU reference in f64 that tests use as ground truth.

pub mod adamw;
pub mod attention;
pub mod attention_unfused;
pub mod decode;
pub mod embedding;
pub mod gelu;
pub mod gemv;
pub mod layernorm;
pub mod matmul;
pub mod reduce;
pub mod residual;
pub mod xent;

pub use crate::gpu::shader::Family;
use crate::graph::TensorId;

/// One compute dispatch: which entry point, with which override constants, uniform words and
/// storage bindings (binding number → tensor), over how many workgroups.
#[derive(Debug, Clone)]
pub struct Dispatch {
    pub family: Family,
    pub entry: &'static str,
    pub constants: Vec<(&'static str, f64)>,
    /// Bound at `@binding(0)` as `var<uniform>` when the entry point uses it.
    pub uniform: Vec<u32>,
    pub args: Vec<(u32, TensorId)>,
    pub groups: [u32; 3],
    /// Set when the kernel comes in variants: what choosing another one needs.
    pub tunable: Option<Tunable>,
    /// Arithmetic operations it performs, from the op's shape (a multiply-add counts 2; exp, rsqrt
    /// and tanh count 1): what `bench --profile` divides by its time. Bytes come from the bound
    /// tensors (`graph::cost`).
    pub flops: u64,
    /// Array lengths baked into the module's text (`const NAME: u32 = ...;` in the shader): WGSL
    /// cannot size a private array by an override constant, and arrays sized for the largest
    /// case cost compile time in proportion (lavapipe took 66 s for attention at 128 channels).
    pub sizes: Vec<(&'static str, u32)>,
    /// Storage bindings the entry point declares but this dispatch does not read (a uniform flag
    /// says so): the executor binds a small placeholder buffer there. A real tensor would do only
    /// if it overlapped no other binding (WebGPU forbids aliased writable bindings).
    pub spare: Vec<u32>,
}

/// A dispatch whose family has kernel variants, with the shape that choosing one depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tunable {
    Matmul(matmul::Tuned),
    Attention(attention::Tuned),
}

impl Dispatch {
    pub fn new(family: Family, entry: &'static str) -> Self {
        Dispatch {
            family,
            entry,
            constants: Vec::new(),
            uniform: Vec::new(),
            args: Vec::new(),
            groups: [1, 1, 1],
            tunable: None,
            flops: 0,
            sizes: Vec::new(),
            spare: Vec::new(),
        }
    }

    /// Marks `bindings` as declared but unread: see `spare`.
    pub fn spare(mut self, bindings: impl IntoIterator<Item = u32>) -> Self {
        self.spare.extend(bindings);
        self
    }

    pub fn tunable(mut self, t: Tunable) -> Self {
        self.tunable = Some(t);
        self
    }

    /// Sets `flops` to the product of `factors`, formed in u64: on wasm32 a usize product of a
    /// large matmul's sizes overflows.
    pub fn flops(mut self, factors: &[usize]) -> Self {
        self.flops = factors.iter().map(|&f| f as u64).product();
        self
    }

    pub fn size(mut self, name: &'static str, v: usize) -> Self {
        self.sizes.push((name, v as u32));
        self
    }

    pub fn arg(mut self, binding: u32, t: TensorId) -> Self {
        self.args.push((binding, t));
        self
    }

    pub fn constant(mut self, name: &'static str, v: f64) -> Self {
        self.constants.push((name, v));
        self
    }

    pub fn uniform(mut self, u: Uniform) -> Self {
        self.uniform = u.0;
        self
    }

    /// `threads` invocations in workgroups of `wg`, folded into 2-D when one dimension is not enough.
    /// Kernels recover the flat index as `(wid.y * nwg.x + wid.x) * WG + lid.x`.
    pub fn threads(mut self, threads: u64, wg: u32) -> Self {
        self.groups = grid(threads.div_ceil(wg as u64));
        self
    }

    pub fn groups(mut self, g: [u32; 3]) -> Self {
        self.groups = g;
        self
    }

    /// The tensors this dispatch writes are not known without the shader; callers that need
    /// read/write sets use the reflection. This lists every bound tensor.
    pub fn tensors(&self) -> impl Iterator<Item = TensorId> + '_ {
        self.args.iter().map(|a| a.1)
    }
}

/// Workgroups per dimension the design relies on (WebGPU's guaranteed minimum).
pub const MAX_GROUPS_PER_DIM: u64 = 65535;

pub fn grid(groups: u64) -> [u32; 3] {
    let groups = groups.max(1);
    if groups <= MAX_GROUPS_PER_DIM {
        [groups as u32, 1, 1]
    } else {
        [MAX_GROUPS_PER_DIM as u32, groups.div_ceil(MAX_GROUPS_PER_DIM) as u32, 1]
    }
}

/// Uniform words in declaration order; every field of every `Params` struct is a 4-byte scalar.
#[derive(Debug, Clone, Default)]
pub struct Uniform(pub Vec<u32>);

impl Uniform {
    pub fn new() -> Self {
        Uniform(Vec::new())
    }
    pub fn u(mut self, v: impl TryInto<u32>) -> Self {
        self.0.push(v.try_into().ok().expect("uniform value does not fit in u32"));
        self
    }
    pub fn f(mut self, v: f32) -> Self {
        self.0.push(v.to_bits());
        self
    }
}

/// Default workgroup size for 1-D kernels (an `override WG` in every shader).
pub const WG: u32 = 64;
