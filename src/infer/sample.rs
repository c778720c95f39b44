//! `wgpt sample`: a model directory's continuations of a prompt, streamed as they are generated
//! with the KV cache (`Generator`), or with a whole forward pass per token (`--no-cache`, the
//! reference), and the tokens per second at the end.

use std::path::Path;

use super::{Generator, Sampling, TextStream};
use crate::error::Result;
use crate::gpu::context::BackendChoice;
use crate::train::checkpoints::{open_forward_only, ModelDir};

/// What `wgpt sample` asks for.
pub struct Ask<'a> {
    pub ckpt: &'a Path,
    pub prompt: &'a str,
    /// New tokens per sample, at most.
    pub tokens: usize,
    pub sampling: Sampling,
    pub seed: u64,
    pub num_samples: usize,
    /// A whole forward pass per token instead of the KV cache.
    pub no_cache: bool,
}

/// Runs `wgpt sample`.
pub fn run(backend: BackendChoice, ask: &Ask) -> Result<()> {
    if ask.no_cache {
        recomputing(backend, ask)
    } else {
        cached(backend, ask)
    }
}

/// `sample --no-cache`: a whole forward pass over the context for every token (one sample).
fn recomputing(backend: BackendChoice, &Ask { ckpt, prompt, tokens, sampling, seed, .. }: &Ask) -> Result<()> {
    let (trainer, ids) = open_forward_only(
        backend,
        ckpt,
        |_, _| 1,
        |_, tok| tok.encode(prompt).map_err(|e| crate::Error::Other(format!("--prompt: {e}"))),
        true,
    )?;
    let mut rng = crate::data::batches::Rng(seed);
    let started = std::time::Instant::now();
    let out = trainer.generate(&ids, tokens, sampling, &mut rng)?;
    let secs = started.elapsed().as_secs_f64();
    println!("{}", trainer.tokenizer.decode(&out));
    eprintln!("{tokens} tokens in {secs:.2}s ({:.1} tokens/s, whole forward per token)", tokens as f64 / secs);
    Ok(())
}

/// Generates with the KV cache (`infer::Generator`), streaming the text of a single sample as it
/// comes; several samples are printed when done. Stops at --tokens, at the tokenizer's end-of-text
/// token, or at the model's context length.
fn cached(backend: BackendChoice, &Ask { ckpt, prompt, tokens, sampling, seed, num_samples, .. }: &Ask) -> Result<()> {
    use std::io::Write;
    let ModelDir { model, tokenizer, params, .. } = ModelDir::open(ckpt, &format!("--ckpt {}", ckpt.display()))?;
    let ids = tokenizer.encode(prompt).map_err(|e| crate::Error::Other(format!("--prompt: {e}")))?;
    if ids.len() > model.block_size {
        return Err(crate::Error::Other(format!(
            "--prompt: {} tokens, more than the model's context of {}",
            ids.len(),
            model.block_size
        )));
    }
    let gpu = pollster::block_on(crate::gpu::Gpu::new(backend))?;
    let generator = pollster::block_on(Generator::new(&gpu, model, num_samples, sampling))?;
    generator.load_params(&params)?;
    let mut rng = crate::data::batches::Rng(seed);
    let started = std::time::Instant::now();
    let mut shown = TextStream::default();
    let stream = num_samples == 1;
    if stream {
        print!("{prompt}");
    }
    let out = pollster::block_on(generator.generate(&ids, tokens, tokenizer.end_of_text(), false, &mut rng, |next| {
        if let Some(text) = stream.then(|| shown.push(&tokenizer, next[0])).flatten() {
            print!("{text}");
            let _ = std::io::stdout().flush();
        }
    }))?;
    let secs = started.elapsed().as_secs_f64();
    if stream {
        println!("{}", shown.finish(&tokenizer));
    } else {
        for (i, seq) in out.iter().enumerate() {
            println!("--- sample {} ---\n{prompt}{}", i + 1, tokenizer.decode(seq));
        }
    }
    let made: usize = out.iter().map(Vec::len).sum();
    eprintln!("{made} tokens in {secs:.2}s ({:.1} tokens/s, {} sequence(s), KV cache)", made as f64 / secs, out.len());
    Ok(())
}
