// AdamW over a flat range of parameters, with gradient clipping and loss scaling folded in: the
// gradient is multiplied by the clip factor norm_final computed on the GPU and divided by the loss
// scale. When norm_final flagged the gradients as overflowed (inf or NaN), nothing is written: the
// step is skipped. Learning rate, bias corrections and loss scale come from a small host-written
// tensor (they change every step; the uniform is built once). With fp16 storage the `_copy`
// entry points also refresh the f16 copy of the weights that the forward and backward kernels read.

struct Params { n: u32, beta1: f32, beta2: f32, eps: f32, weight_decay: f32, clip_index: u32 }
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read_write> param: array<f32>;  // (n) f32 master weights
@group(0) @binding(2) var<storage, read_write> grad: array<st>;    // (n)
@group(0) @binding(3) var<storage, read_write> m: array<f32>;      // (n) first moment
@group(0) @binding(4) var<storage, read_write> v: array<f32>;      // (n) second moment
@group(0) @binding(5) var<storage, read_write> hyper: array<f32>;  // [lr, 1 − beta1^t, 1 − beta2^t, loss scale]
@group(0) @binding(6) var<storage, read_write> norm: array<f32>;   // [.., clip factor, skip flag] from clip_index
@group(0) @binding(11) var<storage, read_write> copy: array<st>;   // (n) compute copy of param

// The same four tensors as vec4s, used when n is a multiple of 4 (p.n then counts vec4s): on CPU
// backends each storage access at a per-invocation address is a loop over the SIMD lanes, so
// vec4 accesses, several per invocation, cut that overhead.
@group(0) @binding(7) var<storage, read_write> param4: array<vec4f>;
@group(0) @binding(8) var<storage, read_write> grad4: array<vec4<st>>;
@group(0) @binding(9) var<storage, read_write> m4: array<vec4f>;
@group(0) @binding(10) var<storage, read_write> v4: array<vec4f>;
@group(0) @binding(12) var<storage, read_write> copy4: array<vec4<st>>;

// Scalars shared by every element, read once per invocation before any branch.
struct Step { lr: f32, bc1: f32, bc2: f32, gscale: f32, skip: bool }

fn step_scalars() -> Step {
    return Step(hyper[0], hyper[1], hyper[2], norm[p.clip_index] / hyper[3], norm[p.clip_index + 1u] != 0.0);
}

// Decoupled decay first, then the Adam step, in the order torch.optim.AdamW applies them.
// Returns (param, m, v).
fn adamw(k: Step, w: vec4f, g0: vec4f, m0: vec4f, v0: vec4f) -> array<vec4f, 3> {
    let g = g0 * k.gscale;
    let mi = p.beta1 * m0 + (1.0 - p.beta1) * g;
    let vi = p.beta2 * v0 + (1.0 - p.beta2) * g * g;
    var wi = w * (1.0 - k.lr * p.weight_decay);
    wi -= k.lr * (mi / k.bc1) / (sqrt(vi / k.bc2) + p.eps);
    return array<vec4f, 3>(wi, mi, vi);
}

// Updates element i (or vec4 i) of param, m and v; returns the new weights.
fn update1(k: Step, i: u32) -> f32 {
    let r = adamw(k, vec4f(param[i]), vec4f(f32(grad[i])), vec4f(m[i]), vec4f(v[i]));
    m[i] = r[1].x;
    v[i] = r[2].x;
    param[i] = r[0].x;
    return r[0].x;
}

fn update4(k: Step, i: u32) -> vec4f {
    let r = adamw(k, param4[i], vec4f(grad4[i]), m4[i], v4[i]);
    m4[i] = r[1];
    v4[i] = r[2];
    param4[i] = r[0];
    return r[0];
}

@compute @workgroup_size(WG)
fn adamw_update(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let k = step_scalars();
    let i = flat_index(wid, nwg, lid);
    if (i < p.n && !k.skip) { update1(k, i); }
}

@compute @workgroup_size(WG)
fn adamw_update_copy(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let k = step_scalars();
    let i = flat_index(wid, nwg, lid);
    if (i < p.n && !k.skip) { copy[i] = st(update1(k, i)); }
}

// Invocation (group g, lane l) handles vec4s (4 g + j) * WG + l, j < 4 (coalesced on GPUs).
@compute @workgroup_size(WG)
fn adamw_update4(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let k = step_scalars();
    for (var j = 0u; j < 4u; j++) {
        let i = vec4_index(wid, nwg, lid, j);
        if (i < p.n && !k.skip) { update4(k, i); }
    }
}

@compute @workgroup_size(WG)
fn adamw_update_copy4(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let k = step_scalars();
    for (var j = 0u; j < 4u; j++) {
        let i = vec4_index(wid, nwg, lid, j);
        if (i < p.n && !k.skip) { copy4[i] = vec4<st>(update4(k, i)); }
    }
}
