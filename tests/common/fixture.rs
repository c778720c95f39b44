//! The PyTorch / Hugging Face reference state of a tiny GPT-2 (`../shared/fixtures/
//! gpt2_tiny_reference.safetensors`; its README says what is inside), by tensor name.

use std::collections::HashMap;

use safetensors::{Dtype, SafeTensors};

pub struct Fixture {
    pub f32s: HashMap<String, Vec<f32>>,
    pub i32s: HashMap<String, Vec<i32>>,
}

/// The fixture's bytes: read at run time natively (WGPT_SHARED may point elsewhere), built into
/// the test in a browser, which has no files.
fn fixture_bytes() -> Vec<u8> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let path = super::shared("fixtures/gpt2_tiny_reference.safetensors");
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!("reference fixture {} unreadable: {e} (set WGPT_SHARED to the shared/ folder)", path.display())
        })
    }
    #[cfg(target_arch = "wasm32")]
    {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/gpt2_tiny_reference.safetensors"))
            .to_vec()
    }
}

pub fn load() -> Fixture {
    let bytes = fixture_bytes();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut fx = Fixture { f32s: HashMap::new(), i32s: HashMap::new() };
    for (name, view) in st.tensors() {
        match view.dtype() {
            Dtype::F32 => {
                fx.f32s.insert(name, bytemuck::pod_collect_to_vec(view.data()));
            }
            Dtype::I32 => {
                fx.i32s.insert(name, bytemuck::pod_collect_to_vec(view.data()));
            }
            other => panic!("unexpected dtype {other:?} for {name}"),
        }
    }
    fx
}
