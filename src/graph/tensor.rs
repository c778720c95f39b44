//! Tensor ids and their metadata: shape, element type, the memory class that decides which
//! arena holds it, and views (a window of another tensor, used to bind ranges of big tensors).

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub u32);

impl TensorId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    U32,
    /// Storage only (kernels compute in f32); needs the adapter's `SHADER_F16`.
    F16,
}

impl DType {
    pub fn size(self) -> u64 {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 => 2,
        }
    }
}

/// Decides the arena and the lifetime rule of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// Trainable weights (f32 master copy); one flat layout shared with grads and moments.
    Param,
    /// Gradients of parameters; same layout as `Param`.
    Grad,
    /// AdamW first and second moments; same layout as `Param`.
    Optim,
    /// Data the host writes before a step (token ids, buckets, hyper-parameters).
    Input,
    /// Results the host reads after a step (loss, gradient norm); never reused within a step.
    Output,
    /// Forward activations and their gradients: placed by lifetime, memory reused.
    Activation,
    /// Kernel temporaries (partial sums): placed by lifetime like activations.
    Scratch,
}

impl Class {
    /// Persistent classes keep their bytes across steps; the rest are planned by lifetime.
    pub fn persistent(self) -> bool {
        !matches!(self, Class::Activation | Class::Scratch)
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::Param => "params",
            Class::Grad => "grads",
            Class::Optim => "optimizer",
            Class::Input => "inputs",
            Class::Output => "outputs",
            Class::Activation => "activations",
            Class::Scratch => "scratch",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub class: Class,
    /// `Some((base, element_offset))` when this tensor is a window into `base`.
    pub view: Option<(TensorId, usize)>,
}

impl Tensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn bytes(&self) -> u64 {
        self.numel() as u64 * self.dtype.size()
    }
}

/// A list of tensors; ids index into it.
#[derive(Debug, Clone, Default)]
pub struct Tensors {
    pub list: Vec<Tensor>,
}

impl Tensors {
    pub fn add(&mut self, name: impl Into<String>, shape: &[usize], dtype: DType, class: Class) -> TensorId {
        self.list.push(Tensor { name: name.into(), shape: shape.to_vec(), dtype, class, view: None });
        TensorId(self.list.len() as u32 - 1)
    }

    pub fn f32(&mut self, name: impl Into<String>, shape: &[usize], class: Class) -> TensorId {
        self.add(name, shape, DType::F32, class)
    }

    pub fn u32(&mut self, name: impl Into<String>, shape: &[usize], class: Class) -> TensorId {
        self.add(name, shape, DType::U32, class)
    }

    /// A window of `len` elements of `base` starting at element `offset`. A view of a view is a
    /// view of the root, so every view names the tensor that owns its bytes.
    pub fn view(&mut self, base: TensorId, offset: usize, len: usize) -> TensorId {
        let b = &self.list[base.index()];
        assert!(offset + len <= b.numel(), "view {offset}+{len} out of range of {}", b.name);
        let (root, start) = self.window(base);
        let t = Tensor {
            name: format!("{}[{}..{}]", b.name, offset, offset + len),
            shape: vec![len],
            dtype: b.dtype,
            class: b.class,
            view: Some((root, start + offset)),
        };
        self.list.push(t);
        TensorId(self.list.len() as u32 - 1)
    }

    /// (root, element offset in the root) of any tensor.
    pub fn window(&self, id: TensorId) -> (TensorId, usize) {
        self.list[id.index()].view.unwrap_or((id, 0))
    }

    pub fn get(&self, id: TensorId) -> &Tensor {
        &self.list[id.index()]
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The tensor that owns the bytes (itself unless a view).
    pub fn root(&self, id: TensorId) -> TensorId {
        self.list[id.index()].view.map_or(id, |(b, _)| b)
    }
}
