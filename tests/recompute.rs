//! Recomputation policies (activation checkpointing): every policy gives the loss and gradients of
//! `none` bit for bit, lowers the activation bytes of the memory plan (`block` by at least 60% on a
//! multi-layer model), re-runs split producers window by window, and the `recompute` setting
//! round-trips through the checkpoint config.

mod common;
use std::collections::{BTreeMap, HashMap};

use common::*;
use wgpt::gpu::{PipelineCache, Program, Step};
use wgpt::graph::autodiff::Autodiff;
use wgpt::graph::memplan::plan;
use wgpt::graph::recompute::MARK;
use wgpt::graph::{Class, Graph, Recompute};
use wgpt::model::GptConfig;
use wgpt::train::checkpoint::{hf_config, load_json, save_json};
use wgpt::train::config::RunConfig;
use wgpt::train::trainer::init_params;
use wgpt::train::{Precision, StepConfig, TrainStep};

fn tiny() -> GptConfig {
    GptConfig { vocab_size: 50, block_size: 16, n_layer: 2, n_head: 2, n_embd: 32 }
}

fn step_config(model: GptConfig, batch: usize, recompute: Recompute) -> StepConfig {
    let mut sc = StepConfig::new(model, batch);
    sc.recompute = recompute;
    sc
}

/// Loss bits and every parameter gradient's bits after one forward + backward.
struct Run {
    loss: u32,
    grads: BTreeMap<String, Vec<u32>>,
    dispatches: usize,
    schedule: String,
}

#[test]
fn every_policy_gives_the_loss_and_gradients_of_none_bit_for_bit() {
    let model = tiny();
    let batch = 2;
    let params = init_params(&model, 7);
    let mut r = rng(11);
    let n = batch * model.block_size;
    let tokens: Vec<u32> = (0..n + 1).map(|_| rand::Rng::random_range(&mut r, 0..model.vocab_size as u32)).collect();
    let (ids, targets) = (&tokens[..n], &tokens[1..]);
    let mut cache = PipelineCache::new();
    let mut run = |policy: Recompute, precision: Precision| -> Run {
        let sc = StepConfig { precision, ..step_config(model, batch, policy) };
        let ts = pollster::block_on(TrainStep::build(gpu(), &mut cache, sc)).unwrap();
        ts.load_params(|name, _| Ok(params[name].clone())).unwrap();
        ts.set_batch(ids, targets).unwrap();
        ts.run_forward();
        ts.run_backward();
        let loss = pollster::block_on(ts.stats()).unwrap().loss.to_bits();
        let grads = pollster::block_on(ts.read_grads())
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, v.iter().map(|x| x.to_bits()).collect()))
            .collect();
        Run { loss, grads, dispatches: ts.step.len(), schedule: ts.step.schedule_report() }
    };
    // At each precision (f16 kernels are as deterministic as f32 ones).
    for precision in [Precision::F32, Precision::F16] {
        let base = run(Recompute::None, precision);
        assert!(!base.schedule.contains(MARK), "nothing is recomputed without a policy");
        let nonzero = base.grads.values().flatten().filter(|&&b| f32::from_bits(b) != 0.0).count();
        assert!(nonzero > 1000, "only {nonzero} gradient entries are non-zero");
        for policy in &Recompute::ALL[1..] {
            let got = run(*policy, precision);
            let name = format!("{} ({})", policy.name(), precision.name());
            assert!(got.dispatches > base.dispatches, "{name}: no forward dispatch was re-run");
            assert!(got.schedule.contains(MARK), "{name}: recomputed tensors are not marked in the schedule");
            assert_eq!(got.loss, base.loss, "{name}: loss differs from none");
            assert_eq!(got.grads.len(), base.grads.len());
            for (param, bits) in &base.grads {
                let diff = bits.iter().zip(&got.grads[param]).filter(|(a, b)| a != b).count();
                assert_eq!(diff, 0, "{name}: {diff} entries of the gradient of {param} differ from none");
            }
            println!(
                "{name}: {} dispatches vs {} with none; loss and gradients identical",
                got.dispatches, base.dispatches
            );
        }
    }
}

/// Activation bytes of the memory plan of one training step (no GPU needed).
fn activation_bytes(sc: StepConfig, max_binding: u64) -> u64 {
    let (p, _) = TrainStep::program(sc, max_binding).unwrap();
    plan(&p.tensors, &p.dispatches, 256, u64::MAX).class_bytes(Class::Activation)
}

#[test]
fn every_policy_lowers_activation_memory_and_block_cuts_it_by_60_percent() {
    let bytes: HashMap<Recompute, u64> =
        Recompute::ALL.iter().map(|&p| (p, activation_bytes(step_config(tiny(), 2, p), 128 << 20))).collect();
    for p in Recompute::ALL {
        println!("tiny (2 layers, C=32, B=2, T=16) {:<5} activations {:>8} bytes", p.name(), bytes[&p]);
    }
    let none = bytes[&Recompute::None];
    for p in [Recompute::Gelu, Recompute::Norm, Recompute::Attn] {
        assert!(bytes[&p] <= none, "{}: {} activation bytes, more than none's {none}", p.name(), bytes[&p]);
    }
    assert!(
        bytes[&Recompute::Block] < none,
        "block: {} activation bytes, not below none's {none}",
        bytes[&Recompute::Block]
    );

    // Planned only: the shakespeare preset's shape (6 layers, C=384, B=64, T=256, 65 characters)
    // and GPT-2 124M at B=4, T=1024 (its logits a chunk of rows at a time).
    let shakespeare = GptConfig { vocab_size: 65, block_size: 256, n_layer: 6, n_head: 6, n_embd: 384 };
    let gpt2 = GptConfig { vocab_size: 50257, block_size: 1024, n_layer: 12, n_head: 12, n_embd: 768 };
    for (what, model, batch) in
        [("6 layers, C=384, B=64, T=256", shakespeare, 64), ("GPT-2 124M, B=4, T=1024", gpt2, 4)]
    {
        let bytes: Vec<u64> =
            Recompute::ALL.iter().map(|&p| activation_bytes(step_config(model, batch, p), 128 << 20)).collect();
        let none = bytes[0];
        for (p, b) in Recompute::ALL.iter().zip(&bytes) {
            println!(
                "{what}: {:<5} activations {b:>11} bytes ({:.1}% less than none)",
                p.name(),
                100.0 * (1.0 - *b as f64 / none as f64)
            );
            assert!(*b <= none, "{what}: {} keeps more activation bytes than none", p.name());
        }
        let cut = 1.0 - bytes[4] as f64 / none as f64;
        assert!(
            cut >= 0.6,
            "{what}: block cuts activation memory by {:.1}% (none {none}, block {} bytes)",
            cut * 100.0,
            bytes[4]
        );
    }
}

/// Several nodes writing one dropped root (a linear split into row chunks, as big operands are) are
/// all re-run, each into its window of the copy; the gradients stay bit-identical. The graph is
/// recorded with a small binding size to force the split; the GPU binds with its own limits.
#[test]
fn a_root_written_in_windows_is_recomputed_window_by_window() {
    let (rows, k, n) = (64, 16, 48);
    let mut r = rng(5);
    let xv = to32(&randn(&mut r, rows * k, 1.0));
    let wv = to32(&randn(&mut r, k * n, 0.3));
    let w2v = to32(&randn(&mut r, n * 8, 0.3));
    let tg: Vec<u32> = (0..rows as u32).map(|i| (i * 5) % 8).collect();
    let run = |policy: Recompute| -> (Vec<u32>, Vec<u32>, usize) {
        let mut g = Graph::new();
        // The weight (16 x 48 f32) just fits: fc and head split into 4 chunks of 16 rows.
        g.max_binding = (k * n * 4) as u64;
        let x = g.t.f32("x", &[rows, k], Class::Input);
        let w = g.t.f32("w", &[k, n], Class::Param);
        let w2 = g.t.f32("w2", &[n, 8], Class::Param);
        let dw = g.t.f32("dw", &[k, n], Class::Grad);
        let dw2 = g.t.f32("dw2", &[n, 8], Class::Grad);
        let targets = g.t.u32("targets", &[rows], Class::Input);
        let loss = g.t.f32("loss", &[1], Class::Output);
        g.begin_block(0);
        let h = g.linear("fc", x, w, None, false).unwrap();
        let a = g.gelu("gelu", h).unwrap();
        let logits = g.linear("head", a, w2, None, false).unwrap();
        g.end_block();
        g.cross_entropy(logits, targets, loss, 0).unwrap();
        let producers = g.nodes.iter().filter(|nd| nd.writes().iter().any(|&t| g.t.root(t) == h)).count();
        assert_eq!(producers, 4, "fc is recorded as 4 row chunks");
        let mut d = g.forward_dispatches();
        let grads = HashMap::from([(w, dw), (w2, dw2)]);
        d.extend(Autodiff::new(&mut g, &grads, false).with_recompute(policy).backward(1.0).late);
        let program = Program { tensors: g.t, dispatches: d, ..Default::default() };
        let reruns = program
            .dispatches
            .iter()
            .filter(|d| d.args.iter().any(|a| program.tensors.get(a.1).name.starts_with(&format!("fc{MARK}"))))
            .count();
        let step = pollster::block_on(Step::compile(gpu(), &mut PipelineCache::new(), program)).unwrap();
        step.write_f32(x, &xv).unwrap();
        step.write_f32(w, &wv).unwrap();
        step.write_f32(w2, &w2v).unwrap();
        step.write_u32(targets, &tg).unwrap();
        step.run();
        let bits = |t| pollster::block_on(step.read_f32(t)).unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        (bits(dw), bits(dw2), reruns)
    };
    let (dw, dw2, none_reruns) = run(Recompute::None);
    assert_eq!(none_reruns, 0);
    assert!(dw.iter().any(|&b| f32::from_bits(b) != 0.0));
    for policy in [Recompute::Gelu, Recompute::Block] {
        let (dw_p, dw2_p, reruns) = run(policy);
        assert_eq!(dw_p, dw, "{}: dw differs from none", policy.name());
        assert_eq!(dw2_p, dw2, "{}: dw2 differs from none", policy.name());
        if policy == Recompute::Block {
            // 4 chunks of fc write the copy; gelu reads it; the gelu backward reads it again.
            assert!(reruns >= 5, "block: fc{MARK} bound by {reruns} dispatches");
        }
    }
}

#[test]
fn recompute_setting_round_trips_through_the_checkpoint_config_and_rejects_bad_values() {
    let mut cfg = RunConfig::preset("tiny").unwrap();
    assert_eq!(cfg.recompute, Recompute::None, "the default keeps every activation");
    cfg.set("recompute=block").unwrap();
    assert_eq!(cfg.recompute, Recompute::Block);
    assert_eq!(cfg.to_json()["recompute"], "block");

    let dir = std::env::temp_dir().join(format!("wgpt-recompute-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.json");
    save_json(&path, &hf_config(&tiny(), serde_json::json!({"train": cfg.to_json(), "step": 3}))).unwrap();
    let back = RunConfig::from_json(&load_json(&path).unwrap()["wgpt"]["train"]).unwrap();
    assert_eq!(back, cfg);
    for p in Recompute::ALL {
        let mut c = cfg.clone();
        c.recompute = p;
        assert_eq!(RunConfig::from_json(&c.to_json()).unwrap().recompute, p);
    }
    // A checkpoint written before the setting existed keeps every activation.
    let mut old = cfg.to_json();
    old.as_object_mut().unwrap().remove("recompute");
    assert_eq!(RunConfig::from_json(&old).unwrap().recompute, Recompute::None);

    let toml = dir.join("run.toml");
    std::fs::write(&toml, "recompute = \"attn\"\n").unwrap();
    let mut c = RunConfig::preset("tiny").unwrap();
    c.apply_toml(&toml).unwrap();
    assert_eq!(c.recompute, Recompute::Attn);

    let err = cfg.set("recompute=everything").unwrap_err().to_string();
    assert!(err.contains("recompute") && err.contains("everything"), "{err}");
    for name in Recompute::NAMES {
        assert!(err.contains(name), "the error does not list '{name}': {err}");
    }
    assert_eq!(cfg.recompute, Recompute::Block, "a rejected value leaves the setting as it was");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `wgpt bench` reports the policy it ran with (text and --json); a bad --recompute names the
/// allowed values.
#[test]
fn bench_reports_its_recompute_policy() {
    let wgpt = |args: &[&str]| {
        let ended = common::process::run(common::process::wgpt().args(args));
        (ended.ok(), ended.stdout + &ended.stderr)
    };
    let (ok, out) = wgpt(&["bench", "--preset", "tiny", "--plan-only", "--json", "--recompute", "block"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.lines().find(|l| l.starts_with('{')).unwrap()).unwrap();
    assert_eq!(v["recompute"], "block", "{v}");
    let (ok, out) = wgpt(&["bench", "--preset", "tiny", "--plan-only", "--set", "recompute=gelu"]);
    assert!(ok && out.contains("recompute=gelu"), "{out}");
    let (ok, out) = wgpt(&["bench", "--preset", "tiny", "--plan-only", "--recompute", "most"]);
    assert!(!ok && out.contains("most") && Recompute::NAMES.iter().all(|n| out.contains(n)), "{out}");
}
