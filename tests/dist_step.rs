//! Data-parallel training steps on in-process peers (`dist::Threads`): N ranks, each running its
//! share of the micro-batches, end with the parameters of one rank running them all with
//! grad_accum multiplied by N, bit for bit (the tied wte's gradient included, which lm_head and
//! the embedding both write).

mod common;
use std::collections::HashMap;

use common::*;
use rand::Rng;
use wgpt::dist::{Comm, Threads};
use wgpt::gpu::PipelineCache;
use wgpt::model::GptConfig;
use wgpt::train::config::RunConfig;
use wgpt::train::trainer::{load_corpus, Trainer};
use wgpt::train::{StepConfig, TrainStep};

const STEPS: usize = 3;
const BATCH: usize = 2;

fn model() -> GptConfig {
    GptConfig::tiny()
}

/// Token ids of the job's micro-batch m of step s (ids and targets).
fn micro_batch(s: usize, m: usize) -> (Vec<u32>, Vec<u32>) {
    let mut r = rng((s * 100 + m) as u64);
    let n = BATCH * model().block_size;
    let v = model().vocab_size as u32;
    ((0..n).map(|_| r.random_range(0..v)).collect(), (0..n).map(|_| r.random_range(0..v)).collect())
}

/// Trains STEPS steps as rank `comm.rank()` of `comm.size()`, each rank with `accum`
/// micro-batches (rank-major: rank r takes the job's micro-batches r·accum ..); returns the
/// parameters' bits.
fn train(comm: &dyn Comm, accum: usize, order: &dyn Fn(usize) -> usize) -> HashMap<String, Vec<u32>> {
    train_with(comm, accum, 1, false, order)
}

/// How the ranks of `train_f` run: micro-batches per rank, virtual ranks, ZeRO-1, f16 storage.
#[derive(Clone, Copy)]
struct Setup {
    accum: usize,
    virtual_ranks: usize,
    zero: bool,
    f16: bool,
}

fn train_with(
    comm: &dyn Comm,
    accum: usize,
    virtual_ranks: usize,
    zero: bool,
    order: &dyn Fn(usize) -> usize,
) -> HashMap<String, Vec<u32>> {
    train_f(comm, Setup { accum, virtual_ranks, zero, f16: false }, order)
}

/// `train` with each rank standing for `virtual_ranks` ranks of `accum` micro-batches each, with
/// ZeRO-1 or not, in f32 or f16 storage; the moments' bits join the parameters' (keyed adam_m.*
/// / adam_v.*).
fn train_f(comm: &dyn Comm, setup: Setup, order: &dyn Fn(usize) -> usize) -> HashMap<String, Vec<u32>> {
    let Setup { accum, virtual_ranks, zero, f16 } = setup;
    pollster::block_on(async {
        let gpu = open_gpu().await;
        let mut cfg = StepConfig::new(model(), BATCH);
        if f16 {
            cfg.precision = wgpt::train::Precision::F16;
        }
        (cfg.grad_accum, cfg.ranks, cfg.rank, cfg.virtual_ranks) = (accum, comm.size(), comm.rank(), virtual_ranks);
        // Small groups, so some ranks' shards of some groups are empty.
        (cfg.zero, cfg.group_max) = (zero, 4096);
        let accum = accum * virtual_ranks;
        let mut ts = TrainStep::build(gpu, &mut PipelineCache::new(), cfg).await.unwrap();
        let mut r = rng(42);
        ts.load_params(|_, shape| Ok(randn(&mut r, shape.iter().product(), 0.1).iter().map(|&x| x as f32).collect()))
            .unwrap();
        let (mut updated, mut norms) = (0, Vec::new());
        for s in 0..STEPS + 2 * usize::from(f16) {
            let batches: Vec<_> = (0..accum).map(|a| micro_batch(s, order(comm.rank() * accum + a))).collect();
            let micro: Vec<(&[u32], &[u32])> = batches.iter().map(|(i, t)| (&i[..], &t[..])).collect();
            let st = ts.train_micro_ranked(comm, &micro, 1e-2).await.unwrap();
            // f16 starts at a loss scale that may overflow (a skipped step, the scale halved).
            assert!(st.loss.is_finite() && (f16 || !st.skipped), "step {s}: {st:?}");
            updated += usize::from(!st.skipped);
            norms.push(st.grad_norm.to_bits());
        }
        assert!(updated >= STEPS, "only {updated} steps updated the weights");
        assert_eq!(ts.sharded(), zero && comm.size() > 1);
        // The f32 masters (under ZeRO-1 with f16 each rank keeps its shard: gathered here).
        let mut params = ts.read_masters(comm).await.unwrap();
        params.extend(ts.read_moments(comm).await.unwrap());
        let mut bits: HashMap<String, Vec<u32>> =
            params.into_iter().map(|(k, v)| (k, v.iter().map(|x| x.to_bits()).collect())).collect();
        // The gradient norm of every step (what clipping scales by), as the job reports it.
        bits.insert("step.grad_norm".into(), norms);
        bits
    })
}

fn on_threads(ranks: usize, accum: usize) -> Vec<HashMap<String, Vec<u32>>> {
    let job = Threads::job(ranks);
    std::thread::scope(|s| {
        let handles: Vec<_> = job.into_iter().map(|c| s.spawn(move || train(&c, accum, &|m| m))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Names of the parameters whose bits differ.
fn differing(a: &HashMap<String, Vec<u32>>, b: &HashMap<String, Vec<u32>>) -> Vec<String> {
    let mut names: Vec<String> = a.keys().filter(|k| a[*k] != b[*k]).cloned().collect();
    names.sort();
    names
}

#[test]
fn ranks_give_the_bits_of_one_rank_accumulating() {
    for ranks in [2, 3] {
        let one = train(&wgpt::dist::Solo, ranks, &|m| m);
        for (r, got) in on_threads(ranks, 1).iter().enumerate() {
            let diff = differing(&one, got);
            assert!(
                diff.is_empty(),
                "{ranks} ranks, rank {r}: parameters differ from one rank with grad_accum {ranks}: {diff:?}"
            );
        }
        if ranks == 3 {
            // The comparison can fail: the same micro-batches summed in another order differ
            // (with two, a + b = b + a exactly).
            let swapped = train(&wgpt::dist::Solo, 3, &|m| 2 - m);
            assert!(!differing(&one, &swapped).is_empty(), "micro-batch order left no trace in the bits");
        }
    }
}

// With A > 1 micro-batches per rank, N ranks add N sums of A: one process reaches their bits
// with virtual_ranks N (its A·N micro-batches in N groups), and not without it.
#[test]
fn virtual_ranks_give_the_bits_of_ranks_accumulating() {
    let (ranks, accum) = (2, 2);
    let reference = train_with(&wgpt::dist::Solo, accum, ranks, false, &|m| m);
    for (r, got) in on_threads(ranks, accum).iter().enumerate() {
        let diff = differing(&reference, got);
        assert!(
            diff.is_empty(),
            "rank {r} of {ranks} with grad_accum {accum} differs from virtual_ranks {ranks}: {diff:?}"
        );
    }
    // The comparison can fail: one process summing the four micro-batches in one run,
    // ((G0 + G1) + G2) + G3, differs from (G0 + G1) + (G2 + G3).
    let flat = train(&wgpt::dist::Solo, accum * ranks, &|m| m);
    assert!(!differing(&reference, &flat).is_empty(), "the grouping of the sums left no trace in the bits");
}

// ZeRO-1: each rank updates its shard of the parameters with its shard of the moments and
// gathers the rest; parameters and (gathered) moments keep the bits of every rank updating all.
#[test]
fn zero_gives_the_bits_of_every_rank_updating_all() {
    for ranks in [2, 3] {
        let plain = train(&wgpt::dist::Solo, ranks, &|m| m);
        let job = Threads::job(ranks);
        let got: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> =
                job.into_iter().map(|c| s.spawn(move || train_with(&c, 1, 1, true, &|m| m))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (r, g) in got.iter().enumerate() {
            assert_eq!(g.len(), plain.len(), "rank {r}: parameters and moments by name");
            let diff = differing(&plain, g);
            assert!(diff.is_empty(), "{ranks} ranks with zero=1, rank {r}: differ from one rank: {diff:?}");
        }
    }
}

// fp16 storage: N ranks store each partial sum of the exchange as f16, as one process with
// virtual_ranks N stores its folds; parameters and moments match (ZeRO-1 too, where each rank keeps
// the f32 masters of its shard only and the ranks gather the f16 copy the kernels read: a copy
// gathered wrong changes the next step's loss and norm). Plain accumulation rounds differently.
#[test]
fn f16_ranks_give_the_bits_of_virtual_ranks() {
    for (ranks, zero) in [(2, false), (3, false), (3, true)] {
        let one = Setup { accum: 1, virtual_ranks: ranks, zero: false, f16: true };
        let reference = train_f(&wgpt::dist::Solo, one, &|m| m);
        let job = Threads::job(ranks);
        let got: Vec<_> = std::thread::scope(|s| {
            let setup = Setup { accum: 1, virtual_ranks: 1, zero, f16: true };
            let handles: Vec<_> = job.into_iter().map(|c| s.spawn(move || train_f(&c, setup, &|m| m))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (r, g) in got.iter().enumerate() {
            let diff = differing(&reference, g);
            assert!(diff.is_empty(), "f16, {ranks} ranks (zero {zero}), rank {r}: differ from virtual_ranks: {diff:?}");
        }
        if ranks == 3 && !zero {
            let flat = train_f(&wgpt::dist::Solo, Setup { accum: 3, virtual_ranks: 1, ..one }, &|m| m);
            assert!(!differing(&reference, &flat).is_empty(), "f16 rounding of the partial sums left no trace");
        }
    }
}

/// A trainer of the tiny preset on tinyshakespeare as one rank of `comm`'s job (ranks set in
/// its config), trained 3 steps; its parameters' bits.
fn trainer_bits(grad_accum: usize, comm: Box<dyn Comm>) -> HashMap<String, Vec<u32>> {
    let corpus = load_corpus(Some(&shared("data/tinyshakespeare.txt"))).unwrap();
    let mut cfg = RunConfig::preset("tiny").unwrap();
    (cfg.grad_accum, cfg.ranks, cfg.rank) = (grad_accum, comm.size(), comm.rank());
    let mut t = Trainer::new(gpu(), cfg, &corpus).unwrap();
    t.join(comm).unwrap();
    for _ in 0..STEPS {
        pollster::block_on(t.train_step()).unwrap();
    }
    let params = pollster::block_on(t.ts.read_params()).unwrap();
    params.into_iter().map(|(k, v)| (k, v.iter().map(|x| x.to_bits()).collect())).collect()
}

// The trainer draws a step's micro-batches from one stream, rank-major, so N trainers joined to
// a job train on the sequences one trainer with grad_accum × N draws, and end with its bits.
#[test]
fn trainers_on_ranks_train_like_one_trainer() {
    let ranks = 2;
    let one = trainer_bits(ranks, Box::new(wgpt::dist::Solo));
    let job = Threads::job(ranks);
    let got: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = job.into_iter().map(|c| s.spawn(move || trainer_bits(1, Box::new(c)))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (r, g) in got.iter().enumerate() {
        let diff = differing(&one, g);
        assert!(
            diff.is_empty(),
            "trainer rank {r} of {ranks} differs from one trainer with grad_accum {ranks}: {diff:?}"
        );
    }
}

// Ranks started with different settings are refused when they join, with the setting named.
#[test]
fn ranks_that_disagree_are_refused_at_the_start() {
    let corpus = load_corpus(Some(&shared("data/tinyshakespeare.txt"))).unwrap();
    let job = Threads::job(2);
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = job
            .into_iter()
            .enumerate()
            .map(|(r, c)| {
                let corpus = &corpus;
                s.spawn(move || {
                    let mut cfg = RunConfig::preset("tiny").unwrap();
                    (cfg.ranks, cfg.rank, cfg.seed) = (2, r, 1 + r as u64);
                    let mut t = Trainer::new(gpu(), cfg, corpus).unwrap();
                    t.join(Box::new(c)).unwrap_err().to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for e in &errors {
        assert!(e.contains("differ in setting seed"), "{e}");
    }
}

// The exchange's buckets: the last micro-batch's dispatches run once, in order, across the
// buckets and the tail; every gradient is in one bucket, and nothing after its bucket touches it
// (so the exchanged sum is final); backward finishes layers one after another, so there are
// several buckets to overlap.
#[test]
fn exchange_buckets_cover_the_backward_pass_in_order() {
    let mut cfg = StepConfig::new(GptConfig { n_layer: 3, ..model() }, BATCH);
    (cfg.ranks, cfg.grad_accum) = (2, 2);
    let (program, sec) = TrainStep::program(cfg, 128 << 20).unwrap();
    let ran: Vec<usize> =
        sec.exchange.iter().flat_map(|b| b.run.clone()).chain(sec.exchange_tail.clone()).flatten().collect();
    let want: Vec<usize> = (sec.forward.start..sec.backward.end).chain(sec.fold_last.clone()).collect();
    assert_eq!(ran, want, "the buckets' dispatches are not the last micro-batch's");
    assert!(sec.exchange.len() >= 3, "{} buckets for 3 layers", sec.exchange.len());
    let t = &program.tensors;
    let window = |id: wgpt::graph::TensorId| {
        let (root, start) = t.window(id);
        (root, start..start + t.get(id).numel())
    };
    let mut seen = Vec::new();
    let mut after: Vec<usize> = ran.clone();
    for b in &sec.exchange {
        let n: usize = b.run.iter().map(|r| r.len()).sum();
        after.drain(..n);
        for &g in &b.grads {
            let (root, w) = window(g);
            let late = after.iter().find(|&&i| {
                program.dispatches[i].args.iter().any(|&(_, a)| {
                    let (r, aw) = window(a);
                    r == root && aw.start < w.end && w.start < aw.end
                })
            });
            assert!(late.is_none(), "{} is touched by dispatch {late:?} after its bucket", t.get(g).name);
            seen.push(g);
        }
    }
    let mut all: Vec<_> = sec.layout.params.iter().map(|p| p.grad).collect();
    all.sort();
    seen.sort();
    assert_eq!(seen, all, "every gradient in exactly one bucket");
}
