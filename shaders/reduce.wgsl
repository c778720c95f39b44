// Deterministic reductions, no atomics: every sum runs in a fixed order, so the same inputs give
// bit-identical results. Column sums (bias and LayerNorm parameter gradients) go through
// per-chunk partials then one ordered pass; the global sum of squares (gradient norm) and the mean
// loss go through per-workgroup partials then one workgroup.

struct Params {
    rows: u32,       // colsum: rows of src; sumsq: elements of src
    cols: u32,       // colsum: columns; sumsq: slots to write; final: number of partials
    chunk: u32,      // colsum: rows per partial
    acc: u32,        // colsum_final: add to dst instead of overwriting
    out_index: u32,  // sumsq_partial: first partial slot; reduce_final: slot of out written
    mode: u32,       // reduce_final: 0 = sum * scale, 1 = sqrt(sum) and the clip factor
    scale: f32,      // reduce_final mode 0: factor; mode 1: max norm
}
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read_write> dst: array<st>;       // (n) zero / colsum: (cols)
@group(0) @binding(2) var<storage, read_write> src: array<st>;       // (rows, cols) / (rows)
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;  // (nchunks, cols) / (groups)
@group(0) @binding(4) var<storage, read_write> out: array<f32>;      // scalars

@compute @workgroup_size(WG)
fn zero(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.rows) { return; }
    dst[i] = st(0.0);
}

// Gradient accumulation over micro-batches (`ops::reduce::fold`): dst += src, then src = 0, so
// src can take the next micro-batch's gradient from zero.
@compute @workgroup_size(WG)
fn fold(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.rows) { return; }
    dst[i] = st(f32(dst[i]) + f32(src[i]));
    src[i] = st(0.0);
}

// One invocation per (chunk k, column c): partial[k, c] = sum of src[r, c] over the chunk's rows.
@compute @workgroup_size(WG)
fn colsum_partial(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    let nchunks = (p.rows + p.chunk - 1u) / p.chunk;
    if (i >= nchunks * p.cols) { return; }
    let k = i / p.cols;
    let c = i % p.cols;
    let r1 = min(p.rows, (k + 1u) * p.chunk);
    var s = 0.0;
    for (var r = k * p.chunk; r < r1; r++) {
        s += f32(src[r * p.cols + c]);
    }
    partial[i] = s;
}

// One invocation per column: dst[c] (+)= sum over chunks of partial[k, c], in chunk order.
@compute @workgroup_size(WG)
fn colsum_final(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let c = flat_index(wid, nwg, lid);
    if (c >= p.cols) { return; }
    let nchunks = (p.rows + p.chunk - 1u) / p.chunk;
    var s = 0.0;
    for (var k = 0u; k < nchunks; k++) {
        s += partial[k * p.cols + c];
    }
    dst[c] = st(accumulate(f32(dst[c]), s, p.acc));
}

const RWG: u32 = 256u;
var<workgroup> tree: array<f32, RWG>;

// Fixed-shape tree sum over the workgroup; lane 0 returns the total.
fn tree_sum(l: u32, v: f32) -> f32 {
    tree[l] = v;
    workgroupBarrier();
    for (var s = RWG / 2u; s > 0u; s >>= 1u) {
        if (l < s) { tree[l] += tree[l + s]; }
        workgroupBarrier();
    }
    return tree[0];
}

// Workgroup g sums squares of src[g * RWG * 8 .. (g + 1) * RWG * 8] into partial[out_index + g].
@compute @workgroup_size(RWG)
fn sumsq_partial(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let g = wid.y * nwg.x + wid.x;
    let base = g * RWG * 8u;
    var s = 0.0;
    for (var j = 0u; j < 8u; j++) {
        let i = base + j * RWG + lid.x;
        if (i < p.rows) {
            let v = f32(src[i]);
            s += v * v;
        }
    }
    let total = tree_sum(lid.x, s);
    // Workgroups past `cols` slots exist only to fill a folded 2-D grid.
    if (lid.x == 0u && g < p.cols) { partial[p.out_index + g] = total; }
}

// The sum of partial[0 .. cols] in a fixed order, returned to lane 0.
fn partial_sum(l: u32) -> f32 {
    var s = 0.0;
    for (var i = l; i < p.cols; i += RWG) {
        s += partial[i];
    }
    return tree_sum(l, s);
}

// One workgroup sums partial[0 .. cols]. mode 0: out[out_index] = sum * scale.
// mode 1: out[out_index] = sqrt(sum) (the gradient norm) and out[out_index + 1] = the clip factor
// min(1, scale / (norm + 1e-6)), as torch.nn.utils.clip_grad_norm_ computes it.
@compute @workgroup_size(RWG)
fn reduce_final(@builtin(local_invocation_id) lid: vec3u) {
    let total = partial_sum(lid.x);
    if (lid.x == 0u) {
        if (p.mode == 0u) {
            out[p.out_index] = total * p.scale;
        } else {
            let norm = sqrt(total);
            out[p.out_index] = norm;
            out[p.out_index + 1u] = min(1.0, p.scale / (norm + 1e-6));
        }
    }
}

@group(0) @binding(5) var<storage, read_write> hyper: array<f32>;  // [.., .., .., loss scale]

// The training step's gradient norm. The gradients carry the loss scale hyper[3], so the norm is
// sqrt(sum) / hyper[3]. out[out_index ..] = norm, clip factor, skip flag: 1 when the sum is inf or
// NaN (an f16 gradient overflowed, or training diverged), 2 when the norm is above hyper[4] or the
// loss out[p.rows] above hyper[5] (the host's outlier ceilings; f32 max when off); AdamW then
// leaves every parameter and moment as it was. The finiteness test is on the bits: shader
// compilers may assume floats are finite.
@compute @workgroup_size(RWG)
fn norm_final(@builtin(local_invocation_id) lid: vec3u) {
    let total = partial_sum(lid.x);
    if (lid.x == 0u) {
        let finite = (bitcast<u32>(total) & 0x7f800000u) != 0x7f800000u;
        let norm = sqrt(total) / hyper[3];
        out[p.out_index] = norm;
        out[p.out_index + 1u] = select(0.0, min(1.0, p.scale / (norm + 1e-6)), finite);
        let outlier = norm > hyper[4] || out[p.rows] > hyper[5];
        out[p.out_index + 2u] = select(select(0.0, 2.0, outlier), 1.0, !finite);
    }
}
