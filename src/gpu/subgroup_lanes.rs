//! Whether the adapter's subgroups are exactly 8 wide and made of 8 consecutive invocations
//! (lane = local index % 8). Attention's `shared` variant maps its lanes by that layout and
//! broadcasts between them, so the layout is checked once per device by a small kernel rather
//! than in every kernel: a fallback inside the kernels made LLVM compile each twice (115 s on
//! lavapipe) and a test in their inner loops made the forward 26–38 ms instead of 22.

const PROBE: &str = r#"
@group(0) @binding(0) var<storage, read_write> ok: array<u32>;

@compute @workgroup_size(64)
fn probe(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) lane: u32, @builtin(subgroup_size) size: u32) {
    let i = wid.x * 64u + li;
    let first = subgroupBroadcast(i, 0u);
    let lanes = subgroupAdd(1u);
    ok[i] = select(0u, 1u, size == 8u && lanes == 8u && lane == li % 8u && first + lane == i);
}
"#;

/// Workgroups of the probe: a few, so more than one is in flight.
const GROUPS: u32 = 4;

/// Runs the probe (native adapters with the SUBGROUP feature and 8-wide subgroups; false
/// elsewhere, and if anything about the probe fails).
pub async fn consecutive_lanes_of_8(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    gpu_sizes: (u32, u32),
    features: wgpu::Features,
) -> bool {
    if cfg!(target_arch = "wasm32") || !features.contains(wgpu::Features::SUBGROUP) || gpu_sizes != (8, 8) {
        return false;
    }
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("subgroup lanes probe"),
        source: wgpu::ShaderSource::Wgsl(PROBE.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("subgroup lanes probe"),
        layout: None,
        module: &module,
        entry_point: Some("probe"),
        compilation_options: Default::default(),
        cache: None,
    });
    let n = (GROUPS * 64) as u64;
    let out = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("subgroup lanes probe"),
        size: n * 4,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let read = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("subgroup lanes probe readback"),
        size: n * 4,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry { binding: 0, resource: out.as_entire_binding() }],
    });
    let mut enc = device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(GROUPS, 1, 1);
    }
    enc.copy_buffer_to_buffer(&out, 0, &read, 0, n * 4);
    queue.submit([enc.finish()]);
    if scope.pop().await.is_some() || super::executor::map_read(device, &read).await.is_err() {
        return false;
    }
    let ok = match read.get_mapped_range(..) {
        Ok(bytes) => bytemuck::cast_slice::<u8, u32>(&bytes).iter().all(|&v| v == 1),
        Err(_) => false,
    };
    read.unmap();
    ok
}
