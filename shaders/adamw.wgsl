// AdamW over a flat range of parameters, with gradient clipping folded in: the gradient is scaled
// by the clip factor that reduce_final computed on the GPU. Learning rate and bias corrections come
// from a small host-written tensor (they change every step; the uniform is built once).

struct Params { n: u32, beta1: f32, beta2: f32, eps: f32, weight_decay: f32, clip_index: u32 }
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read_write> param: array<f32>;  // (n) f32 master weights
@group(0) @binding(2) var<storage, read_write> grad: array<st>;    // (n)
@group(0) @binding(3) var<storage, read_write> m: array<f32>;      // (n) first moment
@group(0) @binding(4) var<storage, read_write> v: array<f32>;      // (n) second moment
@group(0) @binding(5) var<storage, read_write> hyper: array<f32>;  // [lr, 1 − beta1^t, 1 − beta2^t]
@group(0) @binding(6) var<storage, read_write> norm: array<f32>;   // [.., clip factor at clip_index]

@compute @workgroup_size(WG)
fn adamw_update(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    let lr = hyper[0];
    let g = f32(grad[i]) * norm[p.clip_index];
    let mi = p.beta1 * m[i] + (1.0 - p.beta1) * g;
    let vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    // Decoupled decay first, then the Adam step, in the order torch.optim.AdamW applies them.
    var w = param[i] * (1.0 - lr * p.weight_decay);
    w -= lr * (mi / hyper[1]) / (sqrt(vi / hyper[2]) + p.eps);
    param[i] = w;
}
