// Causal multi-head self-attention, unfused textbook form: the O(T^2) reference for the flash
// kernels of attention.wgsl, never used in training. The (B, NH, T, T) score, probability and
// probability-gradient matrices live in memory (f32 whatever the storage type); every kernel is
// one invocation per output element (per row for the two row reductions), sums run in a fixed
// order and nothing is atomic, so results are deterministic. Masked entries (key s > query t) are
// 0 in P and dS, and the products P V, dS K, dS^T Q, P^T dO sum over all T keys or queries.
//
// Bindings share numbers with attention.wgsl where the tensors are the same.

struct Params {
    b: u32,      // B
    t: u32,      // T
    nh: u32,     // NH
    hs: u32,     // HS; C = NH * HS
    scale: f32,  // 1 / sqrt(HS)
    acc: u32,    // backward: add to dqkv instead of overwriting
}
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read_write> out: array<st>;     // (B, T, C) heads merged
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;    // (B, NH, T) log-sum-exp per row
@group(0) @binding(3) var<storage, read_write> qkv: array<st>;     // (B, T, 3C) q | k | v
@group(0) @binding(4) var<storage, read_write> dqkv: array<st>;    // (B, T, 3C)
@group(0) @binding(5) var<storage, read_write> probs: array<f32>;  // (B, NH, T, T) S, then P
@group(0) @binding(6) var<storage, read_write> dout: array<st>;    // (B, T, C)
@group(0) @binding(7) var<storage, read_write> dprobs: array<f32>; // (B, NH, T, T) dP, then dS

// Element d of the q (part 0), k (1) or v (2) row of head h at position (b, t).
fn qkv_at(b: u32, t: u32, part: u32, h: u32, d: u32) -> f32 {
    let c = p.nh * p.hs;
    return f32(qkv[(b * p.t + t) * 3u * c + part * c + h * p.hs + d]);
}

// Index of (b, t, h * HS + d) in out and dout.
fn bthd(b: u32, t: u32, h: u32, d: u32) -> u32 {
    return (b * p.t + t) * p.nh * p.hs + h * p.hs + d;
}

// Index of (bh, t, s) in probs and dprobs, bh = b * NH + h.
fn pidx(bh: u32, t: u32, s: u32) -> u32 {
    return (bh * p.t + t) * p.t + s;
}

// One invocation per (b, h, t, s): S = scale * q_t . k_s, 0 where s > t (masked; the softmax
// never reads it).
@compute @workgroup_size(WG)
fn attention_unfused_scores(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.b * p.nh * p.t * p.t) { return; }
    let s = i % p.t;
    let t = (i / p.t) % p.t;
    let bh = i / (p.t * p.t);
    let b = bh / p.nh;
    let h = bh % p.nh;
    var x = 0.0;
    if (s <= t) {
        for (var d = 0u; d < p.hs; d++) {
            x += qkv_at(b, t, 0u, h, d) * qkv_at(b, s, 1u, h, d);
        }
        x *= p.scale;
    }
    probs[i] = x;
}

// One invocation per row (b, h, t): m = max over s <= t, l = sum exp(S - m), lse = m + log l,
// and P = exp(S - m) / l over s <= t, 0 after, in place over S.
@compute @workgroup_size(WG)
fn attention_unfused_softmax(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let row = flat_index(wid, nwg, lid);
    if (row >= p.b * p.nh * p.t) { return; }
    let t = row % p.t;
    let bh = row / p.t;
    var m = probs[pidx(bh, t, 0u)];
    for (var s = 1u; s <= t; s++) {
        m = max(m, probs[pidx(bh, t, s)]);
    }
    var l = 0.0;
    for (var s = 0u; s <= t; s++) {
        l += exp(probs[pidx(bh, t, s)] - m);
    }
    for (var s = 0u; s < p.t; s++) {
        let j = pidx(bh, t, s);
        probs[j] = select(0.0, exp(probs[j] - m) / l, s <= t);
    }
    lse[row] = m + log(l);
}

// One invocation per (b, t, h * HS + d) of out: out = P V, summed over all T keys.
@compute @workgroup_size(WG)
fn attention_unfused_out(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    let c = p.nh * p.hs;
    if (i >= p.b * p.t * c) { return; }
    let d = i % p.hs;
    let h = (i / p.hs) % p.nh;
    let t = (i / c) % p.t;
    let b = i / (p.t * c);
    let bh = b * p.nh + h;
    var o = 0.0;
    for (var s = 0u; s < p.t; s++) {
        o += probs[pidx(bh, t, s)] * qkv_at(b, s, 2u, h, d);
    }
    out[i] = st(o);
}

// One invocation per (b, h, t, s): dP = dout_t . v_s (dP = dO V^T), for every s.
@compute @workgroup_size(WG)
fn attention_unfused_dprobs(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.b * p.nh * p.t * p.t) { return; }
    let s = i % p.t;
    let t = (i / p.t) % p.t;
    let bh = i / (p.t * p.t);
    let b = bh / p.nh;
    let h = bh % p.nh;
    var x = 0.0;
    for (var d = 0u; d < p.hs; d++) {
        x += f32(dout[bthd(b, t, h, d)]) * qkv_at(b, s, 2u, h, d);
    }
    dprobs[i] = x;
}

// One invocation per row (b, h, t): the softmax backward dS = P * (dP - rowsum(dP * P)), in place
// over dP (0 where s > t, since P is).
@compute @workgroup_size(WG)
fn attention_unfused_softmax_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let row = flat_index(wid, nwg, lid);
    if (row >= p.b * p.nh * p.t) { return; }
    let t = row % p.t;
    let bh = row / p.t;
    var dd = 0.0;
    for (var s = 0u; s < p.t; s++) {
        dd += dprobs[pidx(bh, t, s)] * probs[pidx(bh, t, s)];
    }
    for (var s = 0u; s < p.t; s++) {
        let j = pidx(bh, t, s);
        dprobs[j] = probs[j] * (dprobs[j] - dd);
    }
}

// One invocation per element (b, t, part * C + h * HS + d) of dqkv:
//   q: dq_t = scale * sum_s dS_ts k_s   (scale * dS K)
//   k: dk_t = scale * sum_u dS_ut q_u   (scale * dS^T Q)
//   v: dv_t = sum_u P_ut dout_u         (P^T dO)
// written or added to dqkv as `p.acc` says.
@compute @workgroup_size(WG)
fn attention_unfused_dqkv(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    let c = p.nh * p.hs;
    if (i >= p.b * p.t * 3u * c) { return; }
    let d = i % p.hs;
    let h = (i / p.hs) % p.nh;
    let part = (i / c) % 3u;
    let t = (i / (3u * c)) % p.t;
    let b = i / (p.t * 3u * c);
    let bh = b * p.nh + h;
    var g = 0.0;
    if (part == 0u) {
        for (var s = 0u; s < p.t; s++) {
            g += dprobs[pidx(bh, t, s)] * qkv_at(b, s, 1u, h, d);
        }
        g *= p.scale;
    } else if (part == 1u) {
        for (var u = 0u; u < p.t; u++) {
            g += dprobs[pidx(bh, u, t)] * qkv_at(b, u, 0u, h, d);
        }
        g *= p.scale;
    } else {
        for (var u = 0u; u < p.t; u++) {
            g += probs[pidx(bh, u, t)] * f32(dout[bthd(b, u, h, d)]);
        }
    }
    dqkv[i] = st(accumulate(f32(dqkv[i]), g, p.acc));
}
