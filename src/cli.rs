//! Command-line interface (native only): `wgpt info` lists adapters; later stages add train,
//! sample, eval, tokenizer and bench.

use clap::{Parser, Subcommand};

use crate::error::Result;
use crate::gpu::context::{choose, instance, list_adapters, BackendChoice, WANTED_FEATURES};

#[derive(Parser, Debug)]
#[command(name = "wgpt", version, about = "Train GPT-style language models with WGSL compute shaders on any GPU")]
pub struct Cli {
    /// Graphics backend: auto (WGPU_BACKEND if set, else all), vulkan, metal, dx12 or gl.
    #[arg(long, global = true, default_value = "auto")]
    pub backend: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List every adapter (name, backend, device type), the features wgpt uses and the key limits;
    /// marks the one wgpt would pick (WGPU_ADAPTER_NAME filters by name).
    Info,
}

pub fn run(cli: Cli) -> Result<()> {
    let backend = BackendChoice::parse(&cli.backend)?;
    match cli.command {
        Command::Info => info(backend),
    }
}

fn info(backend: BackendChoice) -> Result<()> {
    let backends = backend.backends();
    let inst = instance(backends);
    let adapters = pollster::block_on(list_adapters(&inst, backends));
    if adapters.is_empty() {
        return Err(crate::Error::NoAdapter { detail: format!(" for backends {backends:?}") });
    }
    let chosen = choose(adapters.clone(), std::env::var("WGPU_ADAPTER_NAME").ok().as_deref()).map(|a| a.get_info());
    for a in &adapters {
        let i = a.get_info();
        let mark = if chosen.as_ref() == Some(&i) { "*" } else { " " };
        println!("{mark} {} ({:?}, {:?}) driver: {} {}", i.name, i.backend, i.device_type, i.driver, i.driver_info);
        let f = a.features();
        let feat = |x: wgpu::Features, n: &str| format!("{n}={}", if f.contains(x) { "yes" } else { "no" });
        println!(
            "    features: {} {} {}",
            feat(wgpu::Features::SHADER_F16, "shader-f16"),
            feat(wgpu::Features::SUBGROUP, "subgroups"),
            feat(wgpu::Features::TIMESTAMP_QUERY, "timestamps")
        );
        let _ = WANTED_FEATURES;
        let l = a.limits();
        println!(
            "    limits: max_buffer_size={} max_storage_buffer_binding_size={} storage_buffers_per_stage={} workgroup_storage={} invocations_per_workgroup={} workgroups_per_dim={} storage_offset_alignment={}",
            l.max_buffer_size,
            l.max_storage_buffer_binding_size,
            l.max_storage_buffers_per_shader_stage,
            l.max_compute_workgroup_storage_size,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroups_per_dimension,
            l.min_storage_buffer_offset_alignment
        );
    }
    println!("(* = the adapter wgpt uses: a real GPU is preferred over a software one)");
    Ok(())
}
