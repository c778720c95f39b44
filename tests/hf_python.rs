//! The Python side of Hugging Face compatibility: the `tokenizers` library loads wgpt's
//! tokenizer.json (char-level and byte-level BPE) and encodes texts, odd bytes included, to the
//! ids wgpt gives; where `transformers` and `torch` are installed too, `from_pretrained` on a run
//! directory scores a text to wgpt's eval loss and `generate(do_sample=False)` picks the ids of
//! wgpt's KV-cache generation (tests/generate.rs checks the same against a committed fixture
//! without torch). Python is WGPT_PYTHON or python3, with
//! target/pydeps on its path (`make deps` installs `tokenizers` there). CI requires `tokenizers`;
//! elsewhere a missing library skips with a message.

mod common;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{gpu, scratch, shared};
use serde_json::json;
use wgpt::data::batches::Rng;
use wgpt::data::Tokenizer;
use wgpt::infer::{Generator, Sampling};
use wgpt::train::checkpoints::ModelDir;
use wgpt::train::config::RunConfig;
use wgpt::train::trainer::{load_corpus, Trainer};

fn python() -> Command {
    let mut c = Command::new(std::env::var("WGPT_PYTHON").unwrap_or_else(|_| "python3".into()));
    let deps = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pydeps");
    let path = match std::env::var("PYTHONPATH") {
        Ok(p) if !p.is_empty() => format!("{}:{p}", deps.display()),
        _ => deps.display().to_string(),
    };
    c.env("PYTHONPATH", path);
    c
}

/// True when Python can import every module; in CI a missing `tokenizers` is a failure.
fn has(modules: &str) -> bool {
    let ok = python().args(["-c", &format!("import {modules}")]).output().is_ok_and(|o| o.status.success());
    if !ok {
        let required = modules == "tokenizers" && std::env::var("CI").is_ok();
        assert!(!required, "CI needs the Python `tokenizers` library (make deps installs it into target/pydeps)");
        eprintln!("SKIPPED: Python cannot import {modules}");
    }
    ok
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(name)
}

fn run(mut c: Command) -> String {
    let ended = common::process::run(&mut c);
    assert!(ended.ok(), "{}", ended.all);
    ended.stdout + &ended.stderr
}

#[test]
fn python_tokenizers_encodes_to_wgpt_ids() {
    if !has("tokenizers") {
        return;
    }
    let dir = scratch("tok");
    let text = std::fs::read_to_string(shared("data/tinyshakespeare.txt")).unwrap();
    let (train, held) = (&text[..100_000], &text[100_000..104_000]);
    let odd = "héllo wörld\t\u{1F600}  \n\n   x's 'll 123 4567 ?!... \r\n\u{0}\u{7f} tabs\t\tand  spaces  ";
    let char_tok = Tokenizer::char_level(train);
    let bpe = Tokenizer::bpe(train, 700).unwrap();
    let mut cases = Vec::new();
    for (name, tok, texts) in [("char", &char_tok, vec![held]), ("bpe", &bpe, vec![held, odd])] {
        let path = dir.join(format!("{name}.json"));
        tok.save(&path).unwrap();
        for t in texts {
            cases.push(json!({"tokenizer": path, "text": t, "ids": tok.encode(t).unwrap()}));
        }
    }
    let cases_path = dir.join("cases.json");
    std::fs::write(&cases_path, serde_json::to_string(&cases).unwrap()).unwrap();
    let mut c = python();
    c.arg(script("check_tokenizer.py")).arg(&cases_path);
    let out = run(c);
    assert_eq!(out.matches("ids match, decode matches").count(), 3, "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn transformers_loads_a_run_directory_and_gives_wgpt_loss() {
    if !has("tokenizers, transformers, torch") {
        return;
    }
    let dir = scratch("model");
    let mut cfg = RunConfig::preset("tiny").unwrap();
    (cfg.steps, cfg.eval_every, cfg.sample_every) = (30, 0, 0);
    let corpus = load_corpus(Some(&shared("data/tinyshakespeare.txt"))).unwrap();
    let mut t = Trainer::new(gpu(), cfg, &corpus).unwrap();
    t.run(&dir, |_: &str| {}).unwrap();
    let held = dir.join("held.txt");
    std::fs::write(&held, &corpus.text[500_000..520_000]).unwrap();
    let (loss, _) = t.eval_windows(&t.tokenizer.encode(&corpus.text[500_000..520_000]).unwrap()).unwrap();
    let mut c = python();
    c.arg(script("check_hf_model.py")).arg(&dir).arg(&held).arg(loss.to_string());
    run(c);
    // Greedy generation with the KV cache from two prompts, to the context length, against
    // generate(do_sample=False) on the same directory.
    let found = ModelDir::open(&dir, "the run").unwrap();
    let g = pollster::block_on(Generator::new(gpu(), found.model, 1, Sampling::GREEDY)).unwrap();
    g.load_params(&found.params).unwrap();
    let cases: Vec<_> = ["ROMEO:", "\nThe king"]
        .iter()
        .map(|text| {
            let prompt = found.tokenizer.encode(text).unwrap();
            let n = found.model.block_size + 1 - prompt.len();
            let ids = pollster::block_on(g.generate(&prompt, n, None, false, &mut Rng(1), |_| {})).unwrap();
            json!({"prompt_ids": prompt, "ids": ids[0]})
        })
        .collect();
    let cases_path = dir.join("generate.json");
    std::fs::write(&cases_path, serde_json::to_string(&cases).unwrap()).unwrap();
    let mut c = python();
    c.arg(script("check_hf_generate.py")).arg(&dir).arg(&cases_path);
    let out = run(c);
    assert_eq!(out.matches("case ").count(), 2, "{out}");
    eprintln!("{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}
