// ---- Variant `shared` (appended to attention.wgsl, in a module of its own because it needs the
// adapter's SUBGROUP feature): the `rows` kernels with the other side's loads shared across a
// subgroup of 8.
//
// The 8 invocations of a subgroup take 8 consecutive row blocks (64 rows) of one (b, h), so at
// every step they need the same KB = 8 keys (queries): each loads one of them and takes the other
// 7 from its neighbours with subgroupBroadcast, 1 storage load per element instead of 8. On
// lavapipe, where a storage load is a per-lane scalar loop and a broadcast is one vector shuffle,
// that is most of the kernels' cost. The price is the causal mask's: every lane loops as far as
// the subgroup's last row (from its first, in attention_backward_dkv), and the extra steps are
// masked out. They add exact zeros, so each row's sums are the `rows` kernels' in the same order.
// With 64-row groups they are, by count, about a third of the work at T = 128 and 6% at T = 1024.
//
// The lanes are numbered by invocation (lane = i % 8), which holds where subgroups are exactly 8
// wide and made of consecutive invocations: the variant is offered only where a probe found that
// (`gpu/subgroup_lanes.rs`).

var<private> lane: u32;

// Invocation i: lane i % 8 of subgroup i / 8; subgroups are numbered (b, h) fastest, and their
// 64-row groups last first when `late_first`.
fn block_of(i: u32, late_first: bool) -> Block {
    lane = i % 8u;
    let nbh = p.b * p.nh;
    let ngrp = (p.t + 8u * R - 1u) / (8u * R);
    let g = i / 8u;
    let k = g / nbh;
    let t0 = (select(k, ngrp - 1u - k, late_first) * 8u + lane) * R;
    let ra = vec4u(t0) + vec4u(0u, 1u, 2u, 3u);
    let rb = ra + 4u;
    let last = min(t0 + R - 1u, p.t - 1u);
    return Block(g % nbh, t0, ra, rb, min(ra, vec4u(last)), min(rb, vec4u(last)), last);
}

// A multiple of 8, so the invocations past the end, which return first, are whole subgroups.
fn lane_blocks() -> u32 {
    return p.b * p.nh * ((p.t + 8u * R - 1u) / (8u * R)) * 8u;
}

fn lane_in_subgroup() -> u32 {
    return lane;
}

fn keys_last(blk: Block) -> u32 {
    return subgroupMax(blk.last);
}

fn queries_first(blk: Block) -> u32 {
    return subgroupMin(blk.t0);
}

fn share8(x: f32) -> array<f32, KB> {
    return array<f32, KB>(
        subgroupBroadcast(x, 0u), subgroupBroadcast(x, 1u), subgroupBroadcast(x, 2u), subgroupBroadcast(x, 3u),
        subgroupBroadcast(x, 4u), subgroupBroadcast(x, 5u), subgroupBroadcast(x, 6u), subgroupBroadcast(x, 7u),
    );
}

fn qkv8(o: Rows8, d: u32) -> array<f32, KB> {
    return share8(f32(qkv[o.mine + d]));
}

fn dout8(o: Rows8, d: u32) -> array<f32, KB> {
    return share8(f32(dout[o.mine + d]));
}
