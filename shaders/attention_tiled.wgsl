// ---- Variant `tiled` of the attention kernels (appended to attention.wgsl): shaped for GPUs.
//
// A workgroup of 64 invocations takes 64 consecutive rows (queries; keys in the dK/dV kernel) of
// one (b, h), one row per invocation, and streams the other side through workgroup memory in tiles
// of KT rows: each k, v (or q, dout) element is read from global memory once per 64 rows, and the
// reads from the tile are the same address for every invocation (a broadcast). Per-invocation
// state is one row (HS floats per array), where the `rows` kernels keep 8 rows per invocation in
// private arrays, which spill on a GPU. The arithmetic of each row is the `rows` kernels' in the
// same order: keys (queries) one by one, channels in order, the same online softmax.
//
// Workgroup memory: two tiles of KT x MAX_HS f32, 16 KiB at HS = 128 (WebGPU's default limit).

const KT: u32 = 16u;
var<workgroup> tile_a: array<f32, KT * MAX_HS>;
var<workgroup> tile_b: array<f32, KT * MAX_HS>;

// The workgroup's (b, h) and first row: workgroups are numbered (b, h) fastest, last rows first
// (longest loops first) when `late_first`.
struct Rows { bh: u32, r0: u32 }

fn rows_of(g: u32, late_first: bool) -> Rows {
    let nbh = p.b * p.nh;
    let nblk = (p.t + 63u) / 64u;
    let k = g / nbh;
    return Rows(g % nbh, select(k, nblk - 1u - k, late_first) * 64u);
}

fn num_row_groups() -> u32 {
    return p.b * p.nh * ((p.t + 63u) / 64u);
}

// Rows s0 .. s0 + KT - 1 of k into `tile_a` and of v into `tile_b` (rows past T read row T - 1).
fn load_kv(base: u32, s0: u32, lid: u32) {
    let c = p.nh * p.hs;
    for (var i = lid; i < KT * p.hs; i += 64u) {
        let s = min(s0 + i / p.hs, p.t - 1u);
        let o = base + s * 3u * c + c + i % p.hs;
        tile_a[i] = f32(qkv[o]);
        tile_b[i] = f32(qkv[o + c]);
    }
}

// Rows t0 .. t0 + KT - 1 of q into `tile_a` and of dout into `tile_b`.
fn load_qg(base: u32, obase: u32, t0: u32, lid: u32) {
    let c = p.nh * p.hs;
    for (var i = lid; i < KT * p.hs; i += 64u) {
        let t = min(t0 + i / p.hs, p.t - 1u);
        tile_a[i] = f32(qkv[base + t * 3u * c + i % p.hs]);
        tile_b[i] = f32(dout[obase + t * c + i % p.hs]);
    }
}

@compute @workgroup_size(64)
fn attention_forward_tiled(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let g = wid.y * nwg.x + wid.x;
    if (g >= num_row_groups()) { return; }  // whole workgroups only: barriers below
    let rg = rows_of(g, true);
    let base = qkv_base(rg.bh);
    let c = p.nh * p.hs;
    let stride = 3u * c;
    let t = min(rg.r0 + lid, p.t - 1u);
    let last = min(rg.r0 + 63u, p.t - 1u);

    var q: array<f32, MAX_HS>;
    var o: array<f32, MAX_HS>;
    for (var d = 0u; d < p.hs; d++) {
        q[d] = f32(qkv[base + t * stride + d]);
    }
    var m = 0.0;
    var l = 0.0;
    for (var s0 = 0u; s0 <= last; s0 += KT) {
        workgroupBarrier();
        load_kv(base, s0, lid);
        workgroupBarrier();
        // The same bounds for every invocation, no break or continue: the barriers above stay in
        // uniform control flow (Tint checks that); keys past this row are skipped.
        for (var j = 0u; j < KT; j++) {
            let s = s0 + j;
            if (s <= t) {
                var x = 0.0;
                for (var d = 0u; d < p.hs; d++) {
                    x += q[d] * tile_a[j * p.hs + d];
                }
                x *= p.scale;
                if (s == 0u) {
                    // Key 0 starts the running max, sum and output, as in `attention_forward`.
                    m = x;
                    l = 1.0;
                    for (var d = 0u; d < p.hs; d++) {
                        o[d] = tile_b[j * p.hs + d];
                    }
                } else {
                    let mn = max(m, x);
                    let f = exp(m - mn);
                    let e = exp(x - mn);
                    m = mn;
                    l = l * f + e;
                    for (var d = 0u; d < p.hs; d++) {
                        o[d] = o[d] * f + e * tile_b[j * p.hs + d];
                    }
                }
            }
        }
    }
    let row = rg.r0 + lid;
    if (row < p.t) {
        let inv = 1.0 / l;
        let oo = out_base(rg.bh) + row * c;
        for (var d = 0u; d < p.hs; d++) {
            out[oo + d] = st(o[d] * inv);
        }
        lse[rg.bh * p.t + row] = m + log(l);
    }
}

// dq_t = scale * sum over s <= t of p_ts (dout_t . v_s - D_t) k_s, and D_t = dout_t . out_t, one
// query row per invocation with k and v tiles shared.
@compute @workgroup_size(64)
fn attention_backward_dq_tiled(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let g = wid.y * nwg.x + wid.x;
    if (g >= num_row_groups()) { return; }
    let rg = rows_of(g, true);
    let base = qkv_base(rg.bh);
    let c = p.nh * p.hs;
    let stride = 3u * c;
    let t = min(rg.r0 + lid, p.t - 1u);
    let last = min(rg.r0 + 63u, p.t - 1u);
    let oo = out_base(rg.bh) + t * c;

    var q: array<f32, MAX_HS>;
    var gr: array<f32, MAX_HS>;
    var dq: array<f32, MAX_HS>;
    var dd = 0.0;
    for (var d = 0u; d < p.hs; d++) {
        q[d] = f32(qkv[base + t * stride + d]);
        gr[d] = f32(dout[oo + d]);
        dd += gr[d] * f32(out[oo + d]);
        dq[d] = 0.0;
    }
    let m = lse[rg.bh * p.t + t];
    for (var s0 = 0u; s0 <= last; s0 += KT) {
        workgroupBarrier();
        load_kv(base, s0, lid);
        workgroupBarrier();
        for (var j = 0u; j < KT; j++) {
            if (s0 + j <= t) {
                var x = 0.0;
                var dp = 0.0;
                for (var d = 0u; d < p.hs; d++) {
                    x += q[d] * tile_a[j * p.hs + d];
                    dp += gr[d] * tile_b[j * p.hs + d];
                }
                let ds = exp(x * p.scale - m) * (dp - dd);
                for (var d = 0u; d < p.hs; d++) {
                    dq[d] += ds * tile_a[j * p.hs + d];
                }
            }
        }
    }
    let row = rg.r0 + lid;
    if (row < p.t) {
        dsum[rg.bh * p.t + row] = dd;
        let o = base + row * stride;
        for (var d = 0u; d < p.hs; d++) {
            store_grad(o + d, dq[d] * p.scale);
        }
    }
}

// After attention_backward_dq_tiled wrote D: over queries t >= s, dv_s = sum p_ts dout_t and
// dk_s = scale * sum p_ts (dout_t . v_s - D_t) q_t, one key row per invocation with q and dout
// tiles shared.
@compute @workgroup_size(64)
fn attention_backward_dkv_tiled(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    let g = wid.y * nwg.x + wid.x;
    if (g >= num_row_groups()) { return; }
    let rg = rows_of(g, false);
    let base = qkv_base(rg.bh);
    let obase = out_base(rg.bh);
    let c = p.nh * p.hs;
    let stride = 3u * c;
    let s = min(rg.r0 + lid, p.t - 1u);
    let row0 = rg.bh * p.t;

    var k: array<f32, MAX_HS>;
    var v: array<f32, MAX_HS>;
    var dk: array<f32, MAX_HS>;
    var dv: array<f32, MAX_HS>;
    for (var d = 0u; d < p.hs; d++) {
        k[d] = f32(qkv[base + s * stride + c + d]);
        v[d] = f32(qkv[base + s * stride + 2u * c + d]);
        dk[d] = 0.0;
        dv[d] = 0.0;
    }
    for (var t0 = rg.r0; t0 < p.t; t0 += KT) {
        workgroupBarrier();
        load_qg(base, obase, t0, lid);
        workgroupBarrier();
        for (var j = 0u; j < KT; j++) {
            let t = t0 + j;
            if (t < p.t && t >= s) {
                var x = 0.0;
                for (var d = 0u; d < p.hs; d++) {
                    x += k[d] * tile_a[j * p.hs + d];
                }
                let pr = exp(x * p.scale - lse[row0 + t]);
                var dp = 0.0;
                for (var d = 0u; d < p.hs; d++) {
                    let gd = tile_b[j * p.hs + d];
                    dp += v[d] * gd;
                    dv[d] += pr * gd;
                }
                let ds = pr * (dp - dsum[row0 + t]);
                for (var d = 0u; d < p.hs; d++) {
                    dk[d] += ds * tile_a[j * p.hs + d];
                }
            }
        }
    }
    let row = rg.r0 + lid;
    if (row < p.t) {
        let o = base + row * stride + c;
        for (var d = 0u; d < p.hs; d++) {
            store_grad(o + d, dk[d] * p.scale);
            store_grad(o + c + d, dv[d]);
        }
    }
}
