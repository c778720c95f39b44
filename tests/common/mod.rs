//! Shared test helpers: the GPU (a clear failure when there is none, never a silent skip), random
//! data, a one-shot kernel runner over the real executor, and tolerant comparisons that print the
//! first mismatches and the max abs/rel error. The GPU calls are async and `#[gpu_test]` runs an
//! async test natively (pollster) and in a browser (wasm-bindgen-test, `make test-web`), so the
//! kernel tests run unchanged on both.
#![allow(dead_code)]

pub mod fixture;
#[cfg(not(target_arch = "wasm32"))]
pub mod process;

#[cfg(not(target_arch = "wasm32"))]
#[allow(unused_imports)]
pub use pollster::test as gpu_test;
#[cfg(target_arch = "wasm32")]
#[allow(unused_imports)]
pub use wasm_bindgen_test::wasm_bindgen_test as gpu_test;
#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

use rand::{Rng, SeedableRng};
use wgpt::gpu::tuning::KernelPolicy;
use wgpt::gpu::{BackendChoice, Gpu, PipelineCache, Program, Step, StorageType};
use wgpt::graph::{Class, DType, TensorId, Tensors};
use wgpt::ops::{matmul, Dispatch};

/// A file of the shared folder (WGPT_SHARED, which `.ci/run` sets; default ../shared).
pub fn shared(rel: &str) -> std::path::PathBuf {
    std::env::var("WGPT_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
        .join(rel)
}

/// A fresh, empty folder for one test's files (the process id keeps test binaries apart).
pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `wgpt: error:` line of a failed run's output, after checking it is the only one and
/// nothing panicked.
#[track_caller]
pub fn error_line(output: &str) -> &str {
    assert!(!output.contains("panicked") && !output.contains("RUST_BACKTRACE"), "wgpt panicked:\n{output}");
    let errors: Vec<&str> = output.lines().filter(|l| l.starts_with("wgpt: error:")).collect();
    assert_eq!(errors.len(), 1, "expected one error line:\n{output}");
    errors[0]
}

/// The adapter every test shares, opened once.
pub async fn open_gpu() -> &'static Gpu {
    #[cfg(not(target_arch = "wasm32"))]
    {
        static GPU: std::sync::OnceLock<Gpu> = std::sync::OnceLock::new();
        if let Some(g) = GPU.get() {
            return g;
        }
        // Two tests may open one each at first; one is kept.
        let _ = GPU.set(new_gpu().await);
        GPU.get().expect("set above")
    }
    #[cfg(target_arch = "wasm32")]
    {
        // wgpu's types are not Sync in a browser: one per (the only) thread.
        thread_local!(static GPU: std::cell::OnceCell<&'static Gpu> = const { std::cell::OnceCell::new() });
        if let Some(g) = GPU.with(|g| g.get().copied()) {
            return g;
        }
        let g: &'static Gpu = Box::leak(Box::new(new_gpu().await));
        GPU.with(|c| *c.get_or_init(|| g))
    }
}

async fn new_gpu() -> Gpu {
    let g = match Gpu::new(BackendChoice::Auto).await {
        Ok(g) => g,
        Err(e) => {
            panic!("GPU test needs a wgpu adapter and found none (CI={}): {e}", std::env::var("CI").unwrap_or_default())
        }
    };
    // `make test-gl` runs the kernel tests through the GL backend: fail rather than pass on another.
    #[cfg(not(target_arch = "wasm32"))]
    if let Some(want) = std::env::var("WGPT_REQUIRE_BACKEND").ok().filter(|w| !w.is_empty()) {
        let got = format!("{:?}", g.info.backend);
        assert!(got.eq_ignore_ascii_case(&want), "WGPT_REQUIRE_BACKEND={want} but the tests got {}", g.describe());
    }
    g
}

/// `open_gpu` for the native-only tests, which block.
#[cfg(not(target_arch = "wasm32"))]
pub fn gpu() -> &'static Gpu {
    pollster::block_on(open_gpu())
}

pub fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

pub fn randn(rng: &mut impl Rng, n: usize, scale: f64) -> Vec<f64> {
    (0..n)
        .map(|_| {
            // Box-Muller: a plain normal without another dependency.
            let u1: f64 = rng.random_range(1e-12..1.0);
            let u2: f64 = rng.random();
            scale * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect()
}

pub fn to32(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}

pub fn to64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// Asserts |got - want| <= atol + rtol * |want| elementwise; on failure prints the worst entries.
#[track_caller]
pub fn assert_close(what: &str, got: &[f64], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length {} vs {}", got.len(), want.len());
    let mut bad = Vec::new();
    let (mut max_abs, mut max_rel) = (0.0f64, 0.0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs();
        max_abs = max_abs.max(d);
        max_rel = max_rel.max(d / w.abs().max(1e-12));
        // NaN fails: it is not within any tolerance.
        if d.is_nan() || d > atol + rtol * w.abs() {
            bad.push(i);
        }
    }
    if !bad.is_empty() {
        let show: Vec<String> =
            bad.iter().take(8).map(|&i| format!("[{i}] got {:.7e} want {:.7e}", got[i], want[i])).collect();
        panic!(
            "{what}: {} of {} values off (atol {atol:e}, rtol {rtol:e}); max abs err {max_abs:.3e}, max rel err {max_rel:.3e}\n  {}",
            bad.len(),
            got.len(),
            show.join("\n  ")
        );
    }
}

/// Builds standalone kernel tests: declare tensors, add dispatches, compile, fill, run, read.
/// `Kit::f16()` stores the `input`/`output` tensors in f16 (kernels compiled with `st = f16`);
/// `input32`/`output32` are f32 in both (statistics, moments).
#[derive(Default)]
pub struct Kit {
    pub t: Tensors,
    pub d: Vec<Dispatch>,
    inputs: Vec<(TensorId, Init)>,
    storage: StorageType,
    /// How the matmuls' variants are chosen when the kit compiles.
    pub kernels: KernelPolicy,
}

enum Init {
    F(Vec<f32>),
    U(Vec<u32>),
}

impl Kit {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn f16() -> Self {
        Kit { storage: StorageType::F16, ..Self::default() }
    }
    /// Compiles the matmuls on `v` (default: the variant the adapter gets).
    pub fn on(self, v: matmul::Variant) -> Self {
        Kit { kernels: KernelPolicy { matmul: Some(v), ..self.kernels }, ..self }
    }
    /// Runs attention on `v` (else the compiled step picks by adapter type).
    pub fn attention(self, v: wgpt::ops::attention::Variant) -> Self {
        Kit { kernels: KernelPolicy { attention: Some(v), ..self.kernels }, ..self }
    }
    fn st(&self) -> DType {
        match self.storage {
            StorageType::F32 => DType::F32,
            StorageType::F16 => DType::F16,
        }
    }
    fn float(&mut self, name: &str, data: Vec<f32>, dtype: DType, class: Class) -> TensorId {
        let id = self.t.add(name, &[data.len()], dtype, class);
        self.inputs.push((id, Init::F(data)));
        id
    }
    /// A float tensor filled from `data` (read by kernels, or the prior value of an accumulator).
    pub fn input(&mut self, name: &str, data: &[f64]) -> TensorId {
        self.float(name, to32(data), self.st(), Class::Input)
    }
    pub fn input32(&mut self, name: &str, data: &[f64]) -> TensorId {
        self.float(name, to32(data), DType::F32, Class::Input)
    }
    pub fn input_u32(&mut self, name: &str, data: &[u32]) -> TensorId {
        let id = self.t.u32(name, &[data.len()], Class::Input);
        self.inputs.push((id, Init::U(data.to_vec())));
        id
    }
    /// A float tensor the kernels write, pre-filled with NaN so unwritten entries show.
    pub fn output(&mut self, name: &str, n: usize) -> TensorId {
        self.float(name, vec![f32::NAN; n], self.st(), Class::Output)
    }
    pub fn output32(&mut self, name: &str, n: usize) -> TensorId {
        self.float(name, vec![f32::NAN; n], DType::F32, Class::Output)
    }
    pub fn scratch(&mut self, name: &str, n: usize) -> TensorId {
        self.t.f32(name, &[n.max(1)], Class::Scratch)
    }
    pub fn push(&mut self, d: impl IntoIterator<Item = Dispatch>) {
        self.d.extend(d);
    }
    pub async fn run(self) -> Ran {
        let g = open_gpu().await;
        let mut cache = PipelineCache::new();
        let step = Step::compile(
            g,
            &mut cache,
            Program {
                tensors: self.t,
                dispatches: self.d,
                storage: self.storage,
                kernels: self.kernels,
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("compile failed: {e}"));
        for (id, init) in &self.inputs {
            match init {
                Init::F(v) => step.write_f32(*id, v).unwrap(),
                Init::U(v) => step.write_u32(*id, v).unwrap(),
            }
        }
        step.run();
        Ran { step }
    }
}

pub struct Ran {
    pub step: Step,
}

/// The attention variants this adapter runs at head size `hs`.
pub async fn attention_variants(hs: usize) -> Vec<wgpt::ops::attention::Variant> {
    let g = open_gpu().await;
    wgpt::ops::attention::Variant::ALL.into_iter().filter(|&v| wgpt::gpu::tuning::attention_runs_on(g, v, hs)).collect()
}

/// The matmul variants this adapter runs in f32 storage.
pub async fn matmul_variants() -> Vec<matmul::Variant> {
    matmul_variants_for(StorageType::F32).await
}

/// The matmul variants this adapter runs in `storage` (f16 adds `coop` where it has tensor cores).
pub async fn matmul_variants_for(storage: StorageType) -> Vec<matmul::Variant> {
    let g = open_gpu().await;
    matmul::Variant::ALL.into_iter().filter(|&v| wgpt::gpu::tuning::runs_on(g, v) && v.allows(storage)).collect()
}

impl Ran {
    pub async fn get(&self, id: TensorId) -> Vec<f64> {
        to64(&self.step.read_f32(id).await.unwrap())
    }
    pub async fn get_bits(&self, id: TensorId) -> Vec<u32> {
        self.step.read_u32(id).await.unwrap()
    }
    /// The bits of each of `ids`.
    pub async fn bits_of(&self, ids: &[TensorId]) -> Vec<Vec<u32>> {
        let mut out = Vec::new();
        for &id in ids {
            out.push(self.get_bits(id).await);
        }
        out
    }
}

/// Central finite differences of a scalar function f(x) at x: df/dx_i for every i.
pub fn numeric_grad(x: &[f64], eps: f64, mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let old = x[i];
            x[i] = old + eps;
            let fp = f(&x);
            x[i] = old - eps;
            let fm = f(&x);
            x[i] = old;
            (fp - fm) / (2.0 * eps)
        })
        .collect()
}

/// The loss used by gradchecks: L = sum(out * w) for a fixed random w, so dL/dout = w.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Unit roundoff of f32.
pub const U: f64 = f32::EPSILON as f64 / 2.0;

/// Inputs as the GPU sees them (rounded to f32), so the references differ from the kernels only by
/// the f32 arithmetic of the kernels.
pub fn f32_rounded(v: Vec<f64>) -> Vec<f64> {
    to64(&to32(&v))
}

pub fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

pub fn abs(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.abs()).collect()
}

/// Asserts |got - want| <= bound elementwise (NaN fails), printing the worst entries.
#[track_caller]
pub fn assert_within(what: &str, got: &[f64], want: &[f64], bound: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut bad = Vec::new();
    let mut worst = 0.0f64;
    for i in 0..got.len() {
        let d = (got[i] - want[i]).abs();
        if d.is_nan() || d > bound[i] {
            bad.push(i);
        }
        if bound[i] > 0.0 {
            worst = worst.max(d / bound[i]);
        }
    }
    if !bad.is_empty() {
        let show: Vec<String> = bad
            .iter()
            .take(8)
            .map(|&i| format!("[{i}] got {:.7e} want {:.7e} bound {:.2e}", got[i], want[i], bound[i]))
            .collect();
        panic!(
            "{what}: {} of {} values off; worst error/bound {worst:.3}\n  {}",
            bad.len(),
            got.len(),
            show.join("\n  ")
        );
    }
}
