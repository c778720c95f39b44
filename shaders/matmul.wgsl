// Matrix products of the linear layers (Hugging Face Conv1D layout: out = x W + bias, W (K, N)) and
// of the tied lm_head (W = wte stored (N, K)). Forward, dx and dW all run one register-tiled kernel,
// C (rows, cols) = A (rows, inner) B (inner, cols), with A and B read through strides from Params.

struct Params {
    rows: u32,        // rows of C: M (forward, dx), K or N (dW)
    cols: u32,        // columns of C: N (forward), K (dx), N or K (dW)
    inner: u32,       // summed dimension: K (forward), N (dx), M (dW)
    a_rs: u32,        // A[i, k] = a[i * a_rs + k * a_cs]
    a_cs: u32,
    b_rs: u32,        // B[k, j] = b[k * b_rs + j * b_cs]
    b_cs: u32,
    col_groups: u32,  // workgroups along the columns of C
    acc: u32,         // add to c instead of overwriting (0 for the forward)
    a_off: u32,       // first element of A in a
    c_rs: u32,        // C[i, j] = c[c_off + i * c_rs + j]: C may be columns of a wider matrix
    c_off: u32,
    lanes_r: u32,     // register and subgroup variants: row lanes of a workgroup; LANES_C * lanes_r <= WG
    res: u32,         // forward with a bias: add res (at C's offsets) too, out = res + x W + bias
    gelu: u32,        // 1 (forward): also write gelu(C) to gt; 2 (dx): C = (A B) gelu'(gt), gt the GELU input
    acc_b: u32,       // dW with the bias gradient (`*_colsum`): add to bias instead of overwriting
    chunk: u32,       // the same: rows of B per partial column sum (reduce.wgsl's colsum chunk)
}
@group(0) @binding(0) var<uniform> p: Params;

// The bindings are the operands of the product, whatever the pass. Forward: c = out (M, N),
// a = x (M, K), b = W. dx: c = dx (M, K), a = dout (M, N), b = W. dW: c = dW (K, N), a = x,
// b = dout; with the (N, K) layout c = dW (N, K), a = dout, b = x.
@group(0) @binding(1) var<storage, read_write> c: array<st>;     // (rows, cols)
@group(0) @binding(2) var<storage, read_write> a: array<st>;     // (rows, inner) through strides
@group(0) @binding(3) var<storage, read_write> b: array<st>;     // (inner, cols) through strides
// The bias (N) of a forward; in the dW entry points `*_colsum`, the bias gradient they write.
@group(0) @binding(4) var<storage, read_write> bias: array<st>;
// The residual stream a projection adds to (the scheduler folds `x + linear(y)` into the linear):
// read only when p.res is set; otherwise the dispatch binds a small placeholder here.
@group(0) @binding(5) var<storage, read_write> res: array<st>;   // (M, N), forward with a bias only
// GELU folded into a product (`graph::fuse`): the forward of c_fc writes the activation here beside
// its input C, and the dx product of the next linear reads that input here to write dL/d(input)
// directly. A placeholder when p.gelu is 0.
@group(0) @binding(6) var<storage, read_write> gt: array<st>;    // C's shape and offsets

// Each invocation computes a 16 x 16 register tile of C: rows row0 .. row0 + 15 and columns
// col0 + LANES_C t (t < 16), as 4 x 4 blocks of mat4x4f (column r of block (i, j) = row 4 i + r,
// columns cols_j). A workgroup is lanes_r row lanes by LANES_C column lanes (invocations past
// them return at once), so the invocations that run side by side read neighbouring columns of B.
// The lanes are set per product by the Rust side, so narrow C (N = 128) does not compute mostly
// padding. LANES_C is 8 or 16 (as a uniform the products ran 1.5x slower on lavapipe) and lanes_r
// a uniform, and every pass without a bias is one entry point (`matmul_product`), so a step needs
// at most four matmul pipelines, where per-product workgroup shapes made ten; lavapipe spends
// about 3.5 s compiling each.
//
// Why this shape: on lavapipe (Mesa 22.3 llvmpipe) every storage load, even one whose address is
// the same for all lanes (only workgroup_id and uniforms), runs as a per-lane scalar loop, so the
// loads per multiply-add set the speed: this tile does 256 of those per 32 loads. Measured and
// dropped: tall tiles with A read at lane-uniform addresses (as slow per load, 2.5x slower
// overall), 4 x 8 tiles (2.5x slower), vec4 loads through array<vec4> views (no gain), 32 x 16
// tiles (minutes of llvmpipe compile time per pipeline for a small gain).
//
// No shared memory, no barriers; each output is one sum in k order, whatever the grid or the
// tile shape, so results are deterministic and do not depend on how a product is split.
const TM: u32 = 16u;
const TN: u32 = 16u;
override LANES_C: u32 = 16u;

fn tile_rows() -> u32 {
    return p.lanes_r * TM;
}

fn tile_cols() -> u32 {
    return LANES_C * TN;
}

// False for the workgroups of a folded 2-D grid that lie past the last tile, and for the
// invocations past the workgroup's lanes.
fn tile_in_range(wid: vec3u, nwg: vec3u, lid: vec3u) -> bool {
    return wid.y * nwg.x + wid.x < p.col_groups * ((p.rows + tile_rows() - 1u) / tile_rows())
        && lid.x < LANES_C * p.lanes_r;
}

// Column sums of B in reduce.wgsl's colsum order: the rows of each chunk of p.chunk summed in
// order from zero (`part`), then the chunks' sums in order from zero (`total`). In the dW product
// B is dout, so these are the bias gradient, bit for bit what the two colsum kernels write, from
// values the product loads anyway (`matmul_product_colsum*`).
struct ColSum {
    part: array<vec4f, 4>,
    total: array<vec4f, 4>,
}

// s with row k of B's columns (4 blocks) added, the chunk closed at its last row. (By value: naga
// 30's SPIR-V writer fails on a pointer to a member of the tile passed to a function.)
fn colsum_add(sums: ColSum, b: array<vec4f, 4>, k: u32) -> ColSum {
    var s = sums;
    s.part[0] += b[0]; s.part[1] += b[1]; s.part[2] += b[2]; s.part[3] += b[3];
    if ((k + 1u) % p.chunk == 0u || k + 1u == p.inner) {
        s.total[0] += s.part[0]; s.total[1] += s.part[1]; s.total[2] += s.part[2]; s.total[3] += s.part[3];
        s.part = array<vec4f, 4>();
    }
    return s;
}

// bias[cols] (+)= v for the columns inside C, by the invocation whose tile holds C's row 0.
fn store_colsum(row0: u32, cols: vec4u, v: vec4f) {
    if (row0 != 0u) { return; }
    for (var q = 0u; q < 4u; q++) {
        if (cols[q] < p.cols) {
            bias[cols[q]] = st(accumulate(f32(bias[cols[q]]), v[q], p.acc_b));
        }
    }
}

struct Tile {
    row0: u32,
    // Columns of the 4 column blocks; past the edge they are computed but not stored.
    cols0: vec4u, cols1: vec4u, cols2: vec4u, cols3: vec4u,
    c00: mat4x4f, c01: mat4x4f, c02: mat4x4f, c03: mat4x4f,
    c10: mat4x4f, c11: mat4x4f, c12: mat4x4f, c13: mat4x4f,
    c20: mat4x4f, c21: mat4x4f, c22: mat4x4f, c23: mat4x4f,
    c30: mat4x4f, c31: mat4x4f, c32: mat4x4f, c33: mat4x4f,
    sums: ColSum,  // B's column sums, when the product is asked for them
}

fn outer(u: vec4f, v: vec4f) -> mat4x4f {
    return mat4x4f(u.x * v, u.y * v, u.z * v, u.w * v);
}

fn spread(v: vec4f) -> mat4x4f {
    return mat4x4f(v, v, v, v);
}

// A[rows, k] for 4 rows given as offsets rows * a_rs; ka = k * a_cs.
fn load_a(rows: vec4u, ka: u32) -> vec4f {
    return vec4f(f32(a[rows.x + ka]), f32(a[rows.y + ka]), f32(a[rows.z + ka]), f32(a[rows.w + ka]));
}

// B[k, cols] for 4 columns given as offsets cols * b_cs; kb = k * b_rs.
fn load_b(kb: u32, cols: vec4u) -> vec4f {
    return vec4f(f32(b[kb + cols.x]), f32(b[kb + cols.y]), f32(b[kb + cols.z]), f32(b[kb + cols.w]));
}

// The invocation's tile with zero sums: its first row and its 4 column blocks.
fn tile_at(wid: vec3u, nwg: vec3u, lid: vec3u) -> Tile {
    let g = wid.y * nwg.x + wid.x;
    var t: Tile;
    t.row0 = (g / p.col_groups) * tile_rows() + (lid.x / LANES_C) * TM;
    let col0 = vec4u((g % p.col_groups) * tile_cols() + lid.x % LANES_C);
    let step = vec4u(0u, 1u, 2u, 3u) * LANES_C;
    t.cols0 = col0 + step;
    t.cols1 = col0 + step + 4u * LANES_C;
    t.cols2 = col0 + step + 8u * LANES_C;
    t.cols3 = col0 + step + 12u * LANES_C;
    return t;
}

// B's offsets for the tile's 4 column blocks; past the edge, columns re-read the last one: no
// branch in the loop.
fn b_cols(t: Tile) -> array<vec4u, 4> {
    let last_c = vec4u(p.cols - 1u);
    return array<vec4u, 4>(min(t.cols0, last_c) * p.b_cs, min(t.cols1, last_c) * p.b_cs,
                           min(t.cols2, last_c) * p.b_cs, min(t.cols3, last_c) * p.b_cs);
}

// One k of the tile: the 16 outer products of A's 4 row blocks and B's 4 column blocks.
fn tile_step(t: ptr<function, Tile>, a0: vec4f, a1: vec4f, a2: vec4f, a3: vec4f, b: array<vec4f, 4>) {
    (*t).c00 += outer(a0, b[0]); (*t).c01 += outer(a0, b[1]); (*t).c02 += outer(a0, b[2]); (*t).c03 += outer(a0, b[3]);
    (*t).c10 += outer(a1, b[0]); (*t).c11 += outer(a1, b[1]); (*t).c12 += outer(a1, b[2]); (*t).c13 += outer(a1, b[3]);
    (*t).c20 += outer(a2, b[0]); (*t).c21 += outer(a2, b[1]); (*t).c22 += outer(a2, b[2]); (*t).c23 += outer(a2, b[3]);
    (*t).c30 += outer(a3, b[0]); (*t).c31 += outer(a3, b[1]); (*t).c32 += outer(a3, b[2]); (*t).c33 += outer(a3, b[3]);
}

fn load_b4(kb: u32, bc: array<vec4u, 4>) -> array<vec4f, 4> {
    return array<vec4f, 4>(load_b(kb, bc[0]), load_b(kb, bc[1]), load_b(kb, bc[2]), load_b(kb, bc[3]));
}

// `colsum` (a constant at every call) also sums B's columns into t.sums.
fn tile_product(wid: vec3u, nwg: vec3u, lid: vec3u, colsum: bool) -> Tile {
    var t = tile_at(wid, nwg, lid);
    // Past the edge, rows re-read the last one: no branch in the loop.
    let r = vec4u(t.row0) + vec4u(0u, 1u, 2u, 3u);
    let last_r = vec4u(p.rows - 1u);
    let ar0 = min(r, last_r) * p.a_rs + p.a_off;
    let ar1 = min(r + 4u, last_r) * p.a_rs + p.a_off;
    let ar2 = min(r + 8u, last_r) * p.a_rs + p.a_off;
    let ar3 = min(r + 12u, last_r) * p.a_rs + p.a_off;
    let bc = b_cols(t);
    var ka = 0u;
    var kb = 0u;
    for (var k = 0u; k < p.inner; k++) {
        let bv = load_b4(kb, bc);
        tile_step(&t, load_a(ar0, ka), load_a(ar1, ka), load_a(ar2, ka), load_a(ar3, ka), bv);
        if (colsum && t.row0 == 0u) { t.sums = colsum_add(t.sums, bv, k); }
        ka += p.a_cs;
        kb += p.b_rs;
    }
    return t;
}

// c[i, cols] (+)= v for the 4 columns inside C; in the fused entry points (`fused`, a constant at
// every call), through the GELU epilogue p.gelu asks for. The plain entry points pass false, so
// after inlining their stores are as short as before fusion existed: on lavapipe the epilogue code
// alone, never run, made every product 4-12% slower.
fn store_row(i: u32, cols: vec4u, value: vec4f, fused: bool) {
    if (i >= p.rows) { return; }
    let row = p.c_off + i * p.c_rs;
    var v = value;
    if (fused && p.gelu == 2u) {
        let o = vec4u(row) + min(cols, vec4u(p.cols - 1u));
        v = gelu_bwd(vec4f(f32(gt[o.x]), f32(gt[o.y]), f32(gt[o.z]), f32(gt[o.w])), v);
    }
    for (var q = 0u; q < 4u; q++) {
        if (cols[q] < p.cols) {
            let o = row + cols[q];
            c[o] = st(accumulate(f32(c[o]), v[q], p.acc));
        }
    }
    if (fused && p.gelu == 1u) {
        // Of the values as stored (rounded to st), as the unfused kernel reads them.
        let g = gelu_fwd(vec4f(vec4<st>(v)));
        for (var q = 0u; q < 4u; q++) {
            if (cols[q] < p.cols) {
                gt[row + cols[q]] = st(g[q]);
            }
        }
    }
}

fn store_colsums(t: Tile) {
    store_colsum(t.row0, t.cols0, t.sums.total[0]); store_colsum(t.row0, t.cols1, t.sums.total[1]);
    store_colsum(t.row0, t.cols2, t.sums.total[2]); store_colsum(t.row0, t.cols3, t.sums.total[3]);
}

fn store_block(i: u32, cols: vec4u, m: mat4x4f, fused: bool) {
    store_row(i, cols, m[0], fused);
    store_row(i + 1u, cols, m[1], fused);
    store_row(i + 2u, cols, m[2], fused);
    store_row(i + 3u, cols, m[3], fused);
}

// c (+)= the tile (acc = 0 overwrites: the old value is never used).
fn store(t: Tile, fused: bool) {
    store_block(t.row0 + 0u, t.cols0, t.c00, fused); store_block(t.row0 + 0u, t.cols1, t.c01, fused);
    store_block(t.row0 + 0u, t.cols2, t.c02, fused); store_block(t.row0 + 0u, t.cols3, t.c03, fused);
    store_block(t.row0 + 4u, t.cols0, t.c10, fused); store_block(t.row0 + 4u, t.cols1, t.c11, fused);
    store_block(t.row0 + 4u, t.cols2, t.c12, fused); store_block(t.row0 + 4u, t.cols3, t.c13, fused);
    store_block(t.row0 + 8u, t.cols0, t.c20, fused); store_block(t.row0 + 8u, t.cols1, t.c21, fused);
    store_block(t.row0 + 8u, t.cols2, t.c22, fused); store_block(t.row0 + 8u, t.cols3, t.c23, fused);
    store_block(t.row0 + 12u, t.cols0, t.c30, fused); store_block(t.row0 + 12u, t.cols1, t.c31, fused);
    store_block(t.row0 + 12u, t.cols2, t.c32, fused); store_block(t.row0 + 12u, t.cols3, t.c33, fused);
}

// out (M, N) = x (M, K) W + bias (N). W is (K, N) or (N, K) (the strides say which).
@compute @workgroup_size(WG)
fn matmul_forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    if (!tile_in_range(wid, nwg, lid)) { return; }
    store_forward(tile_product(wid, nwg, lid, false), false);
}

// The same plus res (M, N) when p.res is set, and gelu(out) into gt when p.gelu is 1.
@compute @workgroup_size(WG)
fn matmul_forward_fused(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    if (!tile_in_range(wid, nwg, lid)) { return; }
    store_forward(tile_product(wid, nwg, lid, false), true);
}

fn bias_at(j: vec4u) -> vec4f {
    return vec4f(f32(bias[j.x]), f32(bias[j.y]), f32(bias[j.z]), f32(bias[j.w]));
}

// res[i, cols], clamped to C's last row and column (those lanes store nothing).
fn res_row(i: u32, cols: vec4u) -> vec4f {
    let o = vec4u(p.c_off + min(i, p.rows - 1u) * p.c_rs) + min(cols, vec4u(p.cols - 1u));
    return vec4f(f32(res[o.x]), f32(res[o.y]), f32(res[o.z]), f32(res[o.w]));
}

fn res_block(i: u32, cols: vec4u) -> mat4x4f {
    return mat4x4f(res_row(i, cols), res_row(i + 1u, cols), res_row(i + 2u, cols), res_row(i + 3u, cols));
}

// Block (i, cols) of the forward's output: the product plus the bias, then the residual when
// p.res is set, in the order the unfused ops add them (f32 results are the same bits).
fn epilogue(c: mat4x4f, bias: vec4f, i: u32, cols: vec4u, fused: bool) -> mat4x4f {
    var v = c + spread(bias);
    if (fused && p.res != 0u) {
        v += res_block(i, cols);
    }
    return v;
}

// The forward's stores for the register and subgroup tiles.
fn store_forward(tile: Tile, fused: bool) {
    var t = tile;
    let last = vec4u(p.cols - 1u);
    let b0 = bias_at(min(t.cols0, last));
    let b1 = bias_at(min(t.cols1, last));
    let b2 = bias_at(min(t.cols2, last));
    let b3 = bias_at(min(t.cols3, last));
    t.c00 = epilogue(t.c00, b0, t.row0, t.cols0, fused); t.c01 = epilogue(t.c01, b1, t.row0, t.cols1, fused);
    t.c02 = epilogue(t.c02, b2, t.row0, t.cols2, fused); t.c03 = epilogue(t.c03, b3, t.row0, t.cols3, fused);
    t.c10 = epilogue(t.c10, b0, t.row0 + 4u, t.cols0, fused); t.c11 = epilogue(t.c11, b1, t.row0 + 4u, t.cols1, fused);
    t.c12 = epilogue(t.c12, b2, t.row0 + 4u, t.cols2, fused); t.c13 = epilogue(t.c13, b3, t.row0 + 4u, t.cols3, fused);
    t.c20 = epilogue(t.c20, b0, t.row0 + 8u, t.cols0, fused); t.c21 = epilogue(t.c21, b1, t.row0 + 8u, t.cols1, fused);
    t.c22 = epilogue(t.c22, b2, t.row0 + 8u, t.cols2, fused); t.c23 = epilogue(t.c23, b3, t.row0 + 8u, t.cols3, fused);
    t.c30 = epilogue(t.c30, b0, t.row0 + 12u, t.cols0, fused); t.c31 = epilogue(t.c31, b1, t.row0 + 12u, t.cols1, fused);
    t.c32 = epilogue(t.c32, b2, t.row0 + 12u, t.cols2, fused); t.c33 = epilogue(t.c33, b3, t.row0 + 12u, t.cols3, fused);
    store(t, fused);
}

// C (+)= A B with no bias: the bias-free forward (out = x W), dx (dout W^T with W (K, N), or
// dout W with W (N, K)) and dW (x^T dout; with W (N, K), dout^T x). A bias binding would change
// the bind group layout, so the product with a bias has its own entry point.
@compute @workgroup_size(WG)
fn matmul_product(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    if (!tile_in_range(wid, nwg, lid)) { return; }
    store(tile_product(wid, nwg, lid, false), false);
}

// dW with the bias gradient (p.inner rows of B = dout): C (+)= A B and bias (+)= B's column sums.
@compute @workgroup_size(WG)
fn matmul_product_colsum(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    if (!tile_in_range(wid, nwg, lid)) { return; }
    let t = tile_product(wid, nwg, lid, true);
    store(t, false);
    store_colsums(t);
}

// dx with GELU's backward folded in (p.gelu = 2): C = (A B) gelu'(gt).
@compute @workgroup_size(WG)
fn matmul_product_gelu(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
    if (!tile_in_range(wid, nwg, lid)) { return; }
    store(tile_product(wid, nwg, lid, false), true);
}

// ---- Variant `tiled` (GPUs): a 64 x 64 tile of C per workgroup of 256 invocations, staged through
// workgroup memory in k steps of 16, each invocation accumulating a 4 x 4 block in registers.
// A and B are read from global memory once per workgroup tile instead of once per invocation
// tile, and side-by-side invocations load neighbouring addresses of whichever stride is 1.
// 8.5 KiB of workgroup memory and 256 invocations: within WebGPU's default limits. Each output is
// still one f32 sum in k order (the zeros padding k past `inner` add exactly nothing), so the
// variant is deterministic; it may round differently from `register` (fused multiply-adds).
const TB: u32 = 64u;   // rows and columns of C per workgroup
const TK: u32 = 16u;   // k per stage
// A stage holds A[tile_r + 4 q + r, k0 + kk] at sa[kk * SP + q][r] (B likewise by column), so the
// inner loop reads one vec4 of each per k. Every invocation stores whole vec4s (one of A, one of
// B): invocations writing parts of one vec4 would race in WGSL's memory model. Rows are padded to
// SP = 17 vec4s so that stores with k as the fastest lane index spread over the memory banks.
const SP: u32 = 17u;
var<workgroup> sa: array<vec4f, 272>;
var<workgroup> sb: array<vec4f, 272>;

struct Block {
    row0: u32,  // first of the invocation's 4 rows
    col0: u32,  // first of its 4 columns
    c: mat4x4f, // c[r] = row row0 + r, columns col0 .. col0 + 3
    part: vec4f,   // B's sums over columns col0 .. col0 + 3, as ColSum (for `colsum`)
    total: vec4f,
}

fn tiled_in_range(wid: vec3u, nwg: vec3u) -> bool {
    return wid.y * nwg.x + wid.x < p.col_groups * ((p.rows + TB - 1u) / TB);
}

fn a_at(i: u32, k: u32) -> f32 {
    if (i >= p.rows || k >= p.inner) { return 0.0; }
    return f32(a[p.a_off + i * p.a_rs + k * p.a_cs]);
}

fn b_at(k: u32, j: u32) -> f32 {
    if (k >= p.inner || j >= p.cols) { return 0.0; }
    return f32(b[k * p.b_rs + j * p.b_cs]);
}

// `colsum`: also B's column sums, in ColSum's order (chunks are whole stages: p.chunk % TK == 0).
fn tiled_product(wid: vec3u, nwg: vec3u, lid: u32, colsum: bool) -> Block {
    let g = wid.y * nwg.x + wid.x;
    let tile_r = (g / p.col_groups) * TB;
    let tile_c = (g % p.col_groups) * TB;
    var blk: Block;
    blk.row0 = tile_r + (lid / 16u) * 4u;
    blk.col0 = tile_c + (lid % 16u) * 4u;
    // Which vec4 of the stage this invocation loads: along k where k is the contiguous stride
    // (a_cs == 1: side-by-side invocations read neighbouring addresses), else along the rows (and
    // the same for B's columns).
    var qa = lid % 16u;
    var ka = lid / 16u;
    if (p.a_cs == 1u) { qa = lid / 16u; ka = lid % 16u; }
    var qb = lid % 16u;
    var kb = lid / 16u;
    if (p.b_rs == 1u) { qb = lid / 16u; kb = lid % 16u; }
    let i = tile_r + 4u * qa;
    let j = tile_c + 4u * qb;
    for (var k0 = 0u; k0 < p.inner; k0 += TK) {
        let k = k0 + ka;
        sa[ka * SP + qa] = vec4f(a_at(i, k), a_at(i + 1u, k), a_at(i + 2u, k), a_at(i + 3u, k));
        let kj = k0 + kb;
        sb[kb * SP + qb] = vec4f(b_at(kj, j), b_at(kj, j + 1u), b_at(kj, j + 2u), b_at(kj, j + 3u));
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let av = sa[kk * SP + lid / 16u];
            let bv = sb[kk * SP + lid % 16u];
            blk.c += outer(av, bv);
            if (colsum && k0 + kk < p.inner) { blk.part += bv; }
        }
        let k1 = min(k0 + TK, p.inner);
        if (colsum && (k1 % p.chunk == 0u || k1 == p.inner)) {
            blk.total += blk.part;
            blk.part = vec4f(0.0);
        }
        workgroupBarrier();
    }
    return blk;
}

fn store_tiled(blk: Block, fused: bool) {
    let cols = vec4u(blk.col0) + vec4u(0u, 1u, 2u, 3u);
    store_row(blk.row0, cols, blk.c[0], fused);
    store_row(blk.row0 + 1u, cols, blk.c[1], fused);
    store_row(blk.row0 + 2u, cols, blk.c[2], fused);
    store_row(blk.row0 + 3u, cols, blk.c[3], fused);
}

fn forward_tiled(wid: vec3u, nwg: vec3u, lid: u32, fused: bool) {
    if (!tiled_in_range(wid, nwg)) { return; }
    var blk = tiled_product(wid, nwg, lid, false);
    let cols = vec4u(blk.col0) + vec4u(0u, 1u, 2u, 3u);
    blk.c = epilogue(blk.c, bias_at(min(cols, vec4u(p.cols - 1u))), blk.row0, cols, fused);
    store_tiled(blk, fused);
}

@compute @workgroup_size(256)
fn matmul_forward_tiled(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    forward_tiled(wid, nwg, lid, false);
}

@compute @workgroup_size(256)
fn matmul_forward_fused_tiled(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    forward_tiled(wid, nwg, lid, true);
}

@compute @workgroup_size(256)
fn matmul_product_tiled(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    if (!tiled_in_range(wid, nwg)) { return; }
    store_tiled(tiled_product(wid, nwg, lid, false), false);
}

@compute @workgroup_size(256)
fn matmul_product_colsum_tiled(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    if (!tiled_in_range(wid, nwg)) { return; }
    let blk = tiled_product(wid, nwg, lid, true);
    store_tiled(blk, false);
    store_colsum(blk.row0, vec4u(blk.col0) + vec4u(0u, 1u, 2u, 3u), blk.total);
}

@compute @workgroup_size(256)
fn matmul_product_gelu_tiled(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
    if (!tiled_in_range(wid, nwg)) { return; }
    store_tiled(tiled_product(wid, nwg, lid, false), true);
}
