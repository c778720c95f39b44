// Causal multi-head self-attention, flash style: online softmax over keys 0..=t, so memory is
// O(T) per head and the T x T matrix never exists; the backward recomputes p = exp(q.k * scale -
// lse) from the log-sum-exp saved by the forward.
//
// Each invocation handles 8 consecutive rows (queries, or keys in attention_backward_dkv) of one
// (b, h) as two vec4 groups, a (rows t0 .. t0 + 3) and b (t0 + 4 .. t0 + 7): every k, v (or q,
// dout) element loaded from memory then serves 8 rows. On software rasterizers (lavapipe, where
// every storage load is a per-lane scalar loop) the loads per multiply-add set the speed; 8 rows
// halve them against 4. The loops over keys (queries in attention_backward_dkv) take KB = 8 at a
// time, so each read of the private row arrays, which lavapipe keeps in memory, serves 8 of them
// too: 4 made the three kernels 1.8x faster there, 8 another 6%. The per-key values sit in small
// arrays indexed only inside loops of constant length KB, which the driver unrolls; with KB = 16
// it did not, and the forward ran 2x slower. Those declared inside a loop are zeroed by an explicit
// initializer: without one, Chromium's Tint left the previous iteration's sums in them (the
// forward was wrong in the browser and right everywhere else). Row blocks are numbered with (b, h) fastest, so
// the invocations that run side by side as SIMD lanes share t0 and loop over the same number of
// keys (with t fastest, the causal mask left about 30% of the lanes idle), and the longest blocks
// come first, so the last workgroups to run are short ones.

// Largest head size HS: rows of q, k, v, dout and the accumulators live in private arrays. The
// Rust side rewrites this to the model's head size (`Dispatch::size`): LLVM's compile time grows
// with the arrays' length.
const MAX_HS: u32 = 128u;

// Rows per invocation.
const R: u32 = 8u;

// Keys (queries in attention_backward_dkv) per step of the loops over them.
const KB: u32 = 8u;

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

// The row block of invocation i: bh = b * NH + h, first row t0, the rows of groups a and b, the
// same clamped to T - 1 (rows past T compute a copy of row T - 1 and store nothing), and the last
// row. `late_first`: blocks of the last rows first (their loops over keys 0 ..= t are the longest).
struct Block { bh: u32, t0: u32, ra: vec4u, rb: vec4u, ca: vec4u, cb: vec4u, last: u32 }

fn block(i: u32, late_first: bool) -> Block {
    let nbh = p.b * p.nh;
    let nblk = (p.t + R - 1u) / R;
    let k = i / nbh;
    let t0 = select(k, nblk - 1u - k, late_first) * R;
    let ra = vec4u(t0) + vec4u(0u, 1u, 2u, 3u);
    let rb = ra + 4u;
    let last = min(t0 + R - 1u, p.t - 1u);
    return Block(i % nbh, t0, ra, rb, min(ra, vec4u(last)), min(rb, vec4u(last)), last);
}

fn num_blocks() -> u32 {
    return p.b * p.nh * ((p.t + R - 1u) / R);
}

// Where the kernels below read the other side (keys and values; queries and dout in
// attention_backward_dkv): KB consecutive rows s .. s + KB - 1, clamped to `last`, of a tensor
// whose row r starts at element first + r * stride. `mine` is the row this invocation loads for
// its subgroup in variant `shared`. How they are read (`qkv8`, `dout8`), how invocations map to
// row blocks (`block_of`) and how far the loops run (`keys_last`, `queries_first`) come from the
// file appended to this one: attention_own.wgsl (`rows`) or attention_shared.wgsl (`shared`).
struct Rows8 { at: array<u32, KB>, mine: u32 }

fn rows8(first: u32, s: u32, last: u32, stride: u32) -> Rows8 {
    var r: Rows8;
    for (var j = 0u; j < KB; j++) {
        r.at[j] = first + min(s + j, last) * stride;
    }
    r.mine = first + min(s + lane_in_subgroup(), last) * stride;
    return r;
}

// Element of q for (b, t = 0, h) in qkv; k and v follow at + C and + 2C.
fn qkv_base(bh: u32) -> u32 {
    return (bh / p.nh) * p.t * 3u * p.nh * p.hs + (bh % p.nh) * p.hs;
}

// Element (b, t = 0, h * HS) of out and dout.
fn out_base(bh: u32) -> u32 {
    return (bh / p.nh) * p.t * p.nh * p.hs + (bh % p.nh) * p.hs;
}

fn qkv4(o: vec4u) -> vec4f {
    return vec4f(f32(qkv[o.x]), f32(qkv[o.y]), f32(qkv[o.z]), f32(qkv[o.w]));
}

fn lse4(o: vec4u) -> vec4f {
    return vec4f(lse[o.x], lse[o.y], lse[o.z], lse[o.w]);
}

// One invocation per block of 8 query rows: online softmax over keys 0 ..= last row.
@compute @workgroup_size(WG)
fn attention_forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= lane_blocks()) { return; }
    let blk = block_of(i, true);
    let base = qkv_base(blk.bh);
    let c = p.nh * p.hs;
    let stride = 3u * c;  // qkv elements per position
    let last = keys_last(blk);

    var qa: array<vec4f, MAX_HS>;  // qa[d][r]: channel d of row t0 + r
    var qb: array<vec4f, MAX_HS>;  // qb[d][r]: channel d of row t0 + 4 + r
    var oa: array<vec4f, MAX_HS>;
    var ob: array<vec4f, MAX_HS>;
    let qoa = vec4u(base) + blk.ca * stride;
    let qob = vec4u(base) + blk.cb * stride;
    for (var d = 0u; d < p.hs; d++) {
        qa[d] = qkv4(qoa + d);
        qb[d] = qkv4(qob + d);
    }
    // Key 0 (seen by every row) starts the running max m, the running sum l = sum exp(x - m)
    // and o = sum exp(x - m) v.
    var xa = vec4f(0.0);
    var xb = vec4f(0.0);
    for (var d = 0u; d < p.hs; d++) {
        let kd = f32(qkv[base + c + d]);
        xa += qa[d] * kd;
        xb += qb[d] * kd;
    }
    var ma = xa * p.scale;
    var mb = xb * p.scale;
    var la = vec4f(1.0);
    var lb = vec4f(1.0);
    for (var d = 0u; d < p.hs; d++) {
        let vd = f32(qkv[base + 2u * c + d]);
        oa[d] = vec4f(vd);
        ob[d] = vec4f(vd);
    }
    // Keys in blocks of KB (s .. s + KB - 1, clamped to the last row and masked): each q and o
    // element read from the private arrays then serves KB keys.
    for (var s = 1u; s <= last; s += KB) {
        let ko = rows8(base + c, s, last, stride);
        var xa = array<vec4f, KB>();
        var xb = array<vec4f, KB>();
        for (var d = 0u; d < p.hs; d++) {
            let qad = qa[d];
            let qbd = qb[d];
            let k = qkv8(ko, d);
            for (var j = 0u; j < KB; j++) {
                xa[j] += qad * k[j];
                xb[j] += qbd * k[j];
            }
        }
        // Causal mask: row t sees key s + j only if s + j <= t (which also drops the clamped
        // copies past the last row).
        var mna = ma;
        var mnb = mb;
        for (var j = 0u; j < KB; j++) {
            xa[j] = select(ma, xa[j] * p.scale, vec4u(s + j) <= blk.ra);
            xb[j] = select(mb, xb[j] * p.scale, vec4u(s + j) <= blk.rb);
            mna = max(mna, xa[j]);
            mnb = max(mnb, xb[j]);
        }
        let fa = exp(ma - mna);
        let fb = exp(mb - mnb);
        var sa = vec4f(0.0);
        var sb = vec4f(0.0);
        for (var j = 0u; j < KB; j++) {
            xa[j] = select(vec4f(0.0), exp(xa[j] - mna), vec4u(s + j) <= blk.ra);
            xb[j] = select(vec4f(0.0), exp(xb[j] - mnb), vec4u(s + j) <= blk.rb);
            sa += xa[j];
            sb += xb[j];
        }
        ma = mna;
        mb = mnb;
        la = la * fa + sa;
        lb = lb * fb + sb;
        for (var d = 0u; d < p.hs; d++) {
            var oad = oa[d] * fa;
            var obd = ob[d] * fb;
            let v = qkv8(ko, c + d);
            for (var j = 0u; j < KB; j++) {
                oad += xa[j] * v[j];
                obd += xb[j] * v[j];
            }
            oa[d] = oad;
            ob[d] = obd;
        }
    }
    let inva = 1.0 / la;
    let invb = 1.0 / lb;
    let lsa = ma + log(la);
    let lsb = mb + log(lb);
    let obase = out_base(blk.bh);
    for (var r = 0u; r < 4u; r++) {
        let ta = blk.t0 + r;
        if (ta < p.t) {
            let oo = obase + ta * c;
            for (var d = 0u; d < p.hs; d++) {
                out[oo + d] = st(oa[d][r] * inva[r]);
            }
            lse[blk.bh * p.t + ta] = lsa[r];
        }
        let tb = ta + 4u;
        if (tb < p.t) {
            let oo = obase + tb * c;
            for (var d = 0u; d < p.hs; d++) {
                out[oo + d] = st(ob[d][r] * invb[r]);
            }
            lse[blk.bh * p.t + tb] = lsb[r];
        }
    }
}

@group(0) @binding(7) var<storage, read_write> probs: array<f32>;  // (B, NH, T, T) attention_probs

// For display: the probabilities p_ts = exp(q_t . k_s * scale - lse_t) of 8 query rows, recomputed
// from the saved log-sum-exp as the backward does (so they sum to 1 whatever kernel made lse),
// written for every key s: 0 above the diagonal (s > t).
@compute @workgroup_size(WG)
fn attention_probs(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= num_blocks()) { return; }
    let blk = block(i, false);
    let base = qkv_base(blk.bh);
    let c = p.nh * p.hs;
    let stride = 3u * c;

    var qa: array<vec4f, MAX_HS>;
    var qb: array<vec4f, MAX_HS>;
    let qoa = vec4u(base) + blk.ca * stride;
    let qob = vec4u(base) + blk.cb * stride;
    for (var d = 0u; d < p.hs; d++) {
        qa[d] = qkv4(qoa + d);
        qb[d] = qkv4(qob + d);
    }
    let row0 = blk.bh * p.t;  // (b, h, t = 0) in lse and the rows of probs
    let ma = lse4(vec4u(row0) + blk.ca);
    let mb = lse4(vec4u(row0) + blk.cb);
    for (var s = 0u; s < p.t; s++) {
        var xa = vec4f(0.0);
        var xb = vec4f(0.0);
        if (s <= blk.last) {
            let ko = base + s * stride + c;
            for (var d = 0u; d < p.hs; d++) {
                let kd = f32(qkv[ko + d]);
                xa += qa[d] * kd;
                xb += qb[d] * kd;
            }
        }
        let ea = select(vec4f(0.0), exp(xa * p.scale - ma), vec4u(s) <= blk.ra);
        let eb = select(vec4f(0.0), exp(xb * p.scale - mb), vec4u(s) <= blk.rb);
        for (var r = 0u; r < 4u; r++) {
            let ta = blk.t0 + r;
            if (ta < p.t) {
                probs[(row0 + ta) * p.t + s] = ea[r];
            }
            let tb = ta + 4u;
            if (tb < p.t) {
                probs[(row0 + tb) * p.t + s] = eb[r];
            }
        }
    }
}

@group(0) @binding(4) var<storage, read_write> dqkv: array<st>;   // (B, T, 3C)
@group(0) @binding(5) var<storage, read_write> dsum: array<f32>;  // (B, NH, T) D = rowsum(dout * out)
@group(0) @binding(6) var<storage, read_write> dout: array<st>;   // (B, T, C)

fn dout4(o: vec4u) -> vec4f {
    return vec4f(f32(dout[o.x]), f32(dout[o.y]), f32(dout[o.z]), f32(dout[o.w]));
}

fn out4(o: vec4u) -> vec4f {
    return vec4f(f32(out[o.x]), f32(out[o.y]), f32(out[o.z]), f32(out[o.w]));
}

// dqkv[o] (+)= v.
fn store_grad(o: u32, v: f32) {
    dqkv[o] = st(accumulate(f32(dqkv[o]), v, p.acc));
}

// One invocation per block of 8 query rows t: D_t = dout_t . out_t (saved for
// attention_backward_dkv), then dq_t = scale * sum over s <= t of p_ts (dout_t . v_s - D_t) k_s
// into the q third of dqkv.
@compute @workgroup_size(WG)
fn attention_backward_dq(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= lane_blocks()) { return; }
    let blk = block_of(i, true);
    let base = qkv_base(blk.bh);
    let c = p.nh * p.hs;
    let stride = 3u * c;
    let last = keys_last(blk);

    var qa: array<vec4f, MAX_HS>;
    var qb: array<vec4f, MAX_HS>;
    var ga: array<vec4f, MAX_HS>;  // dout
    var gb: array<vec4f, MAX_HS>;
    var dqa: array<vec4f, MAX_HS>;
    var dqb: array<vec4f, MAX_HS>;
    let qoa = vec4u(base) + blk.ca * stride;
    let qob = vec4u(base) + blk.cb * stride;
    let ooa = vec4u(out_base(blk.bh)) + blk.ca * c;
    let oob = vec4u(out_base(blk.bh)) + blk.cb * c;
    var dda = vec4f(0.0);
    var ddb = vec4f(0.0);
    for (var d = 0u; d < p.hs; d++) {
        qa[d] = qkv4(qoa + d);
        qb[d] = qkv4(qob + d);
        ga[d] = dout4(ooa + d);
        gb[d] = dout4(oob + d);
        dda += ga[d] * out4(ooa + d);
        ddb += gb[d] * out4(oob + d);
        dqa[d] = vec4f(0.0);
        dqb[d] = vec4f(0.0);
    }
    let row0 = blk.bh * p.t;  // (b, h, t = 0) in lse and dsum
    let ma = lse4(vec4u(row0) + blk.ca);
    let mb = lse4(vec4u(row0) + blk.cb);
    // Keys in blocks of KB, as in the forward.
    for (var s = 0u; s <= last; s += KB) {
        let ko = rows8(base + c, s, last, stride);
        var xa = array<vec4f, KB>();
        var xb = array<vec4f, KB>();
        var pa = array<vec4f, KB>();
        var pb = array<vec4f, KB>();
        for (var d = 0u; d < p.hs; d++) {
            let qad = qa[d];
            let qbd = qb[d];
            let gad = ga[d];
            let gbd = gb[d];
            let k = qkv8(ko, d);
            let v = qkv8(ko, c + d);
            for (var j = 0u; j < KB; j++) {
                xa[j] += qad * k[j];
                xb[j] += qbd * k[j];
                pa[j] += gad * v[j];
                pb[j] += gbd * v[j];
            }
        }
        // Causal mask: rows t < s + j get nothing from key s + j (nor from the clamped copies).
        // xa and xb become dS.
        for (var j = 0u; j < KB; j++) {
            xa[j] = select(vec4f(0.0), exp(xa[j] * p.scale - ma) * (pa[j] - dda), vec4u(s + j) <= blk.ra);
            xb[j] = select(vec4f(0.0), exp(xb[j] * p.scale - mb) * (pb[j] - ddb), vec4u(s + j) <= blk.rb);
        }
        for (var d = 0u; d < p.hs; d++) {
            var dqad = dqa[d];
            var dqbd = dqb[d];
            let k = qkv8(ko, d);
            for (var j = 0u; j < KB; j++) {
                dqad += xa[j] * k[j];
                dqbd += xb[j] * k[j];
            }
            dqa[d] = dqad;
            dqb[d] = dqbd;
        }
    }
    for (var r = 0u; r < 4u; r++) {
        let ta = blk.t0 + r;
        if (ta < p.t) {
            dsum[row0 + ta] = dda[r];
            let o = base + ta * stride;
            for (var d = 0u; d < p.hs; d++) {
                store_grad(o + d, dqa[d][r] * p.scale);
            }
        }
        let tb = ta + 4u;
        if (tb < p.t) {
            dsum[row0 + tb] = ddb[r];
            let o = base + tb * stride;
            for (var d = 0u; d < p.hs; d++) {
                store_grad(o + d, dqb[d][r] * p.scale);
            }
        }
    }
}

// One invocation per block of 8 key rows s, after attention_backward_dq wrote D: over queries
// t >= s, dv_s = sum p_ts dout_t and dk_s = scale * sum p_ts (dout_t . v_s - D_t) q_t, into the
// k and v thirds of dqkv.
@compute @workgroup_size(WG)
fn attention_backward_dkv(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= lane_blocks()) { return; }
    let blk = block_of(i, false);
    let base = qkv_base(blk.bh);
    let obase = out_base(blk.bh);
    let c = p.nh * p.hs;
    let stride = 3u * c;
    let row0 = blk.bh * p.t;

    var ka: array<vec4f, MAX_HS>;
    var kb: array<vec4f, MAX_HS>;
    var va: array<vec4f, MAX_HS>;
    var vb: array<vec4f, MAX_HS>;
    var dka: array<vec4f, MAX_HS>;
    var dkb: array<vec4f, MAX_HS>;
    var dva: array<vec4f, MAX_HS>;
    var dvb: array<vec4f, MAX_HS>;
    let koa = vec4u(base + c) + blk.ca * stride;
    let kob = vec4u(base + c) + blk.cb * stride;
    for (var d = 0u; d < p.hs; d++) {
        ka[d] = qkv4(koa + d);
        kb[d] = qkv4(kob + d);
        va[d] = qkv4(koa + c + d);
        vb[d] = qkv4(kob + c + d);
        dka[d] = vec4f(0.0);
        dkb[d] = vec4f(0.0);
        dva[d] = vec4f(0.0);
        dvb[d] = vec4f(0.0);
    }
    // Queries in blocks of KB (t .. t + KB - 1, clamped to T - 1 and masked): each k, v, dk and
    // dv element read from the private arrays then serves KB queries.
    let tl = p.t - 1u;
    for (var t = queries_first(blk); t < p.t; t += KB) {
        let qo = rows8(base, t, tl, stride);
        let go = rows8(obase, t, tl, c);
        var xa = array<vec4f, KB>();
        var xb = array<vec4f, KB>();
        for (var d = 0u; d < p.hs; d++) {
            let kad = ka[d];
            let kbd = kb[d];
            let q = qkv8(qo, d);
            for (var j = 0u; j < KB; j++) {
                xa[j] += kad * q[j];
                xb[j] += kbd * q[j];
            }
        }
        // Causal mask: query t + j sees only keys s <= t + j; the clamped copies past T - 1 see
        // none. xa and xb become P.
        for (var j = 0u; j < KB; j++) {
            let tq = min(t + j, tl);
            let m = lse[row0 + tq];
            let live = t + j <= tl;
            xa[j] = select(vec4f(0.0), exp(xa[j] * p.scale - m), (vec4u(t + j) >= blk.ra) & vec4(live));
            xb[j] = select(vec4f(0.0), exp(xb[j] * p.scale - m), (vec4u(t + j) >= blk.rb) & vec4(live));
        }
        var dpa = array<vec4f, KB>();
        var dpb = array<vec4f, KB>();
        for (var d = 0u; d < p.hs; d++) {
            let vad = va[d];
            let vbd = vb[d];
            var dvad = dva[d];
            var dvbd = dvb[d];
            let g = dout8(go, d);
            for (var j = 0u; j < KB; j++) {
                dpa[j] += vad * g[j];
                dpb[j] += vbd * g[j];
                dvad += xa[j] * g[j];
                dvbd += xb[j] * g[j];
            }
            dva[d] = dvad;
            dvb[d] = dvbd;
        }
        // dS = P (dP - D): xa and xb become dS.
        for (var j = 0u; j < KB; j++) {
            let dt = dsum[row0 + min(t + j, tl)];
            xa[j] = xa[j] * (dpa[j] - dt);
            xb[j] = xb[j] * (dpb[j] - dt);
        }
        for (var d = 0u; d < p.hs; d++) {
            var dkad = dka[d];
            var dkbd = dkb[d];
            let q = qkv8(qo, d);
            for (var j = 0u; j < KB; j++) {
                dkad += xa[j] * q[j];
                dkbd += xb[j] * q[j];
            }
            dka[d] = dkad;
            dkb[d] = dkbd;
        }
    }
    for (var r = 0u; r < 4u; r++) {
        let sa = blk.t0 + r;
        if (sa < p.t) {
            let o = base + sa * stride + c;
            for (var d = 0u; d < p.hs; d++) {
                store_grad(o + d, dka[d][r] * p.scale);
                store_grad(o + c + d, dva[d][r]);
            }
        }
        let sb = sa + 4u;
        if (sb < p.t) {
            let o = base + sb * stride + c;
            for (var d = 0u; d < p.hs; d++) {
                store_grad(o + d, dkb[d][r] * p.scale);
                store_grad(o + c + d, dvb[d][r]);
            }
        }
    }
}
