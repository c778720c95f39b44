// Products of a few rows: generation's B sequences at one position. The tiled matmul variants give
// each invocation 16 rows, so at B = 1 they compute 16 times what is needed. Here one invocation
// computes one output column n of up to ROWS rows, each an f32 sum over k in order (deterministic),
// then the epilogue of matmul.wgsl: bias, the residual stream, and GELU of the result into a
// second tensor. With LN = 1 the input rows are the residual stream, normalized here by the
// LayerNorm that precedes the product (`layernorm_forward`'s arithmetic, so the same bits): a
// decoding step then skips ln_1, ln_2 and ln_f's dispatches, each of which costs more to launch than
// to run at B rows. Adjacent invocations read adjacent weights of a (K, N) row, so the weight loads
// are contiguous (coalesced on GPUs, whole vectors on CPU adapters). The tied lm_head's (N, K)
// table takes its rows 4 channels at a time.

// Rows per invocation: the dispatch bakes in min(M, 8) (`Dispatch::size`), so a single sequence's
// step keeps one accumulator, in a register.
const ROWS: u32 = 8u;
// 1: normalize x's rows first (gamma, beta and p.eps); baked per dispatch.
const LN: u32 = 0u;

struct Params {
    m: u32,          // rows of x and out
    k: u32,
    n: u32,          // columns this dispatch computes
    out_stride: u32, // columns of out (a shard of the lm_head writes n of them from out_col)
    out_col: u32,
    flags: u32,      // 1: bias, 2: add res, 4: write gelu(out) to act
    eps: f32,        // LN's epsilon
}
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read_write> out: array<st>;  // (M, out_stride)
@group(0) @binding(2) var<storage, read_write> x: array<st>;    // (M, K)
@group(0) @binding(3) var<storage, read_write> w: array<st>;    // (K, N); gemv_nk: (N, K)
@group(0) @binding(4) var<storage, read_write> bias: array<st>; // (N)
@group(0) @binding(5) var<storage, read_write> res: array<st>;  // (M, N)
@group(0) @binding(6) var<storage, read_write> act: array<st>;  // (M, N) gelu(out)
@group(0) @binding(7) var<storage, read_write> gamma: array<st>; // (K) LN's weight
@group(0) @binding(8) var<storage, read_write> beta: array<st>;  // (K) LN's bias

// Each row's LayerNorm mean and 1/std (x, y), in layernorm_forward's order (Welford); (0, 1) and
// unused without LN.
fn row_stats(r0: u32, rows: u32) -> array<vec2f, ROWS> {
    var stats = array<vec2f, ROWS>();
    for (var r = 0u; r < ROWS; r++) {
        stats[r] = vec2f(0.0, 1.0);
        if (LN == 1u && r < rows) {
            let base = (r0 + r) * p.k;
            var m = 0.0;
            var m2 = 0.0;
            for (var i = 0u; i < p.k; i++) {
                let v = f32(x[base + i]);
                let d = v - m;
                m += d / f32(i + 1u);
                m2 += d * (v - m);
            }
            stats[r] = vec2f(m, 1.0 / sqrt(m2 / f32(p.k) + p.eps));
        }
    }
    return stats;
}

// Element (row, kk) of the product's input: x, or its normalized value.
fn input(row: u32, kk: u32, s: vec2f) -> f32 {
    let v = f32(x[row * p.k + kk]);
    if (LN == 0u) { return v; }
    return (v - s.x) * s.y * f32(gamma[kk]) + f32(beta[kk]);
}

// Row block and column of this invocation: columns vary fastest.
fn place(i: u32) -> vec2u {
    return vec2u(i / p.n * ROWS, i % p.n);
}

fn finish(acc: array<f32, ROWS>, r0: u32, col: u32) {
    var b = 0.0;
    if ((p.flags & 1u) != 0u) { b = f32(bias[col]); }
    for (var r = 0u; r < ROWS; r++) {
        let row = r0 + r;
        if (row < p.m) {
            var v = acc[r] + b;
            if ((p.flags & 2u) != 0u) { v += f32(res[row * p.n + col]); }
            out[row * p.out_stride + p.out_col + col] = st(v);
            if ((p.flags & 4u) != 0u) { act[row * p.n + col] = st(gelu_fwd(vec4f(v)).x); }
        }
    }
}

// out = x @ W (+ epilogue), W (K, N).
@compute @workgroup_size(WG)
fn gemv_kn(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    let at = place(i);
    if (at.x >= p.m) { return; }
    let rows = min(ROWS, p.m - at.x);
    let s = row_stats(at.x, rows);
    var acc = array<f32, ROWS>();
    for (var kk = 0u; kk < p.k; kk++) {
        let wv = f32(w[kk * p.n + at.y]);
        for (var r = 0u; r < ROWS; r++) {
            if (r < rows) { acc[r] += input(at.x + r, kk, s[r]) * wv; }
        }
    }
    finish(acc, at.x, at.y);
}

// out = x @ W^T (+ epilogue), W (N, K): the tied lm_head. k in steps of 4 (the sums keep k's
// order within each row); K need not be a multiple of 4.
@compute @workgroup_size(WG)
fn gemv_nk(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    let at = place(i);
    if (at.x >= p.m) { return; }
    let rows = min(ROWS, p.m - at.x);
    let s = row_stats(at.x, rows);
    var acc = array<f32, ROWS>();
    let base = at.y * p.k;
    var kk = 0u;
    for (; kk + 4u <= p.k; kk += 4u) {
        let wv = vec4f(f32(w[base + kk]), f32(w[base + kk + 1u]), f32(w[base + kk + 2u]), f32(w[base + kk + 3u]));
        for (var r = 0u; r < ROWS; r++) {
            if (r < rows) {
                let row = at.x + r;
                var a = acc[r];
                a += input(row, kk, s[r]) * wv.x;
                a += input(row, kk + 1u, s[r]) * wv.y;
                a += input(row, kk + 2u, s[r]) * wv.z;
                a += input(row, kk + 3u, s[r]) * wv.w;
                acc[r] = a;
            }
        }
    }
    for (; kk < p.k; kk++) {
        let wv = f32(w[base + kk]);
        for (var r = 0u; r < ROWS; r++) {
            if (r < rows) { acc[r] += input(at.x + r, kk, s[r]) * wv; }
        }
    }
    finish(acc, at.x, at.y);
}
