//! The whole tiny GPT built through the graph against the PyTorch / Hugging Face reference state in
//! `../shared/fixtures/gpt2_tiny_reference.safetensors`: logits, loss, every parameter gradient,
//! and three AdamW steps with clipping (losses, gradient norms, parameters after the third).
//! Also: two identical steps are bit-identical.

mod common;
use std::collections::HashMap;

use common::fixture::{load, Fixture};
use common::*;
use wgpt::gpu::PipelineCache;
use wgpt::graph::fuse::Fusion;
use wgpt::model::GptConfig;
use wgpt::ops::matmul::Pass;
use wgpt::ops::Tunable;
use wgpt::train::{StepConfig, TrainStep};

fn max_abs(x: &[f64]) -> f64 {
    x.iter().fold(0.0, |m, v| m.max(v.abs()))
}

async fn build(fx: &Fixture) -> TrainStep {
    build_fused(fx, Fusion::Auto).await
}

async fn build_fused(fx: &Fixture, fusion: Fusion) -> TrainStep {
    build_with(fx, StepConfig { fusion, ..StepConfig::new(GptConfig::tiny(), 2) }).await
}

async fn build_with(fx: &Fixture, cfg: StepConfig) -> TrainStep {
    let mut cache = PipelineCache::new();
    let ts = TrainStep::build(open_gpu().await, &mut cache, cfg).await.unwrap();
    ts.load_params(|name, _| Ok(fx.f32s[&format!("param.{name}")].clone())).unwrap();
    let ids: Vec<u32> = fx.i32s["input_ids"].iter().map(|&x| x as u32).collect();
    let targets: Vec<u32> = fx.i32s["targets"].iter().map(|&x| x as u32).collect();
    ts.set_batch(&ids, &targets).unwrap();
    ts
}

#[gpu_test]
async fn tiny_gpt_matches_pytorch_reference() {
    let fx = load();
    matches_reference(&fx, build(&fx).await).await;
}

/// The flat parameter groups split into many (at most 2048 elements each, as GPT-2 124M's are at
/// `GROUP_MAX` for a 256 MiB buffer): the same reference, to the same bounds.
#[gpu_test]
async fn tiny_gpt_matches_pytorch_reference_with_split_parameter_groups() {
    let fx = load();
    let ts = build_with(&fx, StepConfig { group_max: 2048, ..StepConfig::new(GptConfig::tiny(), 2) }).await;
    assert!(ts.sec.layout.groups.len() >= 8, "{} groups", ts.sec.layout.groups.len());
    matches_reference(&fx, ts).await;
}

async fn matches_reference(fx: &Fixture, mut ts: TrainStep) {
    ts.run_forward();
    let logits = to64(&ts.step.read_f32(ts.sec.logits).await.unwrap());
    // Logits are O(1) sums of 32-term f32 dot products through 2 blocks; PyTorch sums in another order.
    assert_close("logits", &logits, &to64(&fx.f32s["logits"]), 2e-5, 1e-4);
    let loss = ts.stats().await.unwrap().loss as f64;
    assert_close("loss", &[loss], &[fx.f32s["loss"][0] as f64], 1e-5, 1e-5);

    ts.run_backward();
    let grads = ts.read_grads().await.unwrap();
    assert_eq!(grads.len(), 2 + 12 * 2 + 2, "every parameter has a gradient");
    for (name, got) in &grads {
        let want = to64(&fx.f32s[&format!("grad.{name}")]);
        // f32 against f32 with different summation orders: errors scale with the tensor's largest entry.
        assert_close(&format!("grad {name}"), &to64(got), &want, 2e-4 * max_abs(&want), 1e-3);
    }

    let (losses, norms) = (&fx.f32s["adamw.losses"], &fx.f32s["adamw.grad_norms"]);
    for i in 0..3 {
        if i > 0 {
            ts.run_forward();
            ts.run_backward();
        }
        let s = ts.stats().await.unwrap();
        assert_close(&format!("loss before AdamW step {i}"), &[s.loss as f64], &[losses[i] as f64], 1e-5, 1e-5);
        let s = ts.run_optimizer(1e-3).await.unwrap();
        assert!(!s.skipped, "step {i} skipped");
        assert_close(&format!("grad norm at step {i}"), &[s.grad_norm as f64], &[norms[i] as f64], 1e-5, 1e-4);
    }
    let params = ts.read_params().await.unwrap();
    for (name, got) in &params {
        let want = to64(&fx.f32s[&format!("after3.{name}")]);
        // Each step moves a weight by about lr = 1e-3; 1e-5 absolute is 1% of one step.
        assert_close(&format!("{name} after 3 AdamW steps"), &to64(got), &want, 1e-5, 1e-5);
    }
}

/// The loss and every gradient of one forward + backward, as bits.
async fn step_bits(ts: &TrainStep) -> (u32, HashMap<String, Vec<u32>>) {
    ts.run_zero_grads();
    ts.run_forward();
    ts.run_backward();
    let s = ts.stats().await.unwrap();
    let g = ts.read_grads().await.unwrap();
    (s.loss.to_bits(), g.into_iter().map(|(k, v)| (k, v.iter().map(|x| x.to_bits()).collect())).collect())
}

#[gpu_test]
async fn identical_steps_are_bit_identical() {
    let fx = load();
    let ts = build(&fx).await;
    let runs = [step_bits(&ts).await, step_bits(&ts).await];
    assert_eq!(runs[0].0, runs[1].0, "loss bits differ between identical steps");
    for (name, bits) in &runs[0].1 {
        assert!(bits == &runs[1].1[name], "gradient {name} differs between identical steps");
    }
}

/// Whatever the fusion pass folds (the residual adds and GELUs into the matmuls' epilogues on
/// GPUs, only the residual backward on CPU adapters), the whole model's f32 loss and gradients
/// are the unfused ones bit for bit.
#[gpu_test]
async fn every_fusion_gives_the_unfused_bits() {
    let fx = load();
    let plain = step_bits(&build_fused(&fx, Fusion::Off).await).await;
    for fusion in [Fusion::Alias, Fusion::Epilogues] {
        let fused = step_bits(&build_fused(&fx, fusion).await).await;
        assert_eq!(fused.0, plain.0, "{fusion:?}: loss bits differ from the unfused step");
        for (name, bits) in &plain.1 {
            assert!(bits == &fused.1[name], "{fusion:?}: gradient {name} differs from the unfused step");
        }
    }
}

/// A vocabulary whose token table and logits exceed one storage binding (forced small here) runs
/// as shards of wte and chunks of logits; loss and gradients equal the unsplit model's.
#[gpu_test]
async fn split_token_table_and_logits_match_unsplit() {
    let model = GptConfig { vocab_size: 1200, block_size: 16, n_layer: 1, n_head: 2, n_embd: 128 };
    let batch = 8;
    let mut r = rng(5);
    let specs = wgpt::model::param_table(&model);
    let init: HashMap<String, Vec<f32>> = specs
        .iter()
        .map(|s| {
            let v = match s.init {
                wgpt::model::Init::Normal(std) => to32(&randn(&mut r, s.numel(), std as f64 * 5.0)),
                wgpt::model::Init::Zeros => to32(&randn(&mut r, s.numel(), 0.02)),
                wgpt::model::Init::Ones => to32(&randn(&mut r, s.numel(), 0.1)).iter().map(|x| 1.0 + x).collect(),
            };
            (s.name.clone(), v)
        })
        .collect();
    let ids: Vec<u32> = (0..batch * 16).map(|i| ((i * 37 + 11) % 1200) as u32).collect();
    let targets: Vec<u32> = (0..batch * 16).map(|i| ((i * 91 + 5) % 1200) as u32).collect();
    let run = async |max_binding: Option<u64>| {
        let mut cfg = StepConfig::new(model, batch);
        cfg.max_binding = max_binding;
        let ts = TrainStep::build(open_gpu().await, &mut PipelineCache::new(), cfg).await.unwrap();
        // The bias-free forward products: the lm_head's shards.
        let heads = ts
            .step
            .dispatches
            .iter()
            .filter(|d| matches!(d.tunable, Some(Tunable::Matmul(t)) if matches!(t.pass, Pass::Forward { bias: false, .. })))
            .count();
        ts.load_params(|name, _| Ok(init[name].clone())).unwrap();
        ts.set_batch(&ids, &targets).unwrap();
        ts.run_forward();
        ts.run_backward();
        let loss = ts.stats().await.unwrap().loss;
        (heads, loss, ts.read_grads().await.unwrap())
    };
    let (heads1, loss1, g1) = run(None).await;
    // A 400 kB binding limit (enforced by the executor too): wte (614 kB) splits into shards of
    // 781 and 419 rows, logits (128 x 1200, 614 kB) into two chunks of 64 rows.
    let (heads2, loss2, g2) = run(Some(400_000)).await;
    assert_eq!(heads1, 1, "unsplit lm_head is one product");
    assert_eq!(heads2, 4, "the split run must make 2 row chunks x 2 shards of the lm_head");
    // Per-row losses are identical; only dx sums shard contributions in another order.
    assert_close("loss", &[loss2 as f64], &[loss1 as f64], 1e-6, 1e-6);
    for (name, a) in &g1 {
        let a = to64(a);
        assert_close(&format!("grad {name}"), &to64(&g2[name]), &a, 1e-5 * max_abs(&a), 1e-4);
    }
}

/// Gradient accumulation: the reference batch as two micro-batches of one sequence each gives the
/// reference gradients (each micro-batch's loss is scaled by 1/2, so the sum is the full mean).
#[gpu_test]
async fn two_micro_batches_accumulate_to_the_reference_gradients() {
    let fx = load();
    let mut cfg = StepConfig::new(GptConfig::tiny(), 1);
    cfg.grad_accum = 2;
    let ts = TrainStep::build(open_gpu().await, &mut PipelineCache::new(), cfg).await.unwrap();
    ts.load_params(|name, _| Ok(fx.f32s[&format!("param.{name}")].clone())).unwrap();
    let ids: Vec<u32> = fx.i32s["input_ids"].iter().map(|&x| x as u32).collect();
    let targets: Vec<u32> = fx.i32s["targets"].iter().map(|&x| x as u32).collect();
    let mut loss = 0.0;
    for row in 0..2 {
        ts.set_batch(&ids[row * 16..(row + 1) * 16], &targets[row * 16..(row + 1) * 16]).unwrap();
        ts.run_forward();
        ts.run_backward();
        loss += ts.stats().await.unwrap().loss as f64 / 2.0;
    }
    assert_close("mean loss over micro-batches", &[loss], &[fx.f32s["loss"][0] as f64], 1e-5, 1e-5);
    for (name, got) in ts.read_grads().await.unwrap() {
        let want = to64(&fx.f32s[&format!("grad.{name}")]);
        assert_close(&format!("accumulated grad {name}"), &to64(&got), &want, 2e-4 * max_abs(&want), 1e-3);
    }
}

/// A memory plan split across many buffers (a low buffer limit, like `WGPT_MAX_BUFFER_SIZE`)
/// places the same tensors in other buffers only: the loss, every gradient and the parameters
/// after two AdamW steps are the one-buffer-per-class plan's, bit for bit.
#[gpu_test]
async fn a_plan_split_across_buffers_gives_the_same_bits() {
    let model = GptConfig { vocab_size: 1200, block_size: 16, n_layer: 2, n_head: 2, n_embd: 128 };
    let batch = 8;
    let mut r = rng(8);
    let init: HashMap<String, Vec<f32>> = wgpt::model::param_table(&model)
        .iter()
        .map(|s| (s.name.clone(), to32(&randn(&mut r, s.numel(), 0.05))))
        .collect();
    let ids: Vec<u32> = (0..batch * 16).map(|i| ((i * 37 + 11) % 1200) as u32).collect();
    let targets: Vec<u32> = (0..batch * 16).map(|i| ((i * 91 + 5) % 1200) as u32).collect();
    let bits = |v: &HashMap<String, Vec<f32>>| -> HashMap<String, Vec<u32>> {
        v.iter().map(|(k, x)| (k.clone(), x.iter().map(|f| f.to_bits()).collect())).collect()
    };
    let run = async |max_buffer: Option<u64>| {
        let mut cfg = StepConfig::new(model, batch);
        cfg.max_buffer = max_buffer;
        let mut ts = TrainStep::build(open_gpu().await, &mut PipelineCache::new(), cfg).await.unwrap();
        let parts = |name: &str| ts.step.plan.arenas.iter().filter(|a| a.name == name && a.size > 0).count();
        let counts = (parts("work"), parts("params"), parts("optimizer"));
        ts.load_params(|name, _| Ok(init[name].clone())).unwrap();
        let mut losses = Vec::new();
        let mut grads = HashMap::new();
        for _ in 0..2 {
            ts.set_batch(&ids, &targets).unwrap();
            ts.run_forward();
            ts.run_backward();
            grads = bits(&ts.read_grads().await.unwrap());
            losses.push(ts.run_optimizer(1e-3).await.unwrap().loss.to_bits());
            ts.run_zero_grads();
        }
        (counts, losses, grads, bits(&ts.read_params().await.unwrap()))
    };
    let one = run(None).await;
    // The largest tensors are the flat decay groups of params, grads and both moments (550k
    // elements, 2.2 MB); 2.5 MiB buffers split the moments and the activations.
    let split = run(Some(5 << 19)).await;
    assert_eq!(one.0, (1, 1, 1), "without a limit each class takes one buffer");
    assert!(split.0 .0 >= 2 && split.0 .2 >= 2, "the limit should split the work and optimizer arenas: {:?}", split.0);
    assert_eq!(one.1, split.1, "losses differ");
    for (name, g) in &one.2 {
        assert!(g == &split.2[name], "gradient {name} differs");
    }
    for (name, p) in &one.3 {
        assert!(p == &split.3[name], "parameter {name} differs after two steps");
    }
}
