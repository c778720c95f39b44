// GELU, tanh form. Forward: out = 0.5 x (1 + tanh(k (x + 0.044715 x^3))), k = sqrt(2/pi).
// Backward: dx (+)= dout * (0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 * 0.044715 x^2)).

const K: f32 = 0.7978845608028654;
const A: f32 = 0.044715;
// 1 + tanh(u) = 2 sigmoid(2u) and 1 - tanh(u) = 2 sigmoid(-2u): written this way, both stay
// accurate where tanh is near -1 or 1 (1 + tanh(u) there would cancel to a few bits in f32).
// u is clamped so exp stays finite on every backend.
fn halves(x: f32) -> vec2f {
    let u = clamp(K * (x + A * x * x * x), -15.0, 15.0);
    return vec2f(1.0 / (1.0 + exp(-2.0 * u)), 1.0 / (1.0 + exp(2.0 * u)));  // (1 + t) / 2, (1 - t) / 2
}

struct Params { n: u32, acc: u32 }
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read_write> out: array<st>;  // (n)
@group(0) @binding(2) var<storage, read_write> x: array<st>;    // (n)

@compute @workgroup_size(WG)
fn gelu_forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    let v = f32(x[i]);
    out[i] = st(v * halves(v).x);
}

@group(0) @binding(3) var<storage, read_write> dx: array<st>;    // (n)
@group(0) @binding(4) var<storage, read_write> dout: array<st>;  // (n)

@compute @workgroup_size(WG)
fn gelu_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    let v = f32(x[i]);
    let h = halves(v);
    let d = h.x + 2.0 * v * h.x * h.y * K * (1.0 + 3.0 * A * v * v);
    dx[i] = st(accumulate(f32(dx[i]), f32(dout[i]) * d, p.acc));
}
