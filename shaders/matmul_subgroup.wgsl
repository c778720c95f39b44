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

fn tile_product_subgroup(wid: vec3u, nwg: vec3u, lid: vec3u, lane: u32, colsum: bool) -> Tile {
    var t = tile_at(wid, nwg, lid);
    let row0 = t.row0;
    // All 8 lanes of the subgroup active, on the same rows, numbered as the invocations: else the
    // plain tile. (Browsers would also want `diagnostic(off, subgroup_uniformity)` here, after the
    // early return on `lid`; the variant is native-only for now.)
    let lined_up = subgroupAdd(1u) == 8u && subgroupAll(lane == lid.x % 8u && subgroupBroadcast(row0, 0u) == row0);
    if (!lined_up) {
        return tile_product(wid, nwg, lid, colsum);
    }
    // Past the edge, rows re-read the last one, as in `register`.
    let last_r = p.rows - 1u;
    let a_lo = min(row0 + lane, last_r) * p.a_rs + p.a_off;
    let a_hi = min(row0 + lane + 8u, last_r) * p.a_rs + p.a_off;
    let bc = b_cols(t);
    var ka = 0u;
    var kb = 0u;
    for (var k = 0u; k < p.inner; k++) {
        let av = shared_rows(f32(a[a_lo + ka]), f32(a[a_hi + ka]));
        let bv = load_b4(kb, bc);
        tile_step(&t, av[0], av[1], av[2], av[3], bv);
        if (colsum && t.row0 == 0u) { t.sums = colsum_add(t.sums, bv, k); }
        ka += p.a_cs;
        kb += p.b_rs;
    }
    return t;
}

@compute @workgroup_size(WG)
fn matmul_forward_subgroup(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
    if (!tile_in_range(wid, nwg, lid)) { return; }
    store_forward(tile_product_subgroup(wid, nwg, lid, lane, false), false);
}

@compute @workgroup_size(WG)
fn matmul_forward_fused_subgroup(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
    if (!tile_in_range(wid, nwg, lid)) { return; }
    store_forward(tile_product_subgroup(wid, nwg, lid, lane, false), true);
}

@compute @workgroup_size(WG)
fn matmul_product_subgroup(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
    if (!tile_in_range(wid, nwg, lid)) { return; }
    store(tile_product_subgroup(wid, nwg, lid, lane, false), false);
}

@compute @workgroup_size(WG)
fn matmul_product_colsum_subgroup(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
    if (!tile_in_range(wid, nwg, lid)) { return; }
    let t = tile_product_subgroup(wid, nwg, lid, lane, true);
    store(t, false);
    store_colsums(t);
}

@compute @workgroup_size(WG)
fn matmul_product_gelu_subgroup(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
    if (!tile_in_range(wid, nwg, lid)) { return; }
    store(tile_product_subgroup(wid, nwg, lid, lane, false), true);
}
