// GELU, tanh form. Forward: out = 0.5 x (1 + tanh(k (x + 0.044715 x^3))), k = sqrt(2/pi).
// Backward: dx (+)= dout * (0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 * 0.044715 x^2)).

const K: f32 = 0.7978845608028654;
const A: f32 = 0.044715;
// 1 + tanh(u) = 2 sigmoid(2u) and 1 - tanh(u) = 2 sigmoid(-2u): written this way, both stay
// accurate where tanh is near -1 or 1 (1 + tanh(u) there would cancel to a few bits in f32).
// u is clamped so exp stays finite on every backend.
// One exp serves both: with e = exp(-2u), (1 + t) / 2 = 1 / (1 + e) and (1 - t) / 2 = e / (1 + e).
fn halves(x: vec4f) -> array<vec4f, 2> {
    let u = clamp(K * (x + A * x * x * x), vec4f(-15.0), vec4f(15.0));
    let e = exp(-2.0 * u);
    let h = 1.0 / (1.0 + e);
    return array<vec4f, 2>(h, e * h);  // (1 + t) / 2, (1 - t) / 2
}

fn fwd(v: vec4f) -> vec4f {
    return v * halves(v)[0];
}

fn bwd(v: vec4f, g: vec4f) -> vec4f {
    let h = halves(v);
    return g * (h[0] + 2.0 * v * h[0] * h[1] * K * (1.0 + 3.0 * A * v * v));
}

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
    out[i] = st(fwd(vec4f(f32(x[i])))[0]);
}

@compute @workgroup_size(WG)
fn gelu_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    let d = bwd(vec4f(f32(x[i])), vec4f(f32(dout[i])))[0];
    dx[i] = st(accumulate(f32(dx[i]), d, p.acc));
}

@compute @workgroup_size(WG)
fn gelu_forward4(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    for (var j = 0u; j < 4u; j++) {
        let i = vec4_index(wid, nwg, lid, j);
        if (i < p.n) {
            out4[i] = vec4<st>(fwd(vec4f(x4[i])));
        }
    }
}

@compute @workgroup_size(WG)
fn gelu_backward4(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    for (var j = 0u; j < 4u; j++) {
        let i = vec4_index(wid, nwg, lid, j);
        if (i < p.n) {
            let d = bwd(vec4f(x4[i]), vec4f(dout4[i]));
            let old = vec4f(dx4[i]);
            dx4[i] = vec4<st>(select(d, old + d, p.acc != 0u));
        }
    }
}
