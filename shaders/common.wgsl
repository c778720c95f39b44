// Shared by every family (prepended after the storage-type alias): the flat invocation index of
// 1-D kernels dispatched over a 2-D grid, and the overwrite-or-accumulate rule of gradient writes.

override WG: u32 = 64;

fn flat_index(wid: vec3u, nwg: vec3u, lid: vec3u) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid.x;
}

// Gradients either start a tensor (acc == 0) or add to what an earlier rule wrote (acc == 1).
// A select, not a multiply: the old value may be uninitialised memory (NaN * 0 is NaN).
fn accumulate(old: f32, v: f32, acc: u32) -> f32 {
    return select(v, old + v, acc != 0u);
}

// vec4 kernels: each invocation takes 4 vec4s (j < 4) at a stride of WG, so side-by-side
// invocations touch neighbouring vec4s (coalesced on GPUs).
fn vec4_index(wid: vec3u, nwg: vec3u, lid: vec3u, j: u32) -> u32 {
    return ((wid.y * nwg.x + wid.x) * 4u + j) * WG + lid.x;
}
