//! Bad input gets a clear error, never a wgpu panic: a shader that does not compile names the entry
//! point and prints the numbered source; a tensor over the binding limit and a dispatch over the
//! workgroup limit name what is too big and the limit.

mod common;
use common::*;
use wgpt::gpu::shader::reflect_source;
use wgpt::gpu::{PipelineCache, Program, Step};
use wgpt::graph::{Class, Tensors};
use wgpt::ops::{gelu, Dispatch, Family};
use wgpt::Error;

/// Compiles one dispatch and returns the error it must give.
fn compile_error(tensors: Tensors, d: Dispatch) -> Error {
    let program = Program { tensors, dispatches: vec![d], ..Default::default() };
    pollster::block_on(Step::compile(gpu(), &mut PipelineCache::new(), program)).err().expect("compiling must fail")
}

#[test]
fn shader_errors_name_the_entry_point_and_number_the_source() {
    let src = "alias st = f32;\nfn broken( {\n}\n";
    let err = reflect_source("broken.wgsl", src, "broken_forward").err().expect("must fail");
    let text = err.to_string();
    assert!(matches!(err, Error::Shader { .. }));
    assert!(text.contains("broken.wgsl") && text.contains("broken_forward"), "{text}");
    assert!(text.contains("   2 | fn broken( {"), "numbered source missing:\n{text}");
}

#[test]
fn unknown_entry_point_is_an_error() {
    let mut t = Tensors::default();
    let x = t.f32("x", &[4], Class::Input);
    let d = Dispatch::new(Family::Gelu, "gelu_sideways").arg(1, x);
    let err = compile_error(t, d);
    assert!(err.to_string().contains("gelu_sideways"), "{err}");
}

#[test]
fn tensor_over_the_binding_limit_is_named() {
    let g = gpu();
    let n = (g.max_binding() / 4 + 64) as usize;
    let mut t = Tensors::default();
    let x = t.f32("huge.activation", &[n], Class::Activation);
    let y = t.f32("huge.output", &[n], Class::Activation);
    let d = gelu::forward(y, x, n);
    let err = compile_error(t, d);
    let text = err.to_string();
    assert!(matches!(err, Error::Limit { .. }), "{text}");
    assert!(text.contains("huge.") && text.contains("max_storage_buffer_binding_size"), "{text}");
}

#[test]
fn too_many_workgroups_is_an_error() {
    let mut t = Tensors::default();
    let x = t.f32("x", &[4], Class::Input);
    let d = gelu::forward(x, x, 4).groups([1 << 20, 1, 1]);
    let err = compile_error(t, d);
    assert!(matches!(err, Error::Workgroups { .. }), "{err}");
}

#[test]
fn missing_binding_is_an_error() {
    let mut t = Tensors::default();
    let x = t.f32("x", &[4], Class::Input);
    // gelu_forward reads x at binding 2; leave it out.
    let d = Dispatch::new(Family::Gelu, "gelu_forward").uniform(wgpt::ops::Uniform::new().u(4u32).u(0u32)).arg(1, x);
    let err = compile_error(t, d);
    assert!(err.to_string().contains("@binding(2)"), "{err}");
}

#[test]
fn no_matching_adapter_says_how_to_install_one() {
    let err =
        pollster::block_on(wgpt::gpu::Gpu::with_name(wgpt::gpu::BackendChoice::Auto, Some("no-such-adapter-xyz")))
            .err()
            .expect("no adapter has that name");
    let text = err.to_string();
    assert!(matches!(err, Error::NoAdapter { .. }), "{text}");
    assert!(text.contains("no-such-adapter-xyz") && text.contains("mesa-vulkan-drivers"), "{text}");
}
