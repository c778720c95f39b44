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
    top_p: f32,      // sample: keep the smallest set of most likely tokens with this much mass (1: all)
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

// One invocation per cache element (b, position, channel): the keys and values of one context
// from the training forward's qkv (T_max, 3C), into the caches of sequences pos[0] ..
// pos[0] + pos[1] (the prefill binds its span there).
@compute @workgroup_size(WG)
fn decode_fill(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.b * p.t_max * p.c) { return; }
    let b = i / (p.t_max * p.c);
    if (b < pos[0] || b >= pos[0] + pos[1]) { return; }
    let r = i % (p.t_max * p.c);
    let at = (r / p.c) * 3u * p.c + r % p.c;
    kc[i] = qkv[at + p.c];
    vc[i] = qkv[at + 2u * p.c];
}

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

@group(0) @binding(8) var<storage, read_write> rand: array<f32>;  // (T_max, B) uniform in [0, 1), from the host
// (T_max, B) the token each sequence picked at each position: several steps run in one submission
// and the host reads their tokens together.
@group(0) @binding(11) var<storage, read_write> history: array<u32>;

// Sequence b's next token: the next step's input, and this position's entry in the history.
fn emit(b: u32, id: u32) {
    tokens[b] = id;
    history[pos[0] * p.b + b] = id;
}

// decode_sample's lanes: each owns a contiguous run of ids, so the walk below goes in id order.
const LANES: u32 = 64u;
var<workgroup> red_f: array<f32, LANES>;
var<workgroup> red_u: array<u32, LANES>;

// The lanes' values summed (or maxed) in a fixed tree order, read by every lane.
fn lanes_sum(lane: u32, x: f32) -> f32 {
    red_f[lane] = x;
    for (var s = LANES / 2u; s > 0u; s /= 2u) {
        workgroupBarrier();
        if (lane < s) { red_f[lane] += red_f[lane + s]; }
    }
    return workgroupUniformLoad(&red_f[0]);
}

fn lanes_count(lane: u32, n: u32) -> u32 {
    red_u[lane] = n;
    for (var s = LANES / 2u; s > 0u; s /= 2u) {
        workgroupBarrier();
        if (lane < s) { red_u[lane] += red_u[lane + s]; }
    }
    return workgroupUniformLoad(&red_u[0]);
}

// The sum of exp((x - hi) / temperature) over the logits x >= t in this lane's ids.
fn lane_mass(base: u32, lo_i: u32, hi_i: u32, hi: f32, t: f32) -> f32 {
    var s = 0.0;
    for (var i = lo_i; i < hi_i; i++) {
        let x = f32(out[base + i]);
        if (x >= t) { s += exp((x - hi) / p.temperature); }
    }
    return s;
}

// One workgroup per sequence b: the next token from its logits row, into tokens[b].
// Temperature 0 takes the largest logit (the first, on a tie). Otherwise the logits are divided by
// the temperature; those below the top_k-th largest are dropped, then those outside the smallest
// set of largest logits whose probability (among the kept) reaches top_p (ties at a threshold
// kept: both thresholds are found by bisection on the values); the token is sampled by walking the
// kept probabilities in id order to its draw times their sum. Every sum runs in a fixed order, so
// the pick is deterministic for given logits and rand.
@compute @workgroup_size(LANES)
fn decode_sample(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let b = wid.y * nwg.x + wid.x;
    if (b >= p.b) { return; }
    let lane = lid.x;
    let base = b * p.v;
    let per = (p.v + LANES - 1u) / LANES;
    let lo_i = min(lane * per, p.v);
    let hi_i = min(lo_i + per, p.v);
    // The largest logit (its first id) and the smallest.
    var best = p.v;
    var hi = -3.0e38;
    var lo = 3.0e38;
    for (var i = lo_i; i < hi_i; i++) {
        let x = f32(out[base + i]);
        if (x > hi) { hi = x; best = i; }
        lo = min(lo, x);
    }
    red_f[lane] = hi;
    red_u[lane] = best;
    for (var s = LANES / 2u; s > 0u; s /= 2u) {
        workgroupBarrier();
        if (lane < s) {
            let x = red_f[lane + s];
            // On a tie the lower id stays.
            if (x > red_f[lane] || (x == red_f[lane] && red_u[lane + s] < red_u[lane])) {
                red_f[lane] = x;
                red_u[lane] = red_u[lane + s];
            }
        }
    }
    workgroupBarrier();
    hi = red_f[0];
    // No logit above -3e38 (all NaN, say): token 0 rather than an id outside the vocabulary.
    best = select(red_u[0], 0u, red_u[0] >= p.v);
    workgroupBarrier();
    red_f[lane] = lo;
    for (var s = LANES / 2u; s > 0u; s /= 2u) {
        workgroupBarrier();
        if (lane < s) { red_f[lane] = min(red_f[lane], red_f[lane + s]); }
    }
    lo = workgroupUniformLoad(&red_f[0]);
    if (p.temperature <= 0.0) {
        if (lane == 0u) { emit(b, best); }
        return;
    }
    // top_k: the largest threshold that keeps at least top_k logits, count(x >= t) >= top_k.
    var t = lo;
    if (p.top_k > 0u && p.top_k < p.v) {
        var a = lo;
        var z = hi;
        for (var it = 0u; it < 40u; it++) {
            let mid = a + (z - a) * 0.5;
            var n = 0u;
            for (var i = lo_i; i < hi_i; i++) {
                n += u32(f32(out[base + i]) >= mid);
            }
            if (lanes_count(lane, n) >= p.top_k) { a = mid; } else { z = mid; }
        }
        t = a;
    }
    // top_p: the largest threshold whose kept mass is at least top_p of the top_k's.
    if (p.top_p < 1.0) {
        let goal = p.top_p * lanes_sum(lane, lane_mass(base, lo_i, hi_i, hi, t));
        var a = t;
        var z = hi;
        for (var it = 0u; it < 40u; it++) {
            let mid = a + (z - a) * 0.5;
            if (lanes_sum(lane, lane_mass(base, lo_i, hi_i, hi, mid)) >= goal) { a = mid; } else { z = mid; }
        }
        t = a;
    }
    // Each lane's kept mass; lane 0 adds them in lane order and walks the lane where rand falls.
    red_f[lane] = lane_mass(base, lo_i, hi_i, hi, t);
    workgroupBarrier();
    if (lane == 0u) {
        var sum = 0.0;
        for (var j = 0u; j < LANES; j++) { sum += red_f[j]; }
        let goal = rand[pos[0] * p.b + b] * sum;
        var acc = 0.0;
        var pick = best;
        var j = 0u;
        while (j + 1u < LANES && acc + red_f[j] <= goal) {
            acc += red_f[j];
            j++;
        }
        let end = min(j * per + per, p.v);
        for (var i = min(j * per, p.v); i < end; i++) {
            let x = f32(out[base + i]);
            if (x >= t) {
                pick = i;
                acc += exp((x - hi) / p.temperature);
                if (acc > goal) { break; }
            }
        }
        emit(b, pick);
    }
}

// The step's last dispatch: the next step decodes the next position, without the host.
@compute @workgroup_size(1)
fn decode_advance() {
    pos[0] += 1u;
}
