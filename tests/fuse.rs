//! Fusion (`Graph::fuse`): GPT's residual adds fold into the output projections, its GELUs into
//! the c_fc forward and the mlp.c_proj dx product, and its bias gradients into the dW products;
//! a fused step gives the unfused loss and
//! gradients bit for bit (f32, every recomputation policy), and so does `Fusion::Alias` (CPU
//! adapters: adds stay kernels, their backward an alias); an add whose stream is read again later
//! is left alone, since its gradient could not simply be dout.

mod common;
use std::collections::HashMap;

use common::*;
use wgpt::gpu::{PipelineCache, Program, Step};
use wgpt::graph::autodiff::Autodiff;
use wgpt::graph::flat::FlatLayout;
use wgpt::graph::fuse::{Fused, Fusion};
use wgpt::graph::{Class, DType, Graph, Node, Recompute};
use wgpt::model::{gpt, param_table, GptConfig};

#[test]
fn gpt_residual_adds_and_gelus_fold_into_the_linears() {
    let cfg = GptConfig { vocab_size: 50, block_size: 16, n_layer: 3, n_head: 2, n_embd: 32 };
    let mut g = Graph::new();
    let layout = FlatLayout::new(&mut g.t, &param_table(&cfg), DType::F32);
    let ids = g.t.u32("input_ids", &[2, 16], Class::Input);
    let targets = g.t.u32("targets", &[2, 16], Class::Input);
    let loss = g.t.f32("loss", &[4], Class::Output);
    gpt::record(&mut g, &cfg, &layout.param_ids(), ids, targets, loss, usize::MAX).unwrap();
    let before = g.nodes.len();
    assert_eq!(g.clone().fuse(Recompute::None, Fusion::Off), Fused::default());
    let mut aliased = g.clone();
    assert_eq!(aliased.fuse(Recompute::None, Fusion::Alias), Fused { aliased: 2 * cfg.n_layer, ..Fused::default() });
    assert_eq!(aliased.nodes.len(), before, "aliasing removes no node");
    let blocks_before: Vec<_> = (0..before).map(|i| g.block_of(i)).collect();
    let l = cfg.n_layer;
    assert_eq!(
        g.clone().fuse(Recompute::Gelu, Fusion::Epilogues),
        Fused { residual: 2 * l, gelu: 0, gelu_backward: l, aliased: 0, bias_grads: 4 * l }
    );
    assert_eq!(
        g.fuse(Recompute::None, Fusion::Epilogues),
        Fused { residual: 2 * l, gelu: l, gelu_backward: l, aliased: 0, bias_grads: 4 * l }
    );
    assert_eq!(g.nodes.len(), before - 3 * l);
    assert!(
        !g.nodes.iter().any(|n| matches!(n, Node::Residual { .. } | Node::Gelu { .. })),
        "an add or a GELU was left"
    );
    let fused: Vec<String> = g
        .nodes
        .iter()
        .filter_map(|n| match *n {
            Node::Matmul { out, res: Some(_), .. } => Some(g.t.get(out).name.clone()),
            _ => None,
        })
        .collect();
    let want: Vec<String> = (0..cfg.n_layer).flat_map(|l| [format!("h{l}.res1"), format!("h{l}.res2")]).collect();
    assert_eq!(fused, want, "each add's output is now written by its projection");
    let name = |t| g.t.get(t).name.clone();
    let gelus: Vec<(String, String)> = g
        .nodes
        .iter()
        .filter_map(|n| match *n {
            Node::Matmul { out, gelu: Some(a), .. } => Some((name(out), name(a))),
            _ => None,
        })
        .collect();
    let want: Vec<(String, String)> = (0..l).map(|l| (format!("h{l}.c_fc"), format!("h{l}.gelu"))).collect();
    assert_eq!(gelus, want, "c_fc writes its GELU");
    let gated: Vec<(String, String)> = g
        .nodes
        .iter()
        .filter_map(|n| match *n {
            Node::Matmul { x, gelu_in: Some(h), .. } => Some((name(h), name(x))),
            _ => None,
        })
        .collect();
    assert_eq!(gated, want, "mlp.c_proj's dx product does the GELU backward");
    // Block scopes still hold their own ops: every block lost its 2 adds and its GELU.
    for l in 0..cfg.n_layer {
        let n = (0..g.nodes.len()).filter(|&i| g.block_of(i) == Some(l)).count();
        let was = blocks_before.iter().filter(|&&b| b == Some(l)).count();
        assert_eq!(n, was - 3, "block {l}");
    }
}

/// in -> x = linear(in) -> y = linear(gelu(linear(x))) -> r = x + y -> logits = linear(r) -> loss, the
/// loss and every weight and bias gradient, as bits, with what fusion folded (if asked to).
fn residual_block(fusion: Fusion, policy: Recompute, extra_reader: bool) -> (Fused, Vec<Vec<u32>>) {
    // 70 rows: the bias gradients' column sums span two of their 64-row chunks.
    let (rows, c, v) = (70, 20, 9);
    let mut r = rng(11);
    let mut g = Graph::new();
    let input = g.t.f32("in", &[rows, c], Class::Input);
    let targets = g.t.u32("targets", &[rows], Class::Input);
    let loss = g.t.f32("loss", &[1], Class::Output);
    let mut params = Vec::new();
    let mut param = |g: &mut Graph, name: &str, shape: &[usize], scale: f64| {
        let n = shape.iter().product();
        let p = g.t.f32(name, shape, Class::Param);
        let d = g.t.f32(format!("d.{name}"), shape, Class::Grad);
        params.push((p, d, to32(&randn(&mut r, n, scale))));
        p
    };
    let (w0, b0) = (param(&mut g, "w0", &[c, c], 0.3), param(&mut g, "b0", &[c], 0.3));
    let (wf, bf) = (param(&mut g, "wf", &[c, 2 * c], 0.3), param(&mut g, "bf", &[2 * c], 0.3));
    let (w1, b1) = (param(&mut g, "w1", &[2 * c, c], 0.3), param(&mut g, "b1", &[c], 0.3));
    let w2 = param(&mut g, "w2", &[c, v], 0.3);
    g.begin_block(0);
    let x = g.linear("x", input, w0, Some(b0), false).unwrap();
    let m = g.linear("fc", x, wf, Some(bf), false).unwrap();
    let h = g.gelu("gelu", m).unwrap();
    let y = g.linear("y", h, w1, Some(b1), false).unwrap();
    let mut res = g.add("res", x, y).unwrap();
    if extra_reader {
        // x read again after the add: its gradient starts before the add's rule runs.
        res = g.add("again", res, x).unwrap();
    }
    g.end_block();
    let logits = g.linear("logits", res, w2, None, false).unwrap();
    g.cross_entropy(logits, targets, loss, 0).unwrap();
    let folded = g.fuse(policy, fusion);
    let mut d = g.forward_dispatches();
    let grads: HashMap<_, _> = params.iter().map(|&(p, d, _)| (p, d)).collect();
    d.extend(Autodiff::new(&mut g, &grads, false).with_recompute(policy).backward(1.0).late);
    let step = pollster::block_on(Step::compile(
        gpu(),
        &mut PipelineCache::new(),
        Program { tensors: g.t, dispatches: d, ..Default::default() },
    ))
    .unwrap();
    step.write_f32(input, &to32(&randn(&mut rng(12), rows * c, 1.0))).unwrap();
    step.write_u32(targets, &(0..rows as u32).map(|i| (i * 7) % v as u32).collect::<Vec<_>>()).unwrap();
    for (p, _, vals) in &params {
        step.write_f32(*p, vals).unwrap();
    }
    step.run();
    let bits = |t| pollster::block_on(step.read_f32(t)).unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let mut out = vec![bits(loss)];
    out.extend(params.iter().map(|&(_, d, _)| bits(d)));
    (folded, out)
}

#[test]
fn a_fused_step_gives_the_unfused_bits() {
    let (_, plain) = residual_block(Fusion::Off, Recompute::None, false);
    assert!(plain[1..].iter().all(|d| d.iter().any(|&b| f32::from_bits(b) != 0.0)), "a gradient is all zero");
    for policy in [Recompute::None, Recompute::Gelu, Recompute::Block] {
        let (folded, fused) = residual_block(Fusion::Epilogues, policy, false);
        let gelu = (policy != Recompute::Gelu) as usize;
        let want = Fused { residual: 1, gelu, gelu_backward: 1, aliased: 0, bias_grads: 3 };
        assert_eq!(folded, want, "{}", policy.name());
        assert_eq!(fused, plain, "{}: fused loss or gradients differ", policy.name());
        let (folded, aliased) = residual_block(Fusion::Alias, policy, false);
        assert_eq!(folded, Fused { aliased: 1, ..Fused::default() }, "{}", policy.name());
        assert_eq!(aliased, plain, "{}: aliased loss or gradients differ", policy.name());
    }
}

#[test]
fn an_add_whose_stream_is_read_later_is_not_folded() {
    let (_, plain) = residual_block(Fusion::Off, Recompute::None, true);
    let (folded, fused) = residual_block(Fusion::Epilogues, Recompute::None, true);
    // `again` adds x to res: x is read after `res`, so `res` stays an add; `again` folds nothing
    // (its operands come from an add and a linear that others read). The GELU still folds.
    assert_eq!(folded, Fused { residual: 0, gelu: 1, gelu_backward: 1, aliased: 0, bias_grads: 3 });
    assert_eq!(fused, plain);
    let (folded, aliased) = residual_block(Fusion::Alias, Recompute::None, true);
    assert_eq!(folded, Fused::default());
    assert_eq!(aliased, plain);
}
