//! End-to-end training on the shared tinyshakespeare corpus (path from WGPT_SHARED, default
//! ../shared): a short `tiny` run lowers the validation loss below a stated bound, and a saved
//! checkpoint loads back to the same evaluation loss.

mod common;
use common::*;
use wgpt::train::checkpoint::{load_model, save_model};
use wgpt::train::config::RunConfig;
use wgpt::train::trainer::{load_corpus, Trainer};

fn shakespeare() -> std::path::PathBuf {
    shared("data/tinyshakespeare.txt")
}

fn config(steps: u64) -> RunConfig {
    let mut cfg = RunConfig::preset("tiny").unwrap();
    cfg.steps = steps;
    cfg.eval_every = 0;
    cfg.sample_tokens = 20;
    cfg.log_every = 1000;
    cfg
}

#[test]
fn tiny_run_lowers_validation_loss() {
    let corpus = load_corpus(Some(&shakespeare())).unwrap();
    let mut t = Trainer::new(gpu(), config(200), &corpus).unwrap();
    let before = t.eval().unwrap();
    let dir = std::env::temp_dir().join(format!("wgpt-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    t.run(&dir, |_: &str| {}).unwrap();
    let after = t.eval().unwrap();
    println!("val loss {before:.4} -> {after:.4}");
    // 65 characters: an untrained model sits near ln 65 = 4.17; unigram statistics alone give
    // about 3.3, so 3.0 needs the model to use its context.
    assert!((before - 65f64.ln()).abs() < 0.2, "untrained val loss {before}");
    assert!(after < 3.0, "val loss after 200 steps is {after} (bound 3.0)");
    for f in ["config.json", "model.safetensors", "tokenizer.json", "metrics.jsonl"] {
        assert!(dir.join(f).exists(), "{f} missing from the run directory");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn save_then_load_gives_the_same_eval_loss() {
    let corpus = load_corpus(Some(&shakespeare())).unwrap();
    let dir = std::env::temp_dir().join(format!("wgpt-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut a = Trainer::new(gpu(), config(20), &corpus).unwrap();
    a.run(&dir, |_: &str| {}).unwrap();
    let loss_a = a.eval().unwrap();
    let path = dir.join("copy.safetensors");
    save_model(&path, &a.model, &pollster::block_on(a.ts.read_params()).unwrap()).unwrap();
    // A fresh trainer (other initial weights) takes the saved ones.
    let mut cfg = config(20);
    cfg.seed = 99;
    let b = Trainer::new(gpu(), cfg, &corpus).unwrap();
    let params = load_model(&path, &b.model).unwrap();
    b.ts.load_params(|name, _| Ok(params[name].clone())).unwrap();
    assert_eq!(b.eval().unwrap().to_bits(), loss_a.to_bits(), "eval loss differs after save and load");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// model.safetensors holds exactly GPT-2's tensors, under Hugging Face's names, in Conv1D's
/// (in, out) layout (the list is written out here, not taken from the model code), and
/// config.json carries the GPT2Config keys transformers reads.
#[test]
fn checkpoint_follows_the_gpt2_convention() {
    let corpus = load_corpus(Some(&shakespeare())).unwrap();
    let dir = std::env::temp_dir().join(format!("wgpt-names-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut t = Trainer::new(gpu(), config(2), &corpus).unwrap();
    t.run(&dir, |_: &str| {}).unwrap();
    let (v, p, c) = (65usize, 16usize, 32usize);
    let mut want: Vec<(String, Vec<usize>)> =
        vec![("transformer.wte.weight".into(), vec![v, c]), ("transformer.wpe.weight".into(), vec![p, c])];
    for l in 0..2 {
        for (name, shape) in [
            ("ln_1.weight", vec![c]),
            ("ln_1.bias", vec![c]),
            ("attn.c_attn.weight", vec![c, 3 * c]),
            ("attn.c_attn.bias", vec![3 * c]),
            ("attn.c_proj.weight", vec![c, c]),
            ("attn.c_proj.bias", vec![c]),
            ("ln_2.weight", vec![c]),
            ("ln_2.bias", vec![c]),
            ("mlp.c_fc.weight", vec![c, 4 * c]),
            ("mlp.c_fc.bias", vec![4 * c]),
            ("mlp.c_proj.weight", vec![4 * c, c]),
            ("mlp.c_proj.bias", vec![c]),
        ] {
            want.push((format!("transformer.h.{l}.{name}"), shape));
        }
    }
    want.push(("transformer.ln_f.weight".into(), vec![c]));
    want.push(("transformer.ln_f.bias".into(), vec![c]));
    want.sort();
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut got: Vec<(String, Vec<usize>)> = st.tensors().into_iter().map(|(n, v)| (n, v.shape().to_vec())).collect();
    got.sort();
    assert_eq!(got, want);
    assert!(st.tensors().iter().all(|(_, v)| v.dtype() == safetensors::Dtype::F32));
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["model_type"], "gpt2");
    assert_eq!(cfg["architectures"][0], "GPT2LMHeadModel");
    for (key, value) in [("vocab_size", v), ("n_positions", p), ("n_embd", c), ("n_layer", 2), ("n_head", 2)] {
        assert_eq!(cfg[key].as_u64(), Some(value as u64), "config.json {key}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A run stopped at step k and resumed from its checkpoint produces the same losses, bit for bit,
/// as the uninterrupted run.
#[test]
fn stop_and_resume_equals_uninterrupted() {
    let corpus = load_corpus(Some(&shakespeare())).unwrap();
    let mut cfg = config(12);
    cfg.log_every = 1;
    let base = std::env::temp_dir().join(format!("wgpt-resume-{}", std::process::id()));
    let (full, part) = (base.join("full"), base.join("part"));
    std::fs::create_dir_all(&full).unwrap();
    std::fs::create_dir_all(&part).unwrap();
    let losses = |dir: &std::path::Path| -> Vec<(u64, u32)> {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v.get("loss").is_some())
            .map(|v| (v["step"].as_u64().unwrap(), (v["loss"].as_f64().unwrap() as f32).to_bits()))
            .collect()
    };
    Trainer::new(gpu(), cfg.clone(), &corpus).unwrap().run(&full, |_: &str| {}).unwrap();
    Trainer::new(gpu(), cfg, &corpus).unwrap().run_until(&part, 5, |_: &str| {}).unwrap();
    let mut resumed = Trainer::resume(gpu(), &part, Some(&corpus), &[], &mut Vec::new()).unwrap();
    assert_eq!(resumed.step, 5);
    resumed.run(&part, |_: &str| {}).unwrap();
    let (a, b) = (losses(&full), losses(&part));
    assert_eq!(a.len(), 12);
    assert_eq!(a, b, "losses of the resumed run differ from the uninterrupted run");
    std::fs::remove_dir_all(&base).unwrap();
}

/// A run records the kernel variant of every product in its checkpoints, and a resumed run
/// computes with those again, whatever the adapter would pick now: a choice made once (by timing,
/// which is noisy) never changes a run's bits.
#[test]
fn a_run_records_its_kernels_and_resume_keeps_them() {
    use wgpt::ops::matmul::Variant;
    let corpus = load_corpus(Some(&shakespeare())).unwrap();
    let auto = Trainer::new(gpu(), config(2), &corpus).unwrap();
    let picked = wgpt::gpu::tuning::heuristic(gpu());
    assert!(!auto.cfg.kernels.is_empty(), "every product's variant is recorded");
    assert!(auto.cfg.kernels.values().all(|&v| v == picked), "{:?}", auto.cfg.kernels);
    // A run whose recorded kernels are not what this adapter picks, as if made on another one.
    let other = if picked == Variant::Register { Variant::Tiled } else { Variant::Register };
    let mut cfg = config(4);
    cfg.matmul = Some(other);
    let dir = scratch("kernels");
    Trainer::new(gpu(), cfg, &corpus).unwrap().run_until(&dir, 2, |_: &str| {}).unwrap();
    let sets = ["matmul=auto".to_string()];
    let resumed = Trainer::resume(gpu(), &dir, Some(&corpus), &sets, &mut Vec::new()).unwrap();
    assert_eq!(resumed.cfg.matmul, None);
    assert_eq!(resumed.cfg.kernels, auto.cfg.kernels.keys().map(|k| (k.clone(), other)).collect());
    assert!(resumed.ts.step.choices.iter().all(|c| c.variant == other), "{:?}", resumed.ts.step.choices);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A checkpoint written before kernel variants existed (no "kernels" in its config.json) ran every
/// product on `register`: it resumes on `register`, whatever this adapter would pick.
#[test]
fn a_checkpoint_from_before_variants_resumes_on_register() {
    use sha2::{Digest, Sha256};
    use wgpt::gpu::tuning::How;
    use wgpt::ops::matmul::Variant;
    use wgpt::train::checkpoints;
    let corpus = load_corpus(Some(&shakespeare())).unwrap();
    let dir = scratch("old-kernels");
    Trainer::new(gpu(), config(4), &corpus).unwrap().run_until(&dir, 2, |_: &str| {}).unwrap();
    let (_, ck) = checkpoints::list(&dir).into_iter().max_by_key(|c| c.0).unwrap();
    let config_path = ck.join("config.json");
    let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    doc["wgpt"].as_object_mut().unwrap().remove("kernels").expect("a run records its kernels");
    let bytes = serde_json::to_vec_pretty(&doc).unwrap();
    std::fs::write(&config_path, &bytes).unwrap();
    // Signed again, as the version before variants wrote it.
    let sums_path = ck.join(checkpoints::SUMS);
    let sums: String = std::fs::read_to_string(&sums_path)
        .unwrap()
        .lines()
        .map(|l| match l.split_once("  ") {
            Some((_, "config.json")) => format!("{:x}  config.json\n", Sha256::digest(&bytes)),
            _ => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&sums_path, sums).unwrap();
    let resumed = Trainer::resume(gpu(), &dir, Some(&corpus), &[], &mut Vec::new()).unwrap();
    assert_eq!(resumed.step, 2, "the re-signed checkpoint is the one resumed");
    assert_eq!(resumed.cfg.matmul, Some(Variant::Register));
    let choices = &resumed.ts.step.choices;
    assert!(!choices.is_empty() && choices.iter().all(|c| c.variant == Variant::Register && c.how == How::Asked));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Weights poisoned with NaN make every step's loss and gradients non-finite: each step is skipped
/// on the GPU and reported, and after max_bad_steps in a row the run stops with a message, having
/// written nothing: the checkpoint on disk is the one from before, byte for byte.
#[test]
fn consecutive_non_finite_steps_stop_the_run_and_keep_the_checkpoint() {
    use wgpt::train::checkpoints;
    let corpus = load_corpus(Some(&shakespeare())).unwrap();
    let dir = std::env::temp_dir().join(format!("wgpt-nan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = config(50);
    cfg.max_bad_steps = 3;
    cfg.log_every = 1;
    let mut t = Trainer::new(gpu(), cfg, &corpus).unwrap();
    t.run_until(&dir, 4, |_: &str| {}).unwrap();
    let ck = checkpoints::folder(&dir, 4);
    let before = std::fs::read(ck.join("model.safetensors")).unwrap();
    let params = pollster::block_on(t.ts.read_params()).unwrap();
    t.ts.load_params(|name, _| {
        let mut p = params[name].clone();
        if name == "transformer.wte.weight" {
            p[0] = f32::NAN;
        }
        Ok(p)
    })
    .unwrap();
    let mut lines = Vec::new();
    let err = t.run(&dir, |l: &str| lines.push(l.to_string())).unwrap_err().to_string();
    assert!(err.contains("steps 5..7") && err.contains("3 steps in a row") && err.contains("step-00000004"), "{err}");
    assert_eq!(lines.iter().filter(|l| l.contains("step skipped")).count(), 3, "{lines:?}");
    assert_eq!(std::fs::read(ck.join("model.safetensors")).unwrap(), before, "the checkpoint is untouched");
    assert_eq!(checkpoints::list(&dir).len(), 1, "nothing new was saved");
    checkpoints::verify(&ck, &wgpt::train::trainer::CHECKPOINT_FILES).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The outlier guard: a learning-rate spike makes the loss jump far above its recent mean; the
/// guard skips those steps (weights unchanged), which a run without the guard does not.
#[test]
fn outlier_guard_skips_a_loss_spike() {
    let corpus = load_corpus(Some(&shakespeare())).unwrap();
    let dir = std::env::temp_dir().join(format!("wgpt-guard-{}", std::process::id()));
    let run = |z: f64| {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = config(60);
        cfg.outlier_z = z;
        cfg.max_bad_steps = 100;
        cfg.log_every = 1;
        let mut t = Trainer::new(gpu(), cfg, &corpus).unwrap();
        t.run_until(&dir, 40, |_: &str| {}).unwrap();
        // A step at lr 100 wrecks the weights; the next step's loss is far above the last 40.
        t.cfg.lr = 100.0;
        t.cfg.min_lr = 100.0;
        let mut lines = Vec::new();
        let _ = t.run_until(&dir, 44, |l: &str| lines.push(l.to_string()));
        lines.iter().filter(|l| l.contains("outlier")).count()
    };
    assert_eq!(run(0.0), 0, "the guard is off by default");
    let skipped = run(6.0);
    assert!(skipped >= 3, "{skipped} outliers skipped in the 4 spiked steps");
    std::fs::remove_dir_all(&dir).unwrap();
}
