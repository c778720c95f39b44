// Generation with a KV cache: the kernels of one decoding position that the training step has no
// use for. The model's linears, LayerNorms, GELUs and residual adds run the training kernels on
// B rows; these embed the position, attend over the cache, and pick the next token on the GPU, so
// a step reads back B ids, not B x V logits. The position is data (`pos`), not a pipeline
// constant: one compiled program serves every position.

// Largest head size (rewritten to the model's by `Dispatch::size`, as in attention.wgsl).
const MAX_HS: u32 = 128u;

struct Params {
    b: u32,          // sequences
    c: u32,          // channels
    nh: u32,         // heads
    hs: u32,         // head size
    t_max: u32,      // positions the cache holds
    v: u32,          // vocabulary
    scale: f32,      // 1 / sqrt(HS)
    top_k: u32,      // sample: keep the top_k logits (0: all)
    temperature: f32,// sample: 0 picks the largest logit
    v0: u32,         // embed: the bound wte holds tokens v0 .. v0 + v1 (a table too large for one
    v1: u32,         // binding comes in shards, one dispatch each)
    acc: u32,        // embed: add to out (later shards) instead of writing wpe + the row
}
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read_write> pos: array<u32>;     // (1) the position decoded
// (B) each sequence's token at that position, which decode_sample overwrites with the next one.
@group(0) @binding(9) var<storage, read_write> tokens: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<st>;    // (B, C) or logits (B, V)
@group(0) @binding(3) var<storage, read_write> wte: array<st>;    // (V, C), or rows v0 .. v0 + v1
@group(0) @binding(4) var<storage, read_write> wpe: array<st>;    // (T, C)

// out[b, :] = wte[token b] + wpe[position], over the shards of wte: the first writes wpe plus its
// row where it holds the token (else 0), the others add theirs; each sum has one nonzero row.
@compute @workgroup_size(WG)
fn decode_embed(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.b * p.c) { return; }
    let b = i / p.c;
    let ch = i % p.c;
    let tok = tokens[b];
    var row = 0.0;
    if (tok >= p.v0 && tok < p.v0 + p.v1) {
        row = f32(wte[(tok - p.v0) * p.c + ch]);
    }
    if (p.acc != 0u) {
        if (row != 0.0) { out[i] = st(f32(out[i]) + row); }
    } else {
        out[i] = st(row + f32(wpe[pos[0] * p.c + ch]));
    }
}

@group(0) @binding(5) var<storage, read_write> qkv: array<st>;    // (B, 3C) this position's q | k | v
@group(0) @binding(6) var<storage, read_write> kc: array<st>;     // (B, T_max, C) keys so far
@group(0) @binding(7) var<storage, read_write> vc: array<st>;     // (B, T_max, C) values so far

// Attention of this position's query over positions 0 ..= pos, split into chunks of CHUNK
// positions so that a long context is spread over many invocations (one per (b, head) would
// leave most of a GPU, and all but a few SIMD lanes of a CPU, idle). Each chunk leaves its
// softmax partials; decode_attention_combine adds them up in chunk order, so the result does not
// depend on how the invocations ran.
const CHUNK: u32 = 16u;

// (B, NH, T_max / CHUNK rounded up, HS + 2): per chunk, the running max m, the sum l of exp(x - m)
// and o = sum of exp(x - m) v.
@group(0) @binding(10) var<storage, read_write> part: array<f32>;

fn chunks() -> u32 {
    return (p.t_max + CHUNK - 1u) / CHUNK;
}

// One invocation per (b, head, chunk k); chunks past pos do nothing. The chunk that holds pos first
// stores this position's k and v in the caches: it is the only one to read that row.
@compute @workgroup_size(WG)
fn decode_attention(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.b * p.nh * chunks()) { return; }
    let k = i % chunks();
    let bh = i / chunks();
    let b = bh / p.nh;
    let h0 = (bh % p.nh) * p.hs;
    let at_pos = pos[0];
    let first = k * CHUNK;
    if (first > at_pos) { return; }
    let last = min(first + CHUNK - 1u, at_pos);
    let row = b * 3u * p.c;
    let cache = b * p.t_max * p.c;
    var q: array<f32, MAX_HS>;
    var o: array<f32, MAX_HS>;
    let mine = last == at_pos;
    for (var d = 0u; d < p.hs; d++) {
        q[d] = f32(qkv[row + h0 + d]);
        if (mine) {
            kc[cache + at_pos * p.c + h0 + d] = qkv[row + p.c + h0 + d];
            vc[cache + at_pos * p.c + h0 + d] = qkv[row + 2u * p.c + h0 + d];
        }
        o[d] = 0.0;
    }
    var m = -3.0e38;
    var l = 0.0;
    for (var s = first; s <= last; s++) {
        let at = cache + s * p.c + h0;
        var x = 0.0;
        for (var d = 0u; d < p.hs; d++) {
            x += q[d] * f32(kc[at + d]);
        }
        x *= p.scale;
        let mn = max(m, x);
        let f = exp(m - mn);
        let e = exp(x - mn);
        l = l * f + e;
        for (var d = 0u; d < p.hs; d++) {
            o[d] = o[d] * f + e * f32(vc[at + d]);
        }
        m = mn;
    }
    let at = i * (p.hs + 2u);
    part[at] = m;
    part[at + 1u] = l;
    for (var d = 0u; d < p.hs; d++) {
        part[at + 2u + d] = o[d];
    }
}

// One invocation per (b, head): the chunks' partials combined in chunk order, out (B, C).
@compute @workgroup_size(WG)
fn decode_attention_combine(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let bh = flat_index(wid, nwg, lid);
    if (bh >= p.b * p.nh) { return; }
    let b = bh / p.nh;
    let h0 = (bh % p.nh) * p.hs;
    let used = pos[0] / CHUNK + 1u;
    var m = -3.0e38;
    for (var k = 0u; k < used; k++) {
        m = max(m, part[(bh * chunks() + k) * (p.hs + 2u)]);
    }
    var l = 0.0;
    for (var k = 0u; k < used; k++) {
        let at = (bh * chunks() + k) * (p.hs + 2u);
        l += part[at + 1u] * exp(part[at] - m);
    }
    for (var d = 0u; d < p.hs; d++) {
        var o = 0.0;
        for (var k = 0u; k < used; k++) {
            let at = (bh * chunks() + k) * (p.hs + 2u);
            o += part[at + 2u + d] * exp(part[at] - m);
        }
        out[b * p.c + h0 + d] = st(o / l);
    }
}

@group(0) @binding(8) var<storage, read_write> rand: array<f32>;  // (B) uniform in [0, 1), from the host

// One invocation per sequence b: the next token from its logits row, into tokens[b].
// Temperature 0 takes the largest logit (the first, on a tie). Otherwise the logits are divided by
// the temperature, those below the top_k-th largest dropped (ties at it kept: the threshold is
// found by bisection on the values), and the token sampled by walking the kept probabilities in id
// order to rand[b] times their sum. Deterministic for given logits and rand.
@compute @workgroup_size(WG)
fn decode_sample(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let b = flat_index(wid, nwg, lid);
    if (b >= p.b) { return; }
    let base = b * p.v;
    var best = 0u;
    var hi = f32(out[base]);
    var lo = hi;
    for (var i = 1u; i < p.v; i++) {
        let x = f32(out[base + i]);
        if (x > hi) { hi = x; best = i; }
        lo = min(lo, x);
    }
    if (p.temperature <= 0.0) {
        tokens[b] = best;
        return;
    }
    // The largest threshold that keeps at least top_k logits: count(x >= t) >= top_k.
    var t = lo;
    if (p.top_k > 0u && p.top_k < p.v) {
        var a = lo;
        var z = hi;
        for (var it = 0u; it < 40u; it++) {
            let mid = a + (z - a) * 0.5;
            var n = 0u;
            for (var i = 0u; i < p.v; i++) {
                n += u32(f32(out[base + i]) >= mid);
            }
            if (n >= p.top_k) { a = mid; } else { z = mid; }
        }
        t = a;
    }
    var sum = 0.0;
    for (var i = 0u; i < p.v; i++) {
        let x = f32(out[base + i]);
        if (x >= t) { sum += exp((x - hi) / p.temperature); }
    }
    let goal = rand[b] * sum;
    var acc = 0.0;
    var pick = best;
    for (var i = 0u; i < p.v; i++) {
        let x = f32(out[base + i]);
        if (x >= t) {
            acc += exp((x - hi) / p.temperature);
            if (acc > goal) { pick = i; break; }
        }
    }
    tokens[b] = pick;
}
