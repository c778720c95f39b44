// Residual add. Forward: out = a + b. Backward: da (+)= dout, db (+)= dout.
// When n is a multiple of 4 the `4` entry points run instead, over vec4 views of the same tensors
// (see gelu.wgsl: on CPU backends each per-invocation storage access is a loop over SIMD lanes, so
// vec4 accesses and several per invocation cut that overhead), with p.n counting vec4s.

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

@group(0) @binding(7) var<storage, read_write> out4: array<vec4<st>>;   // (n / 4)
@group(0) @binding(8) var<storage, read_write> a4: array<vec4<st>>;     // (n / 4)
@group(0) @binding(9) var<storage, read_write> b4: array<vec4<st>>;     // (n / 4)
@group(0) @binding(10) var<storage, read_write> da4: array<vec4<st>>;   // (n / 4)
@group(0) @binding(11) var<storage, read_write> db4: array<vec4<st>>;   // (n / 4)
@group(0) @binding(12) var<storage, read_write> dout4: array<vec4<st>>; // (n / 4)

// Invocation (group g, lane l) handles vec4s (4 g + j) * WG + l, j < 4: consecutive lanes touch
// consecutive vec4s (coalesced on GPUs).
@compute @workgroup_size(WG)
fn residual_forward4(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    for (var j = 0u; j < 4u; j++) {
        let i = vec4_index(wid, nwg, lid, j);
        if (i < p.n) {
            out4[i] = vec4<st>(vec4f(a4[i]) + vec4f(b4[i]));
        }
    }
}

@compute @workgroup_size(WG)
fn residual_backward4(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    for (var j = 0u; j < 4u; j++) {
        let i = vec4_index(wid, nwg, lid, j);
        if (i < p.n) {
            let v = vec4f(dout4[i]);
            // A select, not a multiply, as in accumulate().
            da4[i] = vec4<st>(select(v, vec4f(da4[i]) + v, p.acc_a != 0u));
            db4[i] = vec4<st>(select(v, vec4f(db4[i]) + v, p.acc_b != 0u));
        }
    }
}
