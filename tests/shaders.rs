//! Every WGSL family, with f32 and f16 storage, parses and validates in naga, and each of its entry
//! points translates to SPIR-V (override constants at their defaults): what wgpu does before
//! Vulkan sees a shader. The subgroup and cooperative-matrix variants, which no adapter here runs,
//! are checked this far at least (naga 30's SPIR-V writer once failed on valid WGSL in them).
#![cfg(not(target_arch = "wasm32"))]

use wgpt::gpu::shader::{reflect, Family, StorageType};

#[test]
fn every_entry_point_translates_to_spirv() {
    for f in Family::ALL {
        for st in [StorageType::F32, StorageType::F16] {
            let r = reflect(f, st, "").unwrap_or_else(|e| panic!("{} with {st:?} storage: {e}", f.file()));
            let module = naga::front::wgsl::parse_str(&r.source).unwrap();
            let info =
                naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
                    .validate(&module)
                    .unwrap();
            let (module, info) =
                naga::back::pipeline_constants::process_overrides(&module, &info, None, &Default::default())
                    .unwrap_or_else(|e| panic!("{}: override constants: {e}", f.file()));
            for ep in &module.entry_points {
                let pipeline = naga::back::spv::PipelineOptions {
                    shader_stage: naga::ShaderStage::Compute,
                    entry_point: ep.name.clone(),
                };
                let options = naga::back::spv::Options::default();
                let out = std::panic::catch_unwind(|| {
                    naga::back::spv::write_vec(&module, &info, &options, Some(&pipeline)).map(|w| w.len())
                });
                match out {
                    Ok(Ok(words)) => assert!(words > 5, "{}: empty SPIR-V", ep.name),
                    Ok(Err(e)) => panic!("{} ({}, {st:?}): SPIR-V: {e}", ep.name, f.file()),
                    Err(_) => panic!("{} ({}, {st:?}): naga's SPIR-V writer panicked", ep.name, f.file()),
                }
            }
        }
    }
}
