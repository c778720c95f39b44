// LayerNorm over the last dimension C: out = (x - mean) * rstd * w + b, with the biased variance
// and rstd = 1 / sqrt(var + eps). Backward: dx per row and, without atomics, per-chunk-of-rows
// partial sums of dw and db in scratch (one dispatch), then one fixed-order pass per column.

struct Params {
    rows: u32,    // rows of x (B * T)
    c: u32,       // C
    chunk: u32,   // rows per partial sum of dw / db
    acc_dx: u32,  // add to dx / dw / db instead of overwriting
    acc_w: u32,
    acc_b: u32,
    eps: f32,
}
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read_write> out: array<st>;   // (rows, C)
@group(0) @binding(2) var<storage, read_write> mean: array<f32>;  // (rows)
@group(0) @binding(3) var<storage, read_write> rstd: array<f32>;  // (rows)
@group(0) @binding(4) var<storage, read_write> x: array<st>;     // (rows, C)
@group(0) @binding(5) var<storage, read_write> w: array<st>;     // (C)
@group(0) @binding(6) var<storage, read_write> b: array<st>;     // (C)

// One invocation per row. Mean and variance in one pass with Welford's update (stable where the
// mean is large against the spread; a division costs little next to a load on CPU backends),
// then one pass writing out.
@compute @workgroup_size(WG)
fn layernorm_forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let r = flat_index(wid, nwg, lid);
    if (r >= p.rows) { return; }
    let base = r * p.c;
    var m = 0.0;
    var m2 = 0.0;
    for (var i = 0u; i < p.c; i++) {
        let v = f32(x[base + i]);
        let d = v - m;
        m += d / f32(i + 1u);
        m2 += d * (v - m);
    }
    let s = 1.0 / sqrt(m2 / f32(p.c) + p.eps);
    for (var i = 0u; i < p.c; i++) {
        out[base + i] = st((f32(x[base + i]) - m) * s * f32(w[i]) + f32(b[i]));
    }
    mean[r] = m;
    rstd[r] = s;
}

@group(0) @binding(7) var<storage, read_write> dx: array<st>;        // (rows, C)
@group(0) @binding(8) var<storage, read_write> dw: array<st>;        // (C)
@group(0) @binding(9) var<storage, read_write> db: array<st>;        // (C)
@group(0) @binding(10) var<storage, read_write> scratch: array<f32>; // (ceil(rows / chunk), 2, C)
@group(0) @binding(11) var<storage, read_write> dout: array<st>;     // (rows, C)

// dx (+)= rstd * (g - mean(g) - xh * mean(g * xh)) for row r, with g = dout * w and
// xh = (x - mean) * rstd.
fn backward_row(r: u32) {
    let base = r * p.c;
    let m = mean[r];
    let s = rstd[r];
    var sg = 0.0;
    var sgx = 0.0;
    for (var i = 0u; i < p.c; i++) {
        let g = f32(dout[base + i]) * f32(w[i]);
        sg += g;
        sgx += g * (f32(x[base + i]) - m) * s;
    }
    let mg = sg / f32(p.c);
    let mgx = sgx / f32(p.c);
    for (var i = 0u; i < p.c; i++) {
        let g = f32(dout[base + i]) * f32(w[i]);
        let xh = (f32(x[base + i]) - m) * s;
        dx[base + i] = st(accumulate(f32(dx[base + i]), s * (g - mg - xh * mgx), p.acc_dx));
    }
}

// scratch[k, 0, i] = sum of dout * xh and scratch[k, 1, i] = sum of dout over chunk k's rows, in
// row order.
fn backward_partial(k: u32, i: u32) {
    let r1 = min(p.rows, (k + 1u) * p.chunk);
    var sw = 0.0;
    var sb = 0.0;
    for (var r = k * p.chunk; r < r1; r++) {
        let g = f32(dout[r * p.c + i]);
        sw += g * (f32(x[r * p.c + i]) - mean[r]) * rstd[r];
        sb += g;
    }
    scratch[(2u * k) * p.c + i] = sw;
    scratch[(2u * k + 1u) * p.c + i] = sb;
}

// One workgroup per chunk k of rows: its invocations take the chunk's rows for dx, then its
// columns for the chunk's partial sums of dw and db. Both read only the forward's tensors and
// dout, so no barrier separates them, and one dispatch does what two did (with the chunk's rows
// still in cache for the second pass).
@compute @workgroup_size(WG)
fn layernorm_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let k = wid.y * nwg.x + wid.x;
    if (k >= (p.rows + p.chunk - 1u) / p.chunk) { return; }
    let r1 = min(p.rows, (k + 1u) * p.chunk);
    for (var r = k * p.chunk + lid.x; r < r1; r += WG) {
        backward_row(r);
    }
    for (var i = lid.x; i < p.c; i += WG) {
        backward_partial(k, i);
    }
}

// One invocation per column: dw[i] (+)= sum over chunks of scratch[k, 0, i], db[i] (+)= the same
// of scratch[k, 1, i], in chunk order.
@compute @workgroup_size(WG)
fn layernorm_backward_final(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.c) { return; }
    let nchunks = (p.rows + p.chunk - 1u) / p.chunk;
    var sw = 0.0;
    var sb = 0.0;
    for (var k = 0u; k < nchunks; k++) {
        sw += scratch[(2u * k) * p.c + i];
        sb += scratch[(2u * k + 1u) * p.c + i];
    }
    dw[i] = st(accumulate(f32(dw[i]), sw, p.acc_w));
    db[i] = st(accumulate(f32(db[i]), sb, p.acc_b));
}
