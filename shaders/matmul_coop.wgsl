// ---- Variant `coop` (appended to matmul.wgsl, in a module of its own: it needs wgpu's
// EXPERIMENTAL_COOPERATIVE_MATRIX and f16): tensor cores through cooperative matrices, f16 x f16
// -> f32, for f16 storage only (its operands are already f16, so nothing is rounded that the other
// variants keep).
//
// A workgroup is one subgroup of 32 invocations (the variant is offered only where subgroups are
// exactly 32 wide) and computes a 32 x 32 tile of C as four 16 x 16 accumulators. Per k step of
// 16 it stages A (32 x 16) and B (16 x 32) in workgroup memory as f16, zeros past the edges, then
// multiplies. The accumulators go through workgroup memory to the plain stores, which add the
// bias and accumulate as every variant does. Each output is the sum the hardware's matrix unit
// forms, k step by k step in order: deterministic run to run, but it may round differently from
// the other variants (which is why a run records its kernels).
enable f16;
enable wgpu_cooperative_matrix;

var<workgroup> ca: array<f16, 512>;   // A tile, row-major, 16 per row
var<workgroup> cb: array<f16, 512>;   // B tile, row-major, 32 per row
var<workgroup> cc: array<f32, 1024>;  // C tile, row-major, 32 per row

// `colsum`: invocation lid also sums B's column tile_c + lid into *sum, in ColSum's order (B is
// f16 storage here, so the staged f16 values are B's own).
fn coop_product(wid: vec3u, nwg: vec3u, lid: u32, colsum: bool, sum: ptr<function, f32>) -> vec2u {
    let g = wid.y * nwg.x + wid.x;
    let tile_r = (g / p.col_groups) * 32u;
    let tile_c = (g % p.col_groups) * 32u;
    var acc00 = coop_mat16x16<f32, C>();
    var acc01 = coop_mat16x16<f32, C>();
    var acc10 = coop_mat16x16<f32, C>();
    var acc11 = coop_mat16x16<f32, C>();
    var part = 0.0;
    for (var k0 = 0u; k0 < p.inner; k0 += 16u) {
        for (var i = lid; i < 512u; i += 32u) {
            ca[i] = f16(a_at(tile_r + i / 16u, k0 + i % 16u));
            cb[i] = f16(b_at(k0 + i / 32u, tile_c + i % 32u));
        }
        workgroupBarrier();
        if (colsum) { coop_colsum(k0, lid, sum, &part); }
        let a0 = coopLoadT<coop_mat16x16<f16, A>>(&ca[0], 16u);
        let a1 = coopLoadT<coop_mat16x16<f16, A>>(&ca[256], 16u);
        let b0 = coopLoadT<coop_mat16x16<f16, B>>(&cb[0], 32u);
        let b1 = coopLoadT<coop_mat16x16<f16, B>>(&cb[16], 32u);
        acc00 = coopMultiplyAdd(a0, b0, acc00);
        acc01 = coopMultiplyAdd(a0, b1, acc01);
        acc10 = coopMultiplyAdd(a1, b0, acc10);
        acc11 = coopMultiplyAdd(a1, b1, acc11);
        workgroupBarrier();
    }
    coopStoreT(acc00, &cc[0], 32u);
    coopStoreT(acc01, &cc[16], 32u);
    coopStoreT(acc10, &cc[512], 32u);
    coopStoreT(acc11, &cc[528], 32u);
    workgroupBarrier();
    return vec2u(tile_r, tile_c);
}

// Adds the stage's 16 rows of column lid to *part; closes the chunk at its last row.
fn coop_colsum(k0: u32, lid: u32, total: ptr<function, f32>, part: ptr<function, f32>) {
    for (var kk = 0u; kk < 16u; kk++) {
        if (k0 + kk < p.inner) { *part += f32(cb[kk * 32u + lid]); }
    }
    let k1 = min(k0 + 16u, p.inner);
    if (k1 % p.chunk == 0u || k1 == p.inner) {
        *total += *part;
        *part = 0.0;
    }
}

// Invocation lid stores row lid of the tile: 32 columns, 8 vec4s, with the bias (and the residual
// when p.res is set) when `with_bias`.
fn store_coop(at: vec2u, lid: u32, with_bias: bool, fused: bool) {
    for (var j = 0u; j < 32u; j += 4u) {
        let cols = vec4u(at.y + j) + vec4u(0u, 1u, 2u, 3u);
        var v = vec4f(cc[lid * 32u + j], cc[lid * 32u + j + 1u], cc[lid * 32u + j + 2u], cc[lid * 32u + j + 3u]);
        if (with_bias) {
            v += bias_at(min(cols, vec4u(p.cols - 1u)));
            if (fused && p.res != 0u) {
                v += res_row(at.x + lid, cols);
            }
        }
        store_row(at.x + lid, cols, v, fused);
    }
}

fn in_range_coop(wid: vec3u, nwg: vec3u) -> bool {
    return wid.y * nwg.x + wid.x < p.col_groups * ((p.rows + 31u) / 32u);
}

@compute @workgroup_size(32)
fn matmul_forward_coop(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    if (!in_range_coop(wid, nwg)) { return; }
    var s = 0.0;
    store_coop(coop_product(wid, nwg, lid, false, &s), lid, true, false);
}

@compute @workgroup_size(32)
fn matmul_forward_fused_coop(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    if (!in_range_coop(wid, nwg)) { return; }
    var s = 0.0;
    store_coop(coop_product(wid, nwg, lid, false, &s), lid, true, true);
}

@compute @workgroup_size(32)
fn matmul_product_coop(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    if (!in_range_coop(wid, nwg)) { return; }
    var s = 0.0;
    store_coop(coop_product(wid, nwg, lid, false, &s), lid, false, false);
}

@compute @workgroup_size(32)
fn matmul_product_colsum_coop(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    if (!in_range_coop(wid, nwg)) { return; }
    var s = 0.0;
    let at = coop_product(wid, nwg, lid, true, &s);
    store_coop(at, lid, false, false);
    store_colsum(at.x, vec4u(at.y + lid, p.cols, p.cols, p.cols), vec4f(s, 0.0, 0.0, 0.0));
}

@compute @workgroup_size(32)
fn matmul_product_gelu_coop(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    if (!in_range_coop(wid, nwg)) { return; }
    var s = 0.0;
    store_coop(coop_product(wid, nwg, lid, false, &s), lid, false, true);
}
