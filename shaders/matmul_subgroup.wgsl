// ---- Variant `subgroup` (appended to matmul.wgsl, in a module of its own because it needs the
// adapter's SUBGROUP feature): the `register` tile with A shared across a subgroup of 8.
//
// The 8 invocations of a subgroup are 8 neighbouring column lanes of one row lane (LANES_C is 8
// or 16), so they need the same 16 rows of A at every k. Each loads two of them (rows `lane` and
// `lane + 8` of the tile) and takes the other 14 from its neighbours with subgroupBroadcast: 2
// storage loads of A per k instead of 16. On lavapipe, where a storage load is a per-lane scalar
// loop and a broadcast is one vector shuffle, that is most of the cost of A. Every A value and
// every sum is the one `register` computes, in the same order: the results are bit for bit the
// same. Adapters whose subgroups are not exactly 8 wide do not get this variant, and a subgroup
// whose lanes do not line up as assumed (checked at run time) falls back to plain loads.

// Rows row0 + lane and row0 + lane + 8 as 16 values of 4 rows each: a[q] holds rows 4 q .. 4 q + 3.
fn shared_rows(lo: f32, hi: f32) -> array<vec4f, 4> {
    return array<vec4f, 4>(
        vec4f(subgroupBroadcast(lo, 0u), subgroupBroadcast(lo, 1u), subgroupBroadcast(lo, 2u), subgroupBroadcast(lo, 3u)),
        vec4f(subgroupBroadcast(lo, 4u), subgroupBroadcast(lo, 5u), subgroupBroadcast(lo, 6u), subgroupBroadcast(lo, 7u)),
        vec4f(subgroupBroadcast(hi, 0u), subgroupBroadcast(hi, 1u), subgroupBroadcast(hi, 2u), subgroupBroadcast(hi, 3u)),
        vec4f(subgroupBroadcast(hi, 4u), subgroupBroadcast(hi, 5u), subgroupBroadcast(hi, 6u), subgroupBroadcast(hi, 7u)),
    );
}

fn tile_product_subgroup(wid: vec3u, nwg: vec3u, lid: vec3u, lane: u32) -> Tile {
    let g = wid.y * nwg.x + wid.x;
    let row0 = (g / p.col_groups) * tile_rows() + (lid.x / LANES_C) * TM;
    // Every lane of the subgroup on the same rows, lanes numbered as the invocations: else the
    // plain tile.
    let lined_up = subgroupAll(lane == lid.x % 8u && subgroupBroadcast(row0, 0u) == row0);
    if (!lined_up) {
        return tile_product(wid, nwg, lid);
    }
    var t: Tile;
    t.row0 = row0;
    let col0 = vec4u((g % p.col_groups) * tile_cols() + lid.x % LANES_C);
    let step = vec4u(0u, 1u, 2u, 3u) * LANES_C;
    t.cols0 = col0 + step;
    t.cols1 = col0 + step + 4u * LANES_C;
    t.cols2 = col0 + step + 8u * LANES_C;
    t.cols3 = col0 + step + 12u * LANES_C;
    // Past the edge, rows and columns re-read the last one, as in `register`.
    let last_r = p.rows - 1u;
    let a_lo = min(row0 + lane, last_r) * p.a_rs + p.a_off;
    let a_hi = min(row0 + lane + 8u, last_r) * p.a_rs + p.a_off;
    let last_c = vec4u(p.cols - 1u);
    let bc0 = min(t.cols0, last_c) * p.b_cs;
    let bc1 = min(t.cols1, last_c) * p.b_cs;
    let bc2 = min(t.cols2, last_c) * p.b_cs;
    let bc3 = min(t.cols3, last_c) * p.b_cs;
    var ka = 0u;
    var kb = 0u;
    for (var k = 0u; k < p.inner; k++) {
        let av = shared_rows(f32(a[a_lo + ka]), f32(a[a_hi + ka]));
        let a0 = av[0];
        let a1 = av[1];
        let a2 = av[2];
        let a3 = av[3];
        let b0 = load_b(kb, bc0);
        let b1 = load_b(kb, bc1);
        let b2 = load_b(kb, bc2);
        let b3 = load_b(kb, bc3);
        t.c00 += outer(a0, b0); t.c01 += outer(a0, b1); t.c02 += outer(a0, b2); t.c03 += outer(a0, b3);
        t.c10 += outer(a1, b0); t.c11 += outer(a1, b1); t.c12 += outer(a1, b2); t.c13 += outer(a1, b3);
        t.c20 += outer(a2, b0); t.c21 += outer(a2, b1); t.c22 += outer(a2, b2); t.c23 += outer(a2, b3);
        t.c30 += outer(a3, b0); t.c31 += outer(a3, b1); t.c32 += outer(a3, b2); t.c33 += outer(a3, b3);
        ka += p.a_cs;
        kb += p.b_rs;
    }
    return t;
}

@compute @workgroup_size(WG)
fn matmul_forward_subgroup(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
    if (!tile_in_range(wid, nwg, lid)) { return; }
    let t = tile_product_subgroup(wid, nwg, lid, lane);
    let last = vec4u(p.cols - 1u);
    store(t, mat4x4f(bias_at(min(t.cols0, last)), bias_at(min(t.cols1, last)), bias_at(min(t.cols2, last)), bias_at(min(t.cols3, last))));
}

@compute @workgroup_size(WG)
fn matmul_product_subgroup(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
    if (!tile_in_range(wid, nwg, lid)) { return; }
    store(tile_product_subgroup(wid, nwg, lid, lane), mat4x4f());
}
