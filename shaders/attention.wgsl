// Causal multi-head self-attention, flash style: online softmax over keys 0..=t, so memory is
// O(T) per head and the T x T matrix never exists; the backward recomputes p = exp(q.k * scale -
// lse) from the log-sum-exp saved by the forward.
//
// Each invocation handles 4 consecutive rows (queries, or keys in attention_backward_dkv) of one
// (b, h) as the 4 lanes of vec4 values: every k, v (or q, dout) element loaded from memory then
// serves 4 rows, which on software rasterizers (lavapipe, where a storage load costs far more
// than arithmetic) is most of the run time. Row blocks are indexed (b, h, t / 4), t fastest.

// Largest head size HS: rows of q, k, v, dout and the accumulators live in private arrays.
const MAX_HS: u32 = 128u;

struct Params {
    b: u32,      // B
    t: u32,      // T
    nh: u32,     // NH
    hs: u32,     // HS; C = NH * HS
    scale: f32,  // 1 / sqrt(HS)
    acc: u32,    // backward: add to dqkv instead of overwriting
}
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read_write> out: array<st>;   // (B, T, C) heads merged
@group(0) @binding(2) var<storage, read_write> lse: array<f32>;  // (B, NH, T) log-sum-exp per row
@group(0) @binding(3) var<storage, read_write> qkv: array<st>;   // (B, T, 3C) q | k | v

// The row block of invocation i: bh = b * NH + h, first row t0, and the 4 rows t0 .. t0 + 3
// clamped to T - 1 (rows past T compute a copy of row T - 1 and store nothing).
struct Block { bh: u32, t0: u32, rows: vec4u, clamped: vec4u, last: u32 }

fn block(i: u32) -> Block {
    let nblk = (p.t + 3u) / 4u;
    let t0 = (i % nblk) * 4u;
    let rows = vec4u(t0) + vec4u(0u, 1u, 2u, 3u);
    let last = min(t0 + 3u, p.t - 1u);
    return Block(i / nblk, t0, rows, min(rows, vec4u(last)), last);
}

fn num_blocks() -> u32 {
    return p.b * p.nh * ((p.t + 3u) / 4u);
}

// Element of q for (b, t = 0, h) in qkv; k and v follow at + C and + 2C.
fn qkv_base(bh: u32) -> u32 {
    return (bh / p.nh) * p.t * 3u * p.nh * p.hs + (bh % p.nh) * p.hs;
}

// Element (b, t = 0, h * HS) of out and dout.
fn out_base(bh: u32) -> u32 {
    return (bh / p.nh) * p.t * p.nh * p.hs + (bh % p.nh) * p.hs;
}

// One invocation per block of 4 query rows: online softmax over keys 0 ..= last row.
@compute @workgroup_size(WG)
fn attention_forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= num_blocks()) { return; }
    let blk = block(i);
    let base = qkv_base(blk.bh);
    let c = p.nh * p.hs;
    let stride = 3u * c;  // qkv elements per position

    var q: array<vec4f, MAX_HS>;  // q[d][r]: channel d of row r
    var o: array<vec4f, MAX_HS>;
    let qo = vec4u(base) + blk.clamped * stride;
    for (var d = 0u; d < p.hs; d++) {
        q[d] = vec4f(f32(qkv[qo.x + d]), f32(qkv[qo.y + d]), f32(qkv[qo.z + d]), f32(qkv[qo.w + d]));
    }
    // Key 0 (seen by every row) starts the running max m, the running sum l = sum exp(x - m)
    // and o = sum exp(x - m) v.
    var x0 = vec4f(0.0);
    for (var d = 0u; d < p.hs; d++) {
        x0 += q[d] * f32(qkv[base + c + d]);
    }
    var m = x0 * p.scale;
    var l = vec4f(1.0);
    for (var d = 0u; d < p.hs; d++) {
        o[d] = vec4f(f32(qkv[base + 2u * c + d]));
    }
    for (var s = 1u; s <= blk.last; s++) {
        let ko = base + s * stride + c;
        var x = vec4f(0.0);
        for (var d = 0u; d < p.hs; d++) {
            x += q[d] * f32(qkv[ko + d]);
        }
        x *= p.scale;
        // Causal mask: rows t < s keep m, l and o (factor 1, weight 0).
        let live = vec4u(s) <= blk.rows;
        let mn = select(m, max(m, x), live);
        let r = exp(m - mn);
        let e = select(vec4f(0.0), exp(x - mn), live);
        m = mn;
        l = l * r + e;
        let vo = ko + c;
        for (var d = 0u; d < p.hs; d++) {
            o[d] = o[d] * r + e * f32(qkv[vo + d]);
        }
    }
    let inv = 1.0 / l;
    let ls = m + log(l);
    let ob = out_base(blk.bh);
    for (var r = 0u; r < 4u; r++) {
        let t = blk.t0 + r;
        if (t < p.t) {
            let oo = ob + t * c;
            for (var d = 0u; d < p.hs; d++) {
                out[oo + d] = st(o[d][r] * inv[r]);
            }
            lse[blk.bh * p.t + t] = ls[r];
        }
    }
}

@group(0) @binding(7) var<storage, read_write> probs: array<f32>;  // (B, NH, T, T) attention_probs

// For display: the probabilities p_ts = exp(q_t . k_s * scale - lse_t) of 4 query rows, recomputed
// from the saved log-sum-exp as the backward does (so they sum to 1 whatever kernel made lse),
// written for every key s: 0 above the diagonal (s > t).
@compute @workgroup_size(WG)
fn attention_probs(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= num_blocks()) { return; }
    let blk = block(i);
    let base = qkv_base(blk.bh);
    let c = p.nh * p.hs;
    let stride = 3u * c;

    var q: array<vec4f, MAX_HS>;
    let qo = vec4u(base) + blk.clamped * stride;
    for (var d = 0u; d < p.hs; d++) {
        q[d] = vec4f(f32(qkv[qo.x + d]), f32(qkv[qo.y + d]), f32(qkv[qo.z + d]), f32(qkv[qo.w + d]));
    }
    let row0 = blk.bh * p.t;  // (b, h, t = 0) in lse and the rows of probs
    let m = vec4f(lse[row0 + blk.clamped.x], lse[row0 + blk.clamped.y], lse[row0 + blk.clamped.z], lse[row0 + blk.clamped.w]);
    for (var s = 0u; s < p.t; s++) {
        var x = vec4f(0.0);
        if (s <= blk.last) {
            let ko = base + s * stride + c;
            for (var d = 0u; d < p.hs; d++) {
                x += q[d] * f32(qkv[ko + d]);
            }
        }
        let e = select(vec4f(0.0), exp(x * p.scale - m), vec4u(s) <= blk.rows);
        for (var r = 0u; r < 4u; r++) {
            let t = blk.t0 + r;
            if (t < p.t) {
                probs[(row0 + t) * p.t + s] = e[r];
            }
        }
    }
}

@group(0) @binding(4) var<storage, read_write> dqkv: array<st>;   // (B, T, 3C)
@group(0) @binding(5) var<storage, read_write> dsum: array<f32>;  // (B, NH, T) D = rowsum(dout * out)
@group(0) @binding(6) var<storage, read_write> dout: array<st>;   // (B, T, C)

// One invocation per block of 4 query rows t: D_t = dout_t . out_t (saved for
// attention_backward_dkv), then dq_t = scale * sum over s <= t of p_ts (dout_t . v_s - D_t) k_s
// into the q third of dqkv.
@compute @workgroup_size(WG)
fn attention_backward_dq(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= num_blocks()) { return; }
    let blk = block(i);
    let base = qkv_base(blk.bh);
    let c = p.nh * p.hs;
    let stride = 3u * c;

    var q: array<vec4f, MAX_HS>;
    var g: array<vec4f, MAX_HS>;  // dout
    var dq: array<vec4f, MAX_HS>;
    let qo = vec4u(base) + blk.clamped * stride;
    let oo = vec4u(out_base(blk.bh)) + blk.clamped * c;
    var dd = vec4f(0.0);
    for (var d = 0u; d < p.hs; d++) {
        q[d] = vec4f(f32(qkv[qo.x + d]), f32(qkv[qo.y + d]), f32(qkv[qo.z + d]), f32(qkv[qo.w + d]));
        g[d] = vec4f(f32(dout[oo.x + d]), f32(dout[oo.y + d]), f32(dout[oo.z + d]), f32(dout[oo.w + d]));
        dd += g[d] * vec4f(f32(out[oo.x + d]), f32(out[oo.y + d]), f32(out[oo.z + d]), f32(out[oo.w + d]));
        dq[d] = vec4f(0.0);
    }
    let row0 = blk.bh * p.t;  // (b, h, t = 0) in lse and dsum
    let m = vec4f(lse[row0 + blk.clamped.x], lse[row0 + blk.clamped.y], lse[row0 + blk.clamped.z], lse[row0 + blk.clamped.w]);
    for (var s = 0u; s <= blk.last; s++) {
        let ko = base + s * stride + c;
        let vo = ko + c;
        var x = vec4f(0.0);
        var dp = vec4f(0.0);
        for (var d = 0u; d < p.hs; d++) {
            x += q[d] * f32(qkv[ko + d]);
            dp += g[d] * f32(qkv[vo + d]);
        }
        // Causal mask: rows t < s get nothing from key s.
        let ds = select(vec4f(0.0), exp(x * p.scale - m) * (dp - dd), vec4u(s) <= blk.rows);
        for (var d = 0u; d < p.hs; d++) {
            dq[d] += ds * f32(qkv[ko + d]);
        }
    }
    for (var r = 0u; r < 4u; r++) {
        let t = blk.t0 + r;
        if (t < p.t) {
            dsum[row0 + t] = dd[r];
            let o = base + t * stride;
            for (var d = 0u; d < p.hs; d++) {
                dqkv[o + d] = st(accumulate(f32(dqkv[o + d]), dq[d][r] * p.scale, p.acc));
            }
        }
    }
}

// One invocation per block of 4 key rows s, after attention_backward_dq wrote D: over queries
// t >= s, dv_s = sum p_ts dout_t and dk_s = scale * sum p_ts (dout_t . v_s - D_t) q_t, into the
// k and v thirds of dqkv.
@compute @workgroup_size(WG)
fn attention_backward_dkv(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= num_blocks()) { return; }
    let blk = block(i);
    let base = qkv_base(blk.bh);
    let ob = out_base(blk.bh);
    let c = p.nh * p.hs;
    let stride = 3u * c;
    let row0 = blk.bh * p.t;

    var k: array<vec4f, MAX_HS>;
    var v: array<vec4f, MAX_HS>;
    var dk: array<vec4f, MAX_HS>;
    var dv: array<vec4f, MAX_HS>;
    let ko = vec4u(base + c) + blk.clamped * stride;
    let vo = ko + c;
    for (var d = 0u; d < p.hs; d++) {
        k[d] = vec4f(f32(qkv[ko.x + d]), f32(qkv[ko.y + d]), f32(qkv[ko.z + d]), f32(qkv[ko.w + d]));
        v[d] = vec4f(f32(qkv[vo.x + d]), f32(qkv[vo.y + d]), f32(qkv[vo.z + d]), f32(qkv[vo.w + d]));
        dk[d] = vec4f(0.0);
        dv[d] = vec4f(0.0);
    }
    for (var t = blk.t0; t < p.t; t++) {
        let qo = base + t * stride;
        let go = ob + t * c;
        var x = vec4f(0.0);
        for (var d = 0u; d < p.hs; d++) {
            x += k[d] * f32(qkv[qo + d]);
        }
        // Causal mask: query t sees only keys s <= t.
        let pr = select(vec4f(0.0), exp(x * p.scale - lse[row0 + t]), vec4u(t) >= blk.rows);
        var dp = vec4f(0.0);
        for (var d = 0u; d < p.hs; d++) {
            let gd = f32(dout[go + d]);
            dp += v[d] * gd;
            dv[d] += pr * gd;
        }
        let ds = pr * (dp - dsum[row0 + t]);
        for (var d = 0u; d < p.hs; d++) {
            dk[d] += ds * f32(qkv[qo + d]);
        }
    }
    for (var r = 0u; r < 4u; r++) {
        let s = blk.t0 + r;
        if (s < p.t) {
            let o = base + s * stride + c;
            for (var d = 0u; d < p.hs; d++) {
                dqkv[o + d] = st(accumulate(f32(dqkv[o + d]), dk[d][r] * p.scale, p.acc));
                dqkv[o + c + d] = st(accumulate(f32(dqkv[o + c + d]), dv[d][r], p.acc));
            }
        }
    }
}
