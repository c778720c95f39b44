//! The memory plan of a whole training step (no GPU needed): no two tensors that are live at the
//! same dispatch share a byte, views stay inside their base, the flat layouts of params, grads and
//! moments agree, and lifetime planning beats one buffer per tensor.

use wgpt::graph::memplan::plan;
use wgpt::model::GptConfig;
use wgpt::train::{StepConfig, TrainStep};

fn check(cfg: StepConfig, max_binding: u64) {
    let (program, sections) = TrainStep::program(cfg, max_binding).unwrap();
    let t = &program.tensors;
    let p = plan(t, &program.dispatches, 256);
    let n = t.len();
    let mut checked = 0;
    for a in 0..n {
        for b in a + 1..n {
            let (ta, tb) = (&t.list[a], &t.list[b]);
            // A view shares bytes with its base (and siblings) by design; compare roots only.
            if ta.view.is_some() || tb.view.is_some() {
                continue;
            }
            let (pa, pb) = (p.placement[a], p.placement[b]);
            if pa.arena != pb.arena || pa.size == 0 || pb.size == 0 {
                continue;
            }
            let (ia, ib) = (wgpt::graph::TensorId(a as u32), wgpt::graph::TensorId(b as u32));
            if !p.overlap_in_time(t, ia, ib) {
                continue;
            }
            checked += 1;
            let disjoint = pa.offset + pa.size <= pb.offset || pb.offset + pb.size <= pa.offset;
            assert!(disjoint, "{} {:?} and {} {:?} are live together and overlap", ta.name, pa, tb.name, pb);
        }
    }
    assert!(checked > 100, "the check compared only {checked} pairs");
    for (i, tensor) in t.list.iter().enumerate() {
        if let Some((base, _)) = tensor.view {
            let (v, b) = (p.placement[i], p.placement[base.index()]);
            assert!(
                v.arena == b.arena && v.offset >= b.offset && v.offset + v.size <= b.offset + b.size,
                "view {} escapes its base",
                tensor.name
            );
            assert_eq!(v.offset % 256, 0, "view {} is not 256-byte aligned", tensor.name);
        }
    }
    for fp in &sections.layout.params {
        let off = |id: wgpt::graph::TensorId| p.placement[id.index()].offset - p.placement[t.root(id).index()].offset;
        assert!(
            off(fp.param) == off(fp.grad) && off(fp.grad) == off(fp.m) && off(fp.m) == off(fp.v),
            "{} has different offsets in params/grads/moments",
            fp.spec.name
        );
    }
    assert!(p.peak_planned < p.naive_planned, "peak {} is not below the naive sum {}", p.peak_planned, p.naive_planned);
    println!("{}", p.report(t).lines().take(12).collect::<Vec<_>>().join("\n"));
}

#[test]
fn tiny_step_plan_is_sound() {
    check(StepConfig::new(GptConfig::tiny(), 2), 128 << 20);
}

#[test]
fn wider_step_plan_is_sound_with_small_bindings() {
    let model = GptConfig { vocab_size: 300, block_size: 32, n_layer: 3, n_head: 4, n_embd: 64 };
    // A 64 KiB binding limit forces the optimizer to split the flat ranges into chunks.
    check(StepConfig::new(model, 3), 64 << 10);
}

#[test]
fn recomputing_step_plans_are_sound() {
    let model = GptConfig { vocab_size: 300, block_size: 32, n_layer: 3, n_head: 4, n_embd: 64 };
    for policy in wgpt::graph::Recompute::ALL {
        let mut cfg = StepConfig::new(model, 3);
        cfg.recompute = policy;
        // 64 KiB bindings split the MLP's matmuls into row chunks: dropped roots with several producers.
        check(cfg, 64 << 10);
    }
}
