// GELU, tanh form. Forward: out = 0.5 x (1 + tanh(k (x + 0.044715 x^3))), k = sqrt(2/pi).
// Backward: dx (+)= dout * (0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 * 0.044715 x^2)).

// The math is in gelu_fn.wgsl.

struct Params { n: u32, acc: u32 }
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read_write> out: array<st>;  // (n)
@group(0) @binding(2) var<storage, read_write> x: array<st>;    // (n)
@group(0) @binding(3) var<storage, read_write> dx: array<st>;    // (n)
@group(0) @binding(4) var<storage, read_write> dout: array<st>;  // (n)

// The same tensors seen as vec4s, used when n is a multiple of 4 (p.n then counts vec4s; each
// invocation handles 4 of them at a stride of WG, coalesced on GPUs). On CPU backends (lavapipe) a
// storage access at a per-invocation address costs a scalar loop over the SIMD lanes, so one
// vec4 access moves 4 elements for little more than the price of one.
@group(0) @binding(5) var<storage, read_write> out4: array<vec4<st>>;  // (n / 4)
@group(0) @binding(6) var<storage, read_write> x4: array<vec4<st>>;    // (n / 4)
@group(0) @binding(7) var<storage, read_write> dx4: array<vec4<st>>;   // (n / 4)
@group(0) @binding(8) var<storage, read_write> dout4: array<vec4<st>>; // (n / 4)

@compute @workgroup_size(WG)
fn gelu_forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    out[i] = st(gelu_fwd(vec4f(f32(x[i])))[0]);
}

@compute @workgroup_size(WG)
fn gelu_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    let d = gelu_bwd(vec4f(f32(x[i])), vec4f(f32(dout[i])))[0];
    dx[i] = st(accumulate(f32(dx[i]), d, p.acc));
}

@compute @workgroup_size(WG)
fn gelu_forward4(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    for (var j = 0u; j < 4u; j++) {
        let i = vec4_index(wid, nwg, lid, j);
        if (i < p.n) {
            out4[i] = vec4<st>(gelu_fwd(vec4f(x4[i])));
        }
    }
}

@compute @workgroup_size(WG)
fn gelu_backward4(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    for (var j = 0u; j < 4u; j++) {
        let i = vec4_index(wid, nwg, lid, j);
        if (i < p.n) {
            let d = gelu_bwd(vec4f(x4[i]), vec4f(dout4[i]));
            let old = vec4f(dx4[i]);
            dx4[i] = vec4<st>(select(d, old + d, p.acc != 0u));
        }
    }
}
