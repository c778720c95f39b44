// Token + position embedding. Forward: out[b, t, :] = wte[ids[b, t], :] + wpe[t, :].
// Backward without atomics: dwte sums the positions of each distinct token, grouped on the host
// into a bucket table, in a fixed order; dwpe sums over the batch.

struct Params {
    b: u32,        // B
    t: u32,        // T
    c: u32,        // C
    v: u32,        // V: rows of the bound wte window
    block: u32,    // rows of wpe (>= T)
    acc_wpe: u32,  // backward: add to dwpe instead of overwriting
    v0: u32,       // first token of the bound wte window (tables over one binding are sharded)
}
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read_write> out: array<st>;  // (B, T, C)
@group(0) @binding(2) var<storage, read_write> ids: array<u32>; // (B, T) token ids < V
@group(0) @binding(3) var<storage, read_write> wte: array<st>;  // (V, C)
@group(0) @binding(4) var<storage, read_write> wpe: array<st>;  // (block, C)

// One invocation per element of out.
@compute @workgroup_size(WG)
fn embedding_forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.b * p.t * p.c) { return; }
    let bt = i / p.c;
    let c = i % p.c;
    let t = bt % p.t;
    let tok = ids[bt];
    if (tok < p.v0 || tok >= p.v0 + p.v) { return; }  // another shard's token
    out[i] = st(f32(wte[(tok - p.v0) * p.c + c]) + f32(wpe[t * p.c + c]));
}

@group(0) @binding(5) var<storage, read_write> dwte: array<st>;     // (V, C)
@group(0) @binding(6) var<storage, read_write> dwpe: array<st>;     // (block, C)
@group(0) @binding(7) var<storage, read_write> dout: array<st>;     // (B, T, C)
// Bucket table, N = B * T: [0] = U distinct tokens; [1, 1 + N) the distinct tokens ascending;
// [1 + N, 2 + 2N) start offsets (start[U] = N); [2 + 2N, 2 + 3N) flat positions b * T + t,
// grouped by token, ascending within a token. Unused slots are 0.
@group(0) @binding(8) var<storage, read_write> buckets: array<u32>; // (3N + 2)

// One invocation per (distinct token j, channel c), dispatched for N tokens: adds the sum
// of dout over the token's positions, in order, to dwte. Always adds: rows of tokens absent from
// the batch keep their value, so a backward that starts dwte zeroes it first.
@compute @workgroup_size(WG)
fn embedding_backward_wte(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    let j = i / p.c;
    let c = i % p.c;
    if (j >= buckets[0]) { return; }
    let n = p.b * p.t;
    let tok = buckets[1u + j];
    if (tok < p.v0 || tok >= p.v0 + p.v) { return; }  // another shard's token
    let k1 = buckets[2u + n + j];
    var s = 0.0;
    for (var k = buckets[1u + n + j]; k < k1; k++) {
        s += f32(dout[buckets[2u + 2u * n + k] * p.c + c]);
    }
    let o = (tok - p.v0) * p.c + c;
    dwte[o] = st(accumulate(f32(dwte[o]), s, 1u));
}

// One invocation per element (t, c) of dwpe: the sum over b of dout[b, t, c] in order; rows
// t >= T get 0 (or keep their value when accumulating).
@compute @workgroup_size(WG)
fn embedding_backward_wpe(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.block * p.c) { return; }
    let t = i / p.c;
    let c = i % p.c;
    var s = 0.0;
    if (t < p.t) {
        for (var b = 0u; b < p.b; b++) {
            s += f32(dout[(b * p.t + t) * p.c + c]);
        }
    }
    dwpe[i] = st(accumulate(f32(dwpe[i]), s, p.acc_wpe));
}
