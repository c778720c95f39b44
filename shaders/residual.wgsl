// Residual add. Forward: out = a + b. Backward: da (+)= dout, db (+)= dout.

struct Params { n: u32, acc_a: u32, acc_b: u32 }
@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read_write> out: array<st>;  // (n)
@group(0) @binding(2) var<storage, read_write> a: array<st>;    // (n)
@group(0) @binding(3) var<storage, read_write> b: array<st>;    // (n)

@compute @workgroup_size(WG)
fn residual_forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    out[i] = st(f32(a[i]) + f32(b[i]));
}

@group(0) @binding(4) var<storage, read_write> da: array<st>;    // (n)
@group(0) @binding(5) var<storage, read_write> db: array<st>;    // (n)
@group(0) @binding(6) var<storage, read_write> dout: array<st>;  // (n)

@compute @workgroup_size(WG)
fn residual_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) { return; }
    let g = f32(dout[i]);
    da[i] = st(accumulate(f32(da[i]), g, p.acc_a));
    db[i] = st(accumulate(f32(db[i]), g, p.acc_b));
}
