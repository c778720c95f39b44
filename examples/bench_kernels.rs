//! Times the engine on the current adapter: each kernel family on GPT-2-small-like shapes
//! (B·T = 512 rows, C = 768) and whole training steps of small GPTs, printing ms per dispatch,
//! GFLOP/s for matmuls and tokens/s for steps. Figures are per adapter: on lavapipe they are
//! ratios for comparing kernels, not GPU speeds.
//! Run: `cargo run --release --example bench_kernels` (`-- --quick` for smaller shapes).

use std::time::Instant;

use wgpt::gpu::{BackendChoice, Gpu, PipelineCache, Program, Step};
use wgpt::graph::{Class, TensorId, Tensors};
use wgpt::model::GptConfig;
use wgpt::ops::attention::Attention;
use wgpt::ops::layernorm::LayerNorm;
use wgpt::ops::matmul::Matmul;
use wgpt::ops::{gelu, Dispatch};
use wgpt::train::{StepConfig, TrainStep};

/// Median seconds of `reps` runs of dispatch `i` (each followed by a 4-byte readback to wait).
fn time(step: &Step, i: usize, sync: TensorId, reps: usize) -> f64 {
    step.run_range(i..i + 1);
    pollster::block_on(step.read(sync)).unwrap();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            step.run_range(i..i + 1);
            pollster::block_on(step.read(sync)).unwrap();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

fn bench(gpu: &Gpu, name: &str, flops: f64, build: impl FnOnce(&mut Tensors) -> Vec<Dispatch>) {
    let mut t = Tensors::default();
    let d = build(&mut t);
    let sync = t.f32("sync", &[1], Class::Output);
    let n = d.len();
    let step = pollster::block_on(Step::compile(
        gpu,
        &mut PipelineCache::new(),
        Program { tensors: t, dispatches: d, ..Default::default() },
    ))
    .unwrap();
    for i in 0..n {
        let s = time(&step, i, sync, 3);
        let rate = if flops > 0.0 { format!("  {:.2} GFLOP/s", flops / s / 1e9) } else { String::new() };
        println!("  {name:<28} {:<26} {:9.2} ms{rate}", step.dispatches[i].entry, s * 1e3);
    }
}

fn main() -> wgpt::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let gpu = pollster::block_on(Gpu::new(BackendChoice::Auto))?;
    println!("adapter: {}", gpu.describe());
    let (rows, c, t, nh) = if quick { (128, 256, 64, 4) } else { (512, 768, 256, 12) };
    let act = |t: &mut Tensors, n: &str, len: usize| t.f32(n, &[len], Class::Input);

    println!("kernels (rows = B*T = {rows}, C = {c}):");
    for (k, n, tw) in [(c, 3 * c, false), (c, 4 * c, false), (4 * c, c, false)] {
        let op = Matmul::new(rows, k, n, tw);
        let flops = 2.0 * (rows * k * n) as f64;
        bench(&gpu, &format!("matmul {rows}x{k}x{n}"), flops, |t| {
            let (x, w, b, o) = (act(t, "x", rows * k), act(t, "w", k * n), act(t, "b", n), act(t, "out", rows * n));
            let (dx, dw) = (act(t, "dx", rows * k), act(t, "dw", k * n));
            vec![op.forward(o, x, w, Some(b)), op.backward_dx(dx, false, o, w), op.backward_dw(dw, false, o, x)]
        });
    }
    let ln = LayerNorm { rows, c, eps: 1e-5 };
    bench(&gpu, "layernorm", 0.0, |t| {
        let (x, w, b, o) = (act(t, "x", rows * c), act(t, "w", c), act(t, "b", c), act(t, "out", rows * c));
        let (m, r, dx, dw, db) =
            (act(t, "m", rows), act(t, "r", rows), act(t, "dx", rows * c), act(t, "dw", c), act(t, "db", c));
        let s = act(t, "scratch", ln.scratch_len());
        let mut d = vec![ln.forward(o, m, r, x, w, b)];
        d.extend(ln.backward(dx, false, dw, false, db, false, s, o, x, w, m, r));
        d
    });
    let at = Attention { b: rows / t, t, nh, hs: c / nh };
    let attn_flops = 2.0 * 2.0 * (at.b * nh * t * t / 2 * at.hs) as f64;
    bench(&gpu, &format!("attention T={t} NH={nh}"), attn_flops, |tt| {
        let (qkv, o, l) = (act(tt, "qkv", rows * 3 * c), act(tt, "out", rows * c), act(tt, "lse", at.b * nh * t));
        let (dq, s) = (act(tt, "dqkv", rows * 3 * c), act(tt, "scratch", at.scratch_len()));
        let mut d = vec![at.forward(o, l, qkv)];
        d.extend(at.backward(dq, false, s, o, qkv, o, l));
        d
    });
    bench(&gpu, "gelu", 0.0, |t| {
        let (x, o) = (act(t, "x", rows * 4 * c), act(t, "out", rows * 4 * c));
        vec![gelu::forward(o, x, rows * 4 * c), gelu::backward(x, false, o, x, rows * 4 * c)]
    });

    println!("training steps (forward + backward + clip + AdamW, one submission):");
    let models: Vec<(&str, GptConfig, usize)> = if quick {
        vec![("tiny", GptConfig::tiny(), 8)]
    } else {
        vec![
            ("tiny (V65 L2 C32 T16)", GptConfig::tiny(), 8),
            (
                "char (V65 L4 C128 T64)",
                GptConfig { vocab_size: 65, block_size: 64, n_layer: 4, n_head: 4, n_embd: 128 },
                12,
            ),
        ]
    };
    for (name, model, batch) in models {
        let mut cache = PipelineCache::new();
        let mut ts = pollster::block_on(TrainStep::build(&gpu, &mut cache, StepConfig::new(model, batch)))?;
        let n = batch * model.block_size;
        let ids: Vec<u32> = (0..n).map(|i| (i * 7 % model.vocab_size) as u32).collect();
        ts.load_params(|_, shape| Ok(vec![0.01; shape.iter().product()]))?;
        pollster::block_on(ts.train_step(&ids, &ids, 1e-4))?;
        let reps = 5;
        let t0 = Instant::now();
        for _ in 0..reps {
            pollster::block_on(ts.train_step(&ids, &ids, 1e-4))?;
        }
        let s = t0.elapsed().as_secs_f64() / reps as f64;
        println!(
            "  {name:<26} B={batch:<3} {:4} dispatches  {:8.1} ms/step  {:8.0} tokens/s",
            ts.step.len(),
            s * 1e3,
            n as f64 / s
        );
    }
    Ok(())
}
