//! Evaluation's forward-only program (`Trainer::build_forward_only`, what `wgpt eval` and
//! `sample --no-cache` compile): no gradient or optimizer memory, a batch chosen to fit, and the
//! same score as the training step's forward, window for window, at any batch.

mod common;
use std::collections::HashMap;

use common::*;
use wgpt::data::Tokenizer;
use wgpt::graph::Class;
use wgpt::model::{param_table, GptConfig};
use wgpt::train::config::RunConfig;
use wgpt::train::trainer::Trainer;

const MODEL: GptConfig = GptConfig { vocab_size: 37, block_size: 24, n_layer: 2, n_head: 2, n_embd: 32 };

#[gpu_test]
async fn forward_only_scores_like_the_training_step_at_any_batch() {
    let mut r = rng(31);
    let params: HashMap<String, Vec<f32>> = param_table(&MODEL)
        .into_iter()
        .map(|s| {
            let n: usize = s.shape.iter().product();
            (s.name, to32(&randn(&mut r, n, 0.3)))
        })
        .collect();
    let text: String = (0..MODEL.vocab_size as u8).map(|i| (b'A' + i) as char).collect();
    let tok = Tokenizer::char_level(&text);
    let mut cfg = RunConfig::preset("tiny").unwrap();
    (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size, cfg.batch_size) =
        (MODEL.n_layer, MODEL.n_head, MODEL.n_embd, MODEL.block_size, 8);
    // Five windows and a bit.
    let tokens: Vec<u32> = (0..5 * 24 + 7).map(|i| ((i * 13 + 5) % 37) as u32).collect();
    let gpu = open_gpu().await;
    let training = Trainer::build_for_model(gpu, cfg.clone(), MODEL, tok.clone(), &params).await.unwrap();
    let want = training.score_windows(&tokens).await.unwrap();
    for windows in [1, 5, 64] {
        let t =
            Trainer::build_forward_only(gpu, cfg.clone(), MODEL, tok.clone(), &params, windows, false).await.unwrap();
        assert_eq!(t.cfg.batch_size, windows.next_power_of_two().min(64), "windows {windows}");
        let plan = &t.ts.step.plan;
        assert_eq!(plan.class_bytes(Class::Grad) + plan.class_bytes(Class::Optim), 0, "gradient or moment memory");
        let got = t.score_windows(&tokens).await.unwrap();
        assert_eq!(got.1, want.1, "tokens scored");
        assert_eq!(
            got.0.to_bits(),
            want.0.to_bits(),
            "batch {}: loss {} vs the training step's {}",
            windows,
            got.0,
            want.0
        );
    }
}
