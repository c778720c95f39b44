// GELU's tanh form and its derivative on vec4s: the gelu kernels (gelu.wgsl) and the matmul
// epilogues that fold GELU into a product (matmul.wgsl) share them, so fused and unfused results
// are the same arithmetic.

const GELU_K: f32 = 0.7978845608028654;
const GELU_A: f32 = 0.044715;
// 1 + tanh(u) = 2 sigmoid(2u) and 1 - tanh(u) = 2 sigmoid(-2u): written this way, both stay
// accurate where tanh is near -1 or 1 (1 + tanh(u) there would cancel to a few bits in f32).
// u is clamped so exp stays finite on every backend.
// One exp serves both: with e = exp(-2u), (1 + t) / 2 = 1 / (1 + e) and (1 - t) / 2 = e / (1 + e).
fn gelu_halves(x: vec4f) -> array<vec4f, 2> {
    let u = clamp(GELU_K * (x + GELU_A * x * x * x), vec4f(-15.0), vec4f(15.0));
    let e = exp(-2.0 * u);
    let h = 1.0 / (1.0 + e);
    return array<vec4f, 2>(h, e * h);  // (1 + t) / 2, (1 - t) / 2
}

fn gelu_fwd(v: vec4f) -> vec4f {
    return v * gelu_halves(v)[0];
}

fn gelu_bwd(v: vec4f, g: vec4f) -> vec4f {
    let h = gelu_halves(v);
    return g * (h[0] + 2.0 * v * h[0] * h[1] * GELU_K * (1.0 + 3.0 * GELU_A * v * v));
}
