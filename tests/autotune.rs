//! Choosing kernel variants: timing on the device picks one per product and caches it on disk; a
//! second compile reads the cache, `refresh` times again, `off` and CPU adapters under `auto` take
//! the heuristic, a damaged cache is rebuilt, and a variant asked for is used as it is; the driver's
//! pipeline cache is saved and a damaged one replaced.

mod common;
use common::*;
use wgpt::gpu::tuning::{heuristic, Autotune, How, KernelPolicy};
use wgpt::gpu::tuning_cache::FILE;
use wgpt::ops::matmul::{Matmul, Variant};

/// Two products (a forward with bias and its dW) compiled under `kernels`; their choices.
fn compile(kernels: KernelPolicy) -> Vec<wgpt::gpu::tuning::Choice> {
    let (m, k, n) = (96, 80, 72);
    let op = Matmul::new(m, k, n, false);
    let mut kit = Kit::new();
    kit.kernels = kernels;
    let (x, w, b, dy) = (
        kit.input("x", &vec![0.5; m * k]),
        kit.input("w", &vec![0.25; k * n]),
        kit.input("b", &vec![1.0; n]),
        kit.input("dy", &vec![1.0; m * n]),
    );
    let (out, dw) = (kit.output("out", m * n), kit.output("dw", k * n));
    kit.push([op.forward(out, x, w, Some(b)), op.backward_dw(dw, false, dy, x)]);
    let ran = pollster::block_on(kit.run());
    // Whatever was chosen computes the product: 80 x 0.5 x 0.25 + 1 and 96 x 0.5.
    assert!(pollster::block_on(ran.get(out)).iter().all(|&v| v == 11.0));
    assert!(pollster::block_on(ran.get(dw)).iter().all(|&v| v == 48.0));
    ran.step.choices.clone()
}

fn policy(autotune: Autotune, dir: &std::path::Path) -> KernelPolicy {
    KernelPolicy { autotune, cache_dir: Some(dir.to_path_buf()), ..KernelPolicy::default() }
}

fn hows(choices: &[wgpt::gpu::tuning::Choice]) -> Vec<How> {
    choices.iter().map(|c| c.how).collect()
}

#[test]
fn timings_are_cached_refreshed_and_rebuilt() {
    let dir = scratch("autotune-cache");
    let file = dir.join(FILE);
    let variants = pollster::block_on(matmul_variants());
    if variants.len() < 2 {
        eprintln!("this adapter runs one matmul variant only: nothing to time");
        return;
    }

    let timed = compile(policy(Autotune::On, &dir));
    assert_eq!(hows(&timed), [How::Timed, How::Timed]);
    for c in &timed {
        assert_eq!(c.timings.len(), variants.len(), "every candidate timed: {c:?}");
        assert!(c.timings.iter().all(|(_, ms)| ms.is_finite() && *ms > 0.0), "{c:?}");
        let fastest = c.timings.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap().0;
        assert_eq!(c.variant, fastest, "{c:?}");
    }
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(doc["entries"].as_object().unwrap().len(), 2, "{doc}");
    let stamp = std::fs::read(&file).unwrap();

    // The second compile pays nothing: the same choices, from the cache, and the file unchanged.
    let cached = compile(policy(Autotune::On, &dir));
    assert_eq!(hows(&cached), [How::Cached, How::Cached]);
    let pairs = |cs: &[wgpt::gpu::tuning::Choice]| cs.iter().map(|c| (c.key.clone(), c.variant)).collect::<Vec<_>>();
    assert_eq!(pairs(&cached), pairs(&timed));
    assert_eq!(std::fs::read(&file).unwrap(), stamp);

    // refresh times again and rewrites the entries.
    assert_eq!(hows(&compile(policy(Autotune::Refresh, &dir))), [How::Timed, How::Timed]);

    // off takes the heuristic without reading or writing the cache.
    std::fs::remove_file(&file).unwrap();
    assert_eq!(hows(&compile(policy(Autotune::Off, &dir))), [How::Heuristic, How::Heuristic]);
    assert!(!file.exists());

    // A damaged file: a notice, then timed again and rewritten whole.
    for damage in [&b"{\"version\": 1, \"entries\": "[..], b"\x00\x01garbage", b"[]"] {
        std::fs::write(&file, damage).unwrap();
        assert_eq!(hows(&compile(policy(Autotune::On, &dir))), [How::Timed, How::Timed]);
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(doc["entries"].as_object().unwrap().len(), 2);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cpu_adapters_take_the_heuristic_under_auto_and_asked_variants_are_kept() {
    let dir = scratch("autotune-auto");
    let g = gpu();
    let auto = compile(policy(Autotune::Auto, &dir));
    if g.info.device_type == wgpu::DeviceType::Cpu {
        assert_eq!(hows(&auto), [How::Heuristic, How::Heuristic]);
        assert!(auto.iter().all(|c| c.variant == heuristic(g)) && heuristic(g) != Variant::Tiled);
        assert!(!dir.join(FILE).exists(), "nothing timed, nothing written");
    }
    for v in pollster::block_on(matmul_variants()) {
        let asked = compile(KernelPolicy { matmul: Some(v), ..policy(Autotune::On, &dir) });
        assert_eq!(hows(&asked), [How::Asked, How::Asked]);
        assert!(asked.iter().all(|c| c.variant == v));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The driver's pipeline cache (`gpu::driver_cache`) is written after pipelines compile, and a
/// damaged file is no error: wgpu starts empty and the next save replaces it.
#[test]
fn the_driver_pipeline_cache_is_saved_and_a_damaged_one_replaced() {
    use wgpt::gpu::driver_cache::DriverCache;
    let g = gpu();
    let dir = scratch("driver-cache");
    let open = || DriverCache::open(&g.device, &g.info, g.features, Some(dir.clone()));
    let Some(dc) = open() else {
        eprintln!("{} keeps no pipeline cache: nothing to check", g.describe());
        return;
    };
    let compile = |dc: &DriverCache| {
        let module = g.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: None,
            source: wgpu::ShaderSource::Wgsl(
                "@group(0) @binding(0) var<storage, read_write> x: array<f32>;
                 @compute @workgroup_size(1) fn main() { x[0] = x[0] + 1.0; }"
                    .into(),
            ),
        });
        let _pipeline = g.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: None,
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: Some(&dc.cache),
        });
        dc.save();
    };
    compile(&dc);
    let saved = std::fs::read(dc.path()).expect("the cache file is written");
    assert!(!saved.is_empty());
    std::fs::write(dc.path(), b"not a pipeline cache").unwrap();
    let dc = open().expect("a damaged file still opens");
    compile(&dc);
    assert_ne!(std::fs::read(dc.path()).unwrap(), b"not a pipeline cache", "the damaged file was replaced");
    let _ = std::fs::remove_dir_all(&dir);
}
