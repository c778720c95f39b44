//! Generation speed on the current adapter: the KV-cache program (`infer::Generator`) against a
//! whole forward pass per token (`Trainer::continue_text`, what sampling did before), on random
//! weights of two shapes: nanoGPT's shakespeare-char (L4 H4 C128 V65) and GPT-2 124M (L12 H12 C768
//! V50257), both with 320 positions: a 64-token prompt, then 256 new tokens, greedy; and the time
//! to the first token with the prompt in one pass or one position per step.
//! Run: `cargo run --release --example bench_generate` (`-- --quick`: the small shape only).

use std::collections::HashMap;
use std::time::Instant;

use wgpt::data::batches::Rng;
use wgpt::data::Tokenizer;
use wgpt::gpu::{BackendChoice, Gpu};
use wgpt::infer::{Generator, Sampling};
use wgpt::model::{param_table, GptConfig};
use wgpt::train::config::RunConfig;
use wgpt::train::trainer::Trainer;

const PROMPT: usize = 64;
const NEW: usize = 256;

fn weights(model: &GptConfig) -> HashMap<String, Vec<f32>> {
    let mut rng = Rng(7);
    param_table(model)
        .into_iter()
        .map(|s| {
            let n: usize = s.shape.iter().product();
            (s.name, (0..n).map(|_| (rng.uniform() as f32 - 0.5) * 0.04).collect())
        })
        .collect()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let gpu = pollster::block_on(Gpu::new(BackendChoice::Auto)).expect("an adapter");
    println!("adapter: {}", gpu.describe());
    let shapes = [
        (
            "shakespeare-char",
            GptConfig { vocab_size: 65, block_size: PROMPT + NEW, n_layer: 4, n_head: 4, n_embd: 128 },
        ),
        ("gpt2-124M", GptConfig { vocab_size: 50257, block_size: PROMPT + NEW, n_layer: 12, n_head: 12, n_embd: 768 }),
    ];
    for (name, model) in shapes.into_iter().take(if quick { 1 } else { 2 }) {
        let params = weights(&model);
        let prompt: Vec<u32> = (0..PROMPT as u32).map(|i| i * 7 % model.vocab_size as u32).collect();
        for batch in [1, 8] {
            let mut g = pollster::block_on(Generator::new(&gpu, model, batch, Sampling::GREEDY))
                .expect("the decode program compiles");
            g.load_params(&params).unwrap();
            // Short runs first: the driver compiles pipelines on first use.
            pollster::block_on(g.generate(&prompt[..2], 1, None, false, &mut Rng(1), |_| {})).unwrap();
            // The first token: the prompt in one pass, or one position per step (alternating).
            let mut first = [Vec::new(), Vec::new()];
            for round in 0..4 {
                g.one_pass = round % 2 == 0;
                let t0 = Instant::now();
                pollster::block_on(g.generate(&prompt, 1, None, false, &mut Rng(1), |_| {})).unwrap();
                first[round % 2].push(format!("{:.0}", t0.elapsed().as_secs_f64() * 1e3));
            }
            g.one_pass = true;
            println!(
                "{name:17} B={batch}  first token after the {PROMPT}-token prompt: {} ms in one pass, {} ms one position per step",
                first[0].join("/"),
                first[1].join("/")
            );
            let t0 = Instant::now();
            let out = pollster::block_on(g.generate(&prompt, NEW, None, false, &mut Rng(1), |_| {})).unwrap();
            let secs = t0.elapsed().as_secs_f64();
            let made: usize = out.iter().map(Vec::len).sum();
            println!(
                "{name:17} B={batch}  KV cache:      {made:5} tokens in {secs:7.2} s  {:8.1} tokens/s  {:7.1} ms/step (prefill included)",
                made as f64 / secs,
                secs * 1e3 / NEW as f64
            );
        }
        // The whole forward per token always runs all block_size positions: a few tokens show it.
        let reps = if model.n_layer > 4 { 2 } else { 8 };
        let mut cfg = RunConfig::preset("tiny").unwrap();
        (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size, cfg.batch_size) =
            (model.n_layer, model.n_head, model.n_embd, model.block_size, 1);
        let text: String = (0..model.vocab_size.min(200)).map(|i| char::from_u32(0x100 + i as u32).unwrap()).collect();
        let mut tok = Tokenizer::char_level(&text);
        if model.vocab_size > 200 {
            tok = Tokenizer::bpe(&text, model.vocab_size).unwrap_or(tok);
        }
        // What `sample --no-cache` runs: a forward-only program holding the logits whole.
        let trainer = match Trainer::forward_only(&gpu, cfg, model, tok, &params, 1, true) {
            Ok(t) => t,
            Err(e) => {
                println!("{name:17} B=1  whole forward: not measured ({e})");
                continue;
            }
        };
        pollster::block_on(trainer.continue_text(&prompt, 1, Sampling::GREEDY, &mut Rng(1))).unwrap();
        let t0 = Instant::now();
        pollster::block_on(trainer.continue_text(&prompt, reps, Sampling::GREEDY, &mut Rng(1))).unwrap();
        let per = t0.elapsed().as_secs_f64() / reps as f64;
        println!(
            "{name:17} B=1  whole forward: {reps:5} tokens, {:7.1} ms/token ({:.1} tokens/s)",
            per * 1e3,
            1.0 / per
        );
    }
}
