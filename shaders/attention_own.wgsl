// ---- Variant `rows` (appended to attention.wgsl in the plain module, with attention_tiled.wgsl):
// every invocation reads the other side's rows itself and loops over its own rows' keys
// (queries) only. No subgroup operations, so every adapter and the browser run it.

fn block_of(i: u32, late_first: bool) -> Block {
    return block(i, late_first);
}

fn lane_blocks() -> u32 {
    return num_blocks();
}

fn lane_in_subgroup() -> u32 {
    return 0u;
}

fn keys_last(blk: Block) -> u32 {
    return blk.last;
}

fn queries_first(blk: Block) -> u32 {
    return blk.t0;
}

fn qkv8(o: Rows8, d: u32) -> array<f32, KB> {
    var r = array<f32, KB>();
    for (var j = 0u; j < KB; j++) {
        r[j] = f32(qkv[o.at[j] + d]);
    }
    return r;
}

fn dout8(o: Rows8, d: u32) -> array<f32, KB> {
    var r = array<f32, KB>();
    for (var j = 0u; j < KB; j++) {
        r[j] = f32(dout[o.at[j] + d]);
    }
    return r;
}
