// Fused softmax cross-entropy over the vocabulary. Forward: per-row loss = logsumexp(logits) −
// logits[target] in f32 (max subtracted first), keeping the log-sum-exp for backward. Backward:
// dlogits = (softmax − onehot) · scale, written in place over the logits (they are not needed again).
// The logits may be one chunk of rows: row r of the chunk is row row0 + r of the per-row tensors.

struct Params { rows: u32, V: u32, scale: f32, row0: u32 }
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read_write> losses: array<f32>;   // (row0 + rows)
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;      // (row0 + rows)
@group(0) @binding(3) var<storage, read_write> logits: array<st>;    // (rows, V); backward: dlogits
@group(0) @binding(4) var<storage, read_write> targets: array<u32>;  // (row0 + rows)

// One invocation per row, one pass with a running maximum (online softmax).
@compute @workgroup_size(WG)
fn xent_forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let r = flat_index(wid, nwg, lid);
    if (r >= p.rows) { return; }
    let base = r * p.V;
    var m = -3.4e38;
    var s = 0.0;
    for (var v = 0u; v < p.V; v++) {
        let x = f32(logits[base + v]);
        if (x > m) {
            s = s * exp(m - x) + 1.0;
            m = x;
        } else {
            s += exp(x - m);
        }
    }
    let l = m + log(s);
    lse[p.row0 + r] = l;
    losses[p.row0 + r] = l - f32(logits[base + targets[p.row0 + r]]);
}

// dlogits_i = (softmax_i - onehot_i) * scale, in f32 until the store.
fn dlogit(i: u32, scale: f32) -> st {
    let r = p.row0 + i / p.V;
    let prob = exp(f32(logits[i]) - lse[r]);
    return st((prob - select(0.0, 1.0, i % p.V == targets[r])) * scale);
}

// One invocation per logit. `scale` is dLoss/dloss_row (1/rows for the mean loss).
@compute @workgroup_size(WG)
fn xent_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.rows * p.V) { return; }
    logits[i] = dlogit(i, p.scale);
}

// The training step's variant: the scale also carries the loss scale hyper[3], which the host
// changes between steps (dynamic loss scaling keeps small f16 gradients from flushing to zero).
@group(0) @binding(5) var<storage, read_write> hyper: array<f32>;  // [lr, 1 − beta1^t, 1 − beta2^t, loss scale]

@compute @workgroup_size(WG)
fn xent_backward_scaled(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let loss_scale = hyper[3];
    let i = flat_index(wid, nwg, lid);
    if (i >= p.rows * p.V) { return; }
    logits[i] = dlogit(i, p.scale * loss_scale);
}
