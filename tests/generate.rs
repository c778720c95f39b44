//! Generation with the KV cache (`infer::Generator`) against the whole-forward reference
//! (`Trainer::next_logits`, what sampling computed before the cache): greedy decoding picks at every
//! step the largest logit of a whole forward pass over the same context (a pick within 1e-5 of it
//! counts, and is reported), also past the context length with the window sliding; top-k sampling
//! stays inside the top k and repeats for a seed, top-p inside the nucleus (after top-k); without
//! sliding a run stops at the context length. Against transformers: greedy picks the largest of
//! GPT2LMHeadModel's logits (the reference fixture's) after every prefix of its input ids, and
//! generates the ids of `generate(do_sample=False)` to the context length on a directory saved by
//! transformers (tests/fixtures/hf_generate).

mod common;
use std::collections::HashMap;

use common::*;
use wgpt::data::batches::Rng;
use wgpt::data::Tokenizer;
use wgpt::graph::fuse::Fusion;
use wgpt::infer::{Generator, Sampling};
use wgpt::model::{param_table, GptConfig};
use wgpt::train::config::RunConfig;
use wgpt::train::trainer::Trainer;

const MODEL: GptConfig = GptConfig { vocab_size: 37, block_size: 24, n_layer: 2, n_head: 2, n_embd: 32 };

/// Weights large enough that the logits spread (GPT-2's 0.02 would make nearly every step a tie).
fn weights() -> HashMap<String, Vec<f32>> {
    let mut r = rng(4242);
    param_table(&MODEL)
        .into_iter()
        .map(|s| {
            let n: usize = s.shape.iter().product();
            let v = randn(&mut r, n, 0.4);
            let v = if s.name.contains("ln_") && s.name.ends_with("weight") {
                v.iter().map(|x| 1.0 + x).collect()
            } else {
                v
            };
            (s.name, to32(&v))
        })
        .collect()
}

async fn reference(params: &HashMap<String, Vec<f32>>) -> Trainer {
    let text: String = (0..MODEL.vocab_size as u8).map(|i| (b'A' + i) as char).collect();
    let mut cfg = RunConfig::preset("tiny").unwrap();
    (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size, cfg.batch_size) =
        (MODEL.n_layer, MODEL.n_head, MODEL.n_embd, MODEL.block_size, 1);
    Trainer::build_for_model(open_gpu().await, cfg, MODEL, Tokenizer::char_level(&text), params).await.unwrap()
}

async fn generator(params: &HashMap<String, Vec<f32>>, batch: usize, sampling: Sampling) -> Generator {
    fused(params, batch, sampling, Fusion::Auto).await
}

async fn fused(params: &HashMap<String, Vec<f32>>, batch: usize, sampling: Sampling, fusion: Fusion) -> Generator {
    let g = Generator::with_options(open_gpu().await, MODEL, batch, sampling, fusion, None).await.unwrap();
    g.load_params(params).unwrap();
    g
}

#[gpu_test]
async fn greedy_with_the_cache_follows_the_whole_forward() {
    let params = weights();
    let reference = reference(&params).await;
    let g = generator(&params, 2, Sampling::GREEDY).await;
    let prompt = [3u32, 7, 1, 9];
    let mut seen = 0;
    let out = g.generate(&prompt, 100, None, false, &mut Rng(1), |ids| seen += ids.len()).await.unwrap();
    // The context holds 24 positions: the prompt's 4, then 20 generated tokens fed back, and the
    // token predicted after the last of them.
    assert_eq!(out[0].len(), MODEL.block_size - prompt.len() + 1);
    assert_eq!(seen, 2 * out[0].len(), "every step reported its tokens");
    assert_eq!(out[0], out[1], "two sequences with one prompt decode alike");
    // The other program forms decode the same tokens: nothing folded (off), and the residual adds,
    // GELU and, at this B=1, the LayerNorms folded into the products (epilogues).
    for fusion in [Fusion::Off, Fusion::Epilogues] {
        let other = fused(&params, 1, Sampling::GREEDY, fusion).await;
        let again = other.generate(&prompt, 100, None, false, &mut Rng(1), |_| {}).await.unwrap();
        assert_eq!(again[0], out[0], "{fusion:?}");
    }
    // Past the context, with the window sliding: when it is full, the last 12 tokens stay.
    let slid = g.generate(&prompt, 40, None, true, &mut Rng(1), |_| {}).await.unwrap();
    assert_eq!(slid[0].len(), 40);
    assert_eq!(slid[0][..out[0].len()], out[0][..], "sliding changes nothing before the context is full");
    let mut window = prompt.to_vec();
    let (mut ties, mut distinct) = (0, 0);
    for &id in &slid[0] {
        let logits = reference.next_logits(&window).await.unwrap();
        let best = logits.iter().copied().fold(f32::MIN, f32::max);
        let margin = best - logits[id as usize];
        assert!(margin <= 1e-5, "after {window:?}: picked {id}, {margin} below the largest logit");
        if margin > 0.0 {
            ties += 1;
        }
        let second =
            logits.iter().enumerate().filter(|&(i, _)| i != id as usize).map(|(_, &x)| x).fold(f32::MIN, f32::max);
        distinct += (best - second > 1e-3) as usize;
        window.push(id);
        if window.len() > MODEL.block_size {
            window.drain(..window.len() - MODEL.block_size / 2);
        }
    }
    // The check means something only if the steps had a clear winner.
    assert!(distinct >= slid[0].len() / 2, "only {distinct} of {} steps had a clear largest logit", slid[0].len());
    if ties > 0 {
        eprintln!("note: {ties} step(s) picked a logit within 1e-5 of the largest");
    }
}

/// Several decoding steps per submission (`steps_per_submit`, the tokens read back together) give
/// the tokens of one step per submission, sampling and with the window sliding, and stream every
/// step's tokens; with a stop token each sequence ends at its first one, however many steps ran
/// past it in the last burst.
#[gpu_test]
async fn bursts_of_steps_give_the_tokens_of_single_steps() {
    let params = weights();
    let sampling = Sampling { temperature: 1.0, top_k: 0, top_p: 1.0 };
    let run = async |steps: usize, stop: Option<u32>| {
        let mut g = generator(&params, 3, sampling).await;
        g.steps_per_submit = steps;
        let mut streamed = vec![Vec::new(); 3];
        let out = g
            .generate(&[2, 9], 45, stop, true, &mut Rng(17), |ids| {
                for (s, &id) in streamed.iter_mut().zip(ids) {
                    s.push(id);
                }
            })
            .await
            .unwrap();
        (out, streamed)
    };
    let (single, streamed) = run(1, None).await;
    assert_eq!(streamed, single, "one step per submission: the stream and the result differ");
    assert!(single.iter().all(|o| o.len() == 45), "45 tokens past a 24-position context");
    assert!(single[0] != single[1], "sampled sequences should differ");
    for steps in [3, 8] {
        let (burst, streamed) = run(steps, None).await;
        assert_eq!(burst, single, "{steps} steps per submission");
        assert_eq!(streamed, single, "{steps} steps per submission: the stream");
    }
    let stop = single[0][5];
    for steps in [1, 8] {
        let (out, _) = run(steps, Some(stop)).await;
        for (o, full) in out.iter().zip(&single) {
            let end = full.iter().position(|&t| t == stop).map_or(full.len(), |p| p + 1);
            assert_eq!(o[..], full[..end], "{steps} steps per submission, stop token {stop}");
        }
    }
}

/// A token table too large for one binding (here capped at 4 KiB: 64 rows of 16 channels) runs in
/// shards, for the embedding and the lm_head: the same tokens as in one piece. (Under that cap
/// the prompt goes one position per step, against one pass without it.)
#[gpu_test]
async fn a_token_table_in_shards_decodes_the_same() {
    let model = GptConfig { vocab_size: 150, n_embd: 16, ..MODEL };
    let mut r = rng(99);
    let params: HashMap<String, Vec<f32>> = param_table(&model)
        .into_iter()
        .map(|s| (s.name, to32(&randn(&mut r, s.shape.iter().product(), 0.4))))
        .collect();
    let greedy = Sampling::GREEDY;
    let mut outs = Vec::new();
    for cap in [None, Some(4096)] {
        let g = Generator::with_options(open_gpu().await, model, 2, greedy, Fusion::Auto, cap).await.unwrap();
        g.load_params(&params).unwrap();
        // Prompt tokens in every shard (0..64, 64..128, 128..150).
        outs.push(g.generate(&[5, 70, 140, 3], 12, None, false, &mut Rng(1), |_| {}).await.unwrap());
    }
    assert_eq!(outs[0], outs[1]);
    assert!(outs[0][0].iter().any(|&t| t >= 64), "no generated token from a later shard: {:?}", outs[0][0]);
}

#[gpu_test]
async fn top_k_sampling_stays_in_the_top_k_and_repeats_for_a_seed() {
    let params = weights();
    let reference = reference(&params).await;
    let k = 5;
    let g = generator(&params, 3, Sampling { temperature: 1.0, top_k: k, top_p: 1.0 }).await;
    let prompt = [2u32];
    let a = g.generate(&prompt, 12, None, false, &mut Rng(7), |_| {}).await.unwrap();
    let b = g.generate(&prompt, 12, None, false, &mut Rng(7), |_| {}).await.unwrap();
    assert_eq!(a, b, "the same seed gave other tokens");
    let c = g.generate(&prompt, 12, None, false, &mut Rng(8), |_| {}).await.unwrap();
    assert_ne!(a, c, "another seed gave the same 36 tokens");
    assert!(a[0] != a[1] || a[1] != a[2], "three sequences sampled alike");
    for seq in &a {
        let mut ctx = prompt.to_vec();
        for &id in seq {
            let mut logits = reference.next_logits(&ctx).await.unwrap();
            let x = logits[id as usize];
            logits.sort_by(|p, q| q.total_cmp(p));
            // The cache's logits round differently from the reference's: a margin of 1e-5.
            assert!(x >= logits[k - 1] - 1e-5, "after {ctx:?}: {id} is not among the top {k}");
            ctx.push(id);
        }
    }
    let e = g.generate(&[1; 25], 1, None, false, &mut Rng(1), |_| {}).await;
    assert!(e.is_err_and(|e| e.to_string().contains("context of 24")));
}

/// The smallest logit of the nucleus: the fewest likeliest tokens (among the top k; 0: all) whose
/// probability at temperature 1 reaches `top_p`.
fn nucleus_floor(logits: &[f32], top_k: usize, top_p: f64) -> f32 {
    let mut l = logits.to_vec();
    l.sort_by(|p, q| q.total_cmp(p));
    if top_k > 0 {
        l.truncate(top_k);
    }
    let w: Vec<f64> = l.iter().map(|&x| ((x - l[0]) as f64).exp()).collect();
    let goal = top_p * w.iter().sum::<f64>();
    let mut acc = 0.0;
    for (i, wi) in w.iter().enumerate() {
        acc += wi;
        if acc >= goal {
            return l[i];
        }
    }
    l[l.len() - 1]
}

#[gpu_test]
async fn top_p_sampling_stays_in_the_nucleus() {
    let params = weights();
    let reference = reference(&params).await;
    for (top_k, top_p) in [(0, 0.6), (0, 0.9), (6, 0.8)] {
        let g = generator(&params, 3, Sampling { temperature: 1.0, top_k, top_p }).await;
        let out = g.generate(&[5], 10, None, false, &mut Rng(11), |_| {}).await.unwrap();
        let again = g.generate(&[5], 10, None, false, &mut Rng(11), |_| {}).await.unwrap();
        assert_eq!(out, again, "top_p {top_p}: the same seed gave other tokens");
        let mut below_top = 0;
        for seq in &out {
            let mut ctx = vec![5u32];
            for &id in seq {
                let logits = reference.next_logits(&ctx).await.unwrap();
                let x = logits[id as usize];
                let floor = nucleus_floor(&logits, top_k, top_p);
                // The cache's logits round differently from the reference's: a margin of 1e-5.
                assert!(
                    x >= floor - 1e-5,
                    "top_k {top_k} top_p {top_p}, after {ctx:?}: {id} ({x}) is outside the nucleus (>= {floor})"
                );
                below_top += usize::from(x < logits.iter().cloned().fold(f32::MIN, f32::max));
                ctx.push(id);
            }
        }
        // 30 picks, none below the top: sampling would not be sampling.
        if top_p == 0.9 {
            assert!(below_top > 0, "top_p 0.9: every one of 30 picks was the likeliest token");
        }
    }
}

/// The host's sampler (`sample --no-cache`) keeps the same nucleus.
#[test]
fn host_pick_keeps_the_nucleus() {
    use wgpt::train::trainer::pick;
    let logits = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
    let seen = |top_p: f64| {
        let mut rng = Rng(3);
        let mut seen = [false; 3];
        for _ in 0..400 {
            seen[pick(&logits, Sampling { temperature: 1.0, top_k: 0, top_p }, &mut rng) as usize] = true;
        }
        seen
    };
    assert_eq!(seen(0.5), [true, false, false]);
    assert_eq!(seen(0.6), [true, true, false]);
    assert_eq!(seen(1.0), [true, true, true]);
}

/// The prompt goes in one pass whose keys and values fill every sequence's cache; once the window
/// slides, the sequences' contexts differ and each gets a pass of its own. Either way each
/// sequence samples from its own context's top 3, as the whole forward ranks them.
#[gpu_test]
async fn the_prompt_in_one_pass_fills_every_sequence_cache() {
    let params = weights();
    let reference = reference(&params).await;
    let k = 3;
    let g = generator(&params, 3, Sampling { temperature: 1.0, top_k: k, top_p: 1.0 }).await;
    let prompt = [3u32, 7, 1, 9, 30, 2, 2, 14, 8];
    // 9 + 15 tokens fill the 24 positions; the window then slides to the last 12 and goes on.
    let out = g.generate(&prompt, 26, None, true, &mut Rng(5), |_| {}).await.unwrap();
    assert!(out[0] != out[1] && out[1] != out[2] && out[0] != out[2], "sampled sequences alike: {out:?}");
    for (i, seq) in out.iter().enumerate() {
        let mut window = prompt.to_vec();
        for &id in seq {
            let mut logits = reference.next_logits(&window).await.unwrap();
            let x = logits[id as usize];
            logits.sort_by(|p, q| q.total_cmp(p));
            assert!(x >= logits[k - 1] - 1e-5, "sequence {i}, after {window:?}: {id} is not among the top {k}");
            window.push(id);
            if window.len() > MODEL.block_size {
                window.drain(..window.len() - MODEL.block_size / 2);
            }
        }
    }
}

/// Greedy decoding against transformers: the fixture's logits are GPT2LMHeadModel's at every
/// position of its input ids, so the largest after each prefix is the token `generate(do_sample=
/// False)` picks next. Every prefix of both rows (1 to 16 tokens: prefill and first step) picks it
/// here (or a logit within 1e-5 of it, reported).
#[gpu_test]
async fn greedy_picks_what_transformers_picks_after_every_prefix() {
    let fx = common::fixture::load();
    let model = GptConfig { vocab_size: 65, block_size: 16, n_layer: 2, n_head: 2, n_embd: 32 };
    let params: HashMap<String, Vec<f32>> =
        fx.f32s.iter().filter_map(|(k, v)| Some((k.strip_prefix("param.")?.to_string(), v.clone()))).collect();
    let g = generator_of(model, &params).await;
    let (ids, logits) = (&fx.i32s["input_ids"], &fx.f32s["logits"]);
    let (mut ties, mut clear) = (0, 0);
    for b in 0..2 {
        for len in 1..=16 {
            let prompt: Vec<u32> = ids[b * 16..b * 16 + len].iter().map(|&i| i as u32).collect();
            let next = g.generate(&prompt, 1, None, false, &mut Rng(1), |_| {}).await.unwrap()[0][0];
            let row = &logits[(b * 16 + len - 1) * 65..(b * 16 + len) * 65];
            let best = row.iter().copied().fold(f32::MIN, f32::max);
            let margin = best - row[next as usize];
            assert!(
                margin <= 1e-5,
                "row {b}, prefix of {len}: picked {next}, {margin} below transformers' largest logit"
            );
            ties += usize::from(margin > 0.0);
            let second =
                row.iter().enumerate().filter(|&(i, _)| i != next as usize).map(|(_, &x)| x).fold(f32::MIN, f32::max);
            clear += usize::from(best - second > 1e-3);
        }
    }
    assert!(clear >= 16, "only {clear} of 32 prefixes had a clear largest logit");
    if ties > 0 {
        eprintln!("note: {ties} prefix(es) picked a logit within 1e-5 of the largest");
    }
}

/// wgpt's KV-cache generation against transformers' `generate(do_sample=False)` itself, up to the
/// context length, on a GPT-2 directory saved by transformers (tests/fixtures/hf_generate, made once
/// by tests/python/make_generate_fixture.py: a trained 2-layer model, its `tokenizers` BPE, and
/// generate's ids and per-step logits for two prompts). Opened as `wgpt sample --ckpt` opens it;
/// the prompts encode to transformers' ids; at B=1 (with and without the LayerNorms folded into
/// the few-row products), and for each sequence of a B=3 batch (the tiled products), every
/// generated id is transformers', or at the first that is not, transformers' logit for
/// it is within 1e-5 of its largest (a tie, reported; the sequences part there, so the comparison
/// stops).
#[cfg(not(target_arch = "wasm32"))]
#[gpu_test]
async fn greedy_generation_equals_transformers_generate() {
    use wgpt::train::checkpoints::ModelDir;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_generate");
    let found = ModelDir::open(&dir, "the fixture").unwrap();
    let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let prompts: Vec<serde_json::Value> = serde_json::from_str(&meta.metadata().as_ref().unwrap()["prompts"]).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let i32s = |n: String| -> Vec<u32> {
        bytemuck::pod_collect_to_vec::<u8, i32>(st.tensor(&n).unwrap().data()).iter().map(|&i| i as u32).collect()
    };
    let logits = |n: String| -> Vec<f32> { bytemuck::pod_collect_to_vec(st.tensor(&n).unwrap().data()) };
    let v = found.model.vocab_size;
    let mut want = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        let text = p["prompt"].as_str().unwrap();
        let ids = found.tokenizer.encode(text).unwrap();
        assert_eq!(ids, i32s(format!("prompt{i}.ids")), "prompt {text:?} encodes to other ids than transformers'");
        let greedy = i32s(format!("prompt{i}.greedy"));
        let eot = found.tokenizer.end_of_text();
        let whole = ids.len() + greedy.len() == found.model.block_size + 1;
        assert!(whole || greedy.last().copied() == eot, "the fixture generates to the context length or <|endoftext|>");
        assert_eq!(found.tokenizer.decode(&greedy), p["continuation"].as_str().unwrap());
        want.push((ids, greedy, logits(format!("prompt{i}.logits"))));
    }
    let stop = found.tokenizer.end_of_text();
    assert!(stop.is_some(), "the fixture's tokenizer has <|endoftext|>");
    // Compares one sequence with transformers'; returns how many ids matched.
    let check = |what: &str, got: &[u32], (_, greedy, logits): &(Vec<u32>, Vec<u32>, Vec<f32>)| -> usize {
        for (s, (&g, &w)) in got.iter().zip(greedy).enumerate() {
            if g != w {
                let row = &logits[s * v..(s + 1) * v];
                let margin = row[w as usize] - row[g as usize];
                assert!(margin <= 1e-5, "{what}: step {s} picked {g}, transformers {w} ({margin} above it)");
                eprintln!("note: {what}: step {s} picked {g}, a logit within {margin} of transformers' {w}");
                return s;
            }
        }
        assert_eq!(got.len(), greedy.len(), "{what}: generated {} ids, transformers {}", got.len(), greedy.len());
        got.len()
    };
    let gpu = open_gpu().await;
    let mut matched = 0;
    // B=1 on the few-row products, with the adapter's folds (auto) and with the LayerNorms folded
    // in too (epilogues); B=3, three sequences of the first prompt, on the tiled products.
    for fusion in [Fusion::Auto, Fusion::Epilogues] {
        let one = Generator::with_options(gpu, found.model, 1, Sampling::GREEDY, fusion, None).await.unwrap();
        one.load_params(&found.params).unwrap();
        for (i, w) in want.iter().enumerate() {
            let out = one.generate(&w.0, found.model.block_size, stop, false, &mut Rng(1), |_| {}).await.unwrap();
            matched += check(&format!("prompt {i}, B=1, {fusion:?}"), &out[0], w);
        }
    }
    let three = Generator::with_options(gpu, found.model, 3, Sampling::GREEDY, Fusion::Auto, None).await.unwrap();
    three.load_params(&found.params).unwrap();
    let out = three.generate(&want[0].0, found.model.block_size, stop, false, &mut Rng(1), |_| {}).await.unwrap();
    for (b, seq) in out.iter().enumerate() {
        matched += check(&format!("prompt 0, B=3 row {b}"), seq, &want[0]);
    }
    assert!(matched >= 300, "only {matched} of 390 ids compared before a tie");
}

async fn generator_of(model: GptConfig, params: &HashMap<String, Vec<f32>>) -> Generator {
    let g = Generator::with_options(open_gpu().await, model, 1, Sampling::GREEDY, Fusion::Auto, None).await.unwrap();
    g.load_params(params).unwrap();
    g
}
