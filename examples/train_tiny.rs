//! Trains the tiny GPT (2 layers, C=32, 2 heads, T=16) character by character on the short text in
//! `assets/tiny.txt`, printing the loss as it falls and then a greedy sample. Every number is
//! computed by WGSL kernels through the compiled step. Run: `cargo run --release --example train_tiny`
//! (or `make run`); `WGPT_DEBUG=1` also prints the schedule and the memory plan.

use wgpt::gpu::{BackendChoice, Gpu, PipelineCache};
use wgpt::model::{param_table, GptConfig, Init};
use wgpt::train::{StepConfig, TrainStep};

/// A small deterministic generator (xorshift) so the example needs no RNG crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform().max(1e-12), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

fn main() -> wgpt::Result<()> {
    let text = include_str!("../assets/tiny.txt");
    let mut chars: Vec<char> = text.chars().collect();
    chars.sort();
    chars.dedup();
    let encode = |c: char| chars.binary_search(&c).unwrap() as u32;
    let data: Vec<u32> = text.chars().map(encode).collect();

    let gpu = pollster::block_on(Gpu::new(BackendChoice::Auto))?;
    println!("adapter: {}", gpu.describe());
    let model = GptConfig { vocab_size: chars.len(), ..GptConfig::tiny() };
    let (batch, t) = (8, model.block_size);
    let mut cache = PipelineCache::new();
    let mut step = pollster::block_on(TrainStep::build(&gpu, &mut cache, StepConfig::new(model, batch)))?;
    println!("{} dispatches per step, {} pipelines", step.step.len(), cache.len());

    let mut rng = Rng(0x9e3779b97f4a7c15);
    let specs = param_table(&model);
    step.load_params(|name, _| {
        let s = specs.iter().find(|s| s.name == name).unwrap();
        Ok((0..s.numel())
            .map(|_| match s.init {
                Init::Normal(std) => (rng.normal() * std as f64) as f32,
                Init::Zeros => 0.0,
                Init::Ones => 1.0,
            })
            .collect())
    })?;

    let steps = 400;
    let started = std::time::Instant::now();
    for i in 0..steps {
        let (mut ids, mut targets) = (Vec::new(), Vec::new());
        for _ in 0..batch {
            let s = (rng.next() % (data.len() - t - 1) as u64) as usize;
            ids.extend_from_slice(&data[s..s + t]);
            targets.extend_from_slice(&data[s + 1..s + t + 1]);
        }
        // Linear warmup over 30 steps, then constant: enough for a demo.
        let lr = 3e-3 * ((i + 1) as f64 / 30.0).min(1.0);
        let stats = pollster::block_on(step.train_step(&ids, &targets, lr))?;
        if i % 50 == 0 || i == steps - 1 {
            println!("step {i:4}  loss {:.4}  grad norm {:.3}", stats.loss, stats.grad_norm);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{steps} steps in {secs:.1} s ({:.0} tokens/s)", (steps * batch * t) as f64 / secs);

    // Greedy sample: feed the last T characters, take the argmax of the last position.
    let mut out: Vec<u32> = "the ".chars().map(encode).collect();
    for _ in 0..120 {
        let ctx: Vec<u32> = out.iter().rev().take(t).rev().cloned().collect();
        let mut ids = vec![0u32; batch * t];
        ids[..ctx.len()].copy_from_slice(&ctx);
        step.set_batch(&ids, &vec![0; batch * t])?;
        step.run_forward();
        let logits = pollster::block_on(step.step.read_f32(step.sec.logits.expect("one chunk of logits")))?;
        let v = chars.len();
        let row = &logits[(ctx.len() - 1) * v..ctx.len() * v];
        let next = (0..v).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        out.push(next as u32);
    }
    println!("sample: {}", out.iter().map(|&i| chars[i as usize]).collect::<String>());
    Ok(())
}
