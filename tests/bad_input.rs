//! Every kind of bad input the `wgpt` binary can be given, end to end: each gets a non-zero exit
//! and exactly one line on stderr, `wgpt: error: ...`, naming the file or flag and what was
//! expected; never a panic or a backtrace. Where the user has data (a run directory, shards, a
//! checkpoint) it is left as it was, and no temporary file is left behind. The read-only and
//! disk-full cases mount small tmpfs file systems (tests run as root); where mounting is not
//! allowed they are skipped with a message, except under CI, where that fails.
//! (tests/cli.rs has the first settings mistakes, an existing --out, a corpus shorter than a block
//! and a config.json wider than its weights.)

mod common;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::process::{run, Ended};
use common::{scratch, shared};

/// Runs wgpt to its end. RUST_BACKTRACE=0: a panic prints its hint to set it, which the checks look for.
fn wgpt(args: &[&str]) -> Ended {
    run(common::process::wgpt().args(args).env("RUST_BACKTRACE", "0"))
}

/// Runs a command that must fail with one error line on stderr; returns that line.
#[track_caller]
fn fails(args: &[&str]) -> String {
    let r = wgpt(args);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(r.code.is_some_and(|c| c != 0), "wgpt {args:?} exited {:?}:\n{all}", r.code);
    assert!(!all.contains("panicked") && !all.contains("RUST_BACKTRACE"), "wgpt {args:?} panicked:\n{all}");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "wgpt {args:?}: stderr must be one line:\n{}", r.stderr);
    assert!(lines[0].starts_with("wgpt: error: "), "wgpt {args:?}: {}", lines[0]);
    // Shown with --nocapture: the messages the README's table quotes.
    eprintln!("{args:?}\n    {}", lines[0]);
    lines[0].to_string()
}

/// Asserts that `line` holds every one of `parts`.
#[track_caller]
fn says(line: &str, parts: &[&str]) {
    for p in parts {
        assert!(line.contains(p), "expected {p:?} in: {line}");
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every file under `dir` and its bytes: a failed command must leave it equal.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// No temporary file or folder (`*.tmp`) anywhere under `dir`.
#[track_caller]
fn no_temp_files(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            assert!(!p.to_string_lossy().ends_with(".tmp"), "left behind: {}", p.display());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
}

/// The first `n` bytes of the shared corpus as a text file in `dir`.
fn text(dir: &Path, n: usize) -> PathBuf {
    let t = std::fs::read_to_string(shared("data/tinyshakespeare.txt")).unwrap();
    let p = dir.join("text.txt");
    std::fs::write(&p, &t[..n]).unwrap();
    p
}

#[test]
fn corpus_mistakes_name_the_file_and_make_no_run_directory() {
    let dir = scratch("corpus");
    let out = dir.join("run");
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let blank = dir.join("blank.txt");
    std::fs::write(&blank, "\n  \n").unwrap();
    // A PNG: its signature is not UTF-8.
    let png = dir.join("picture.png");
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.extend((0..4000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    std::fs::write(&png, &bytes).unwrap();
    // UTF-8 text with NUL bytes (a binary file that happens to decode).
    let nul = dir.join("nul.bin");
    std::fs::write(&nul, "abc\0\0\0def\n".repeat(50)).unwrap();
    // Text with one invalid byte in the middle.
    let latin1 = dir.join("latin1.txt");
    std::fs::write(&latin1, [&b"To be or not to be,\nthat is the question.\n"[..], b"caf\xe9\n", b"more\n"].concat())
        .unwrap();

    for tok in ["char", "bpe"] {
        let set = format!("tokenizer={tok}");
        let train = |data: &Path| fails(&["train", "--data", s(data), "--out", s(&out), "--set", &set]);
        says(&train(&empty), &["empty.txt", "the corpus is empty"]);
        says(&train(&blank), &["blank.txt", "the corpus is empty"]);
        says(&train(&png), &["picture.png", "not UTF-8 text"]);
        says(&train(&nul), &["nul.bin", "NUL bytes", "binary"]);
        says(&train(&latin1), &["latin1.txt", "not UTF-8 text"]);
        assert!(!out.exists(), "a failed start leaves no run directory");
    }
    // Shorter than one block of the tiny preset (16 tokens) in each of the train and validation parts.
    let short = dir.join("short.txt");
    std::fs::write(&short, "hello\n".repeat(20)).unwrap();
    let e = fails(&["train", "--data", s(&short), "--out", s(&out)]);
    says(&e, &["--data", "short.txt", "corpus of 120 tokens is too short", "block_size"]);
    assert!(!out.exists(), "the half-made run directory is removed");
    let e = fails(&["tokenizer", "train", "--data", s(&png), "--vocab", "300", "--out", s(&dir.join("t.json"))]);
    says(&e, &["picture.png", "not UTF-8"]);
    assert!(!dir.join("t.json").exists());
    let e = fails(&["tokenizer", "train", "--data", s(&empty), "--vocab", "100", "--out", s(&dir.join("t.json"))]);
    says(&e, &["empty.txt", "empty"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn flag_and_setting_mistakes_are_one_line() {
    // Command-line syntax (clap): one line with what was expected and where the options are.
    says(&fails(&["train", "--steps", "-1"]), &["'-1'", "--steps", "whole number >= 0", "wgpt train --help"]);
    says(&fails(&["train", "--steps", "ten"]), &["'ten'", "--steps", "whole number"]);
    says(&fails(&["train", "--keep", "0"]), &["--keep", "whole number >= 1"]);
    says(&fails(&["bench", "--steps", "0"]), &["--steps", "whole number >= 1", "wgpt bench --help"]);
    says(&fails(&["sample", "--ckpt", ".", "--temperature", "nan"]), &["--temperature", "finite number >= 0"]);
    says(&fails(&["sample", "--ckpt", ".", "--temperature", "-0.5"]), &["--temperature", "finite number >= 0"]);
    says(&fails(&["sample", "--ckpt", ".", "--top-p", "0"]), &["--top-p", "(0, 1]"]);
    says(&fails(&["sample", "--ckpt", ".", "--top-p", "1.5"]), &["--top-p", "(0, 1]"]);
    says(&fails(&["train", "--set", "top_p=0"]), &["top_p must be in (0, 1]"]);
    says(&fails(&["sample", "--ckpt", ".", "--tokens", "-3"]), &["--tokens", "whole number >= 0"]);
    says(&fails(&["train", "--precision", "f8"]), &["'f8'", "--precision", "possible values: f32, f16"]);
    says(&fails(&["train", "--stepz", "3"]), &["--stepz", "a similar argument exists: '--steps'"]);
    says(&fails(&["train", "--out"]), &["--out", "a value is required"]);
    says(&fails(&["trian"]), &["unrecognized subcommand 'trian'"]);
    // Exit status 2 for command-line syntax (clap's), 1 for everything else.
    assert_eq!(wgpt(&["train", "--steps", "-1"]).code, Some(2));
    assert_eq!(wgpt(&["train", "--set", "lr=NaN"]).code, Some(1));
    // Settings: the key, its value and what it must be.
    says(&fails(&["train", "--set", "lr=NaN"]), &["--set lr=NaN", "finite"]);
    says(&fails(&["train", "--set", "lr=inf"]), &["--set lr=inf", "finite"]);
    says(&fails(&["train", "--set", "lr=-1e-3"]), &["--set lr=-1e-3", "lr > 0"]);
    says(&fails(&["train", "--set", "grad_clip=-inf"]), &["grad_clip", "finite"]);
    says(&fails(&["train", "--set", "batch_size=0"]), &["--set batch_size=0", "must be positive"]);
    says(&fails(&["train", "--set", "n_head=two"]), &["--set n_head=two", "expected a positive integer"]);
    says(&fails(&["train", "--set", "lr"]), &["--set lr", "expected KEY=VALUE"]);
    says(&fails(&["train", "--set", "n_head=3"]), &["n_embd 32 is not divisible by n_head 3"]);
    says(&fails(&["bench", "--set", "n_embd=1024", "--set", "n_head=2"]), &["head size 512", "limit of 128"]);
    says(&fails(&["train", "--set", "tokenizer=word"]), &["tokenizer=word", "char or bpe"]);
    says(&fails(&["train", "--set", "tokenizer=bpe", "--set", "vocab_size=0"]), &["vocab_size 0", "256 byte symbols"]);
    says(&fails(&["bench", "--preset", "tiny", "--set", "block_size=-4"]), &["block_size=-4", "positive integer"]);
    says(&fails(&["sample", "--ckpt", "/no/such/run"]), &["--ckpt /no/such/run", "no such directory"]);
    // Data-parallel settings: ZeRO's 0 or 1, virtual ranks that must divide grad_accum, an
    // adapter index past the ones there are (no run directory is made).
    says(&fails(&["train", "--set", "zero=2"]), &["--set zero=2", "0 or 1"]);
    says(
        &fails(&["train", "--set", "virtual_ranks=3", "--set", "grad_accum=4"]),
        &["virtual_ranks=3", "divide grad_accum (4)"],
    );
    let gone = std::env::temp_dir().join(format!("wgpt-device-{}", std::process::id()));
    says(&fails(&["train", "--device", "9", "--out", s(&gone)]), &["--device 9", "adapter(s) of the preferred kind"]);
    assert!(!gone.exists(), "--device 9 made {}", gone.display());
    // A TOML --config: an unknown preset, an unknown key, a bad value, not TOML at all.
    let dir = scratch("flags");
    let cases = [
        ("preset.toml", "preset = \"huge\"\n", vec!["preset.toml", "unknown preset 'huge'", "shakespeare-char"]),
        ("key.toml", "learning_rate = 1e-3\n", vec!["key.toml", "learning_rate", "unknown key"]),
        ("value.toml", "lr = \"fast\"\n", vec!["value.toml", "lr=fast", "expected a number"]),
        ("nan.toml", "lr = nan\n", vec!["--config", "nan.toml: lr is NaN", "finite"]),
        ("broken.toml", "steps = [1,\n", vec!["broken.toml"]),
    ];
    for (name, body, want) in cases {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        says(&fails(&["train", "--config", s(&path)]), &want);
    }
    says(&fails(&["train", "--config", s(&dir.join("none.toml"))]), &["none.toml", "no such file"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Shards made by `wgpt tokenizer encode` from a small text; returns (shard dir, text file).
fn make_shards(dir: &Path) -> (PathBuf, PathBuf) {
    let data = text(dir, 20_000);
    let tok = dir.join("tok.json");
    let r = wgpt(&["tokenizer", "train", "--data", s(&data), "--vocab", "260", "--out", s(&tok)]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let shards = dir.join("shards");
    let r = wgpt(&["tokenizer", "encode", "--data", s(&data), "--tokenizer", s(&tok), "--out", s(&shards)]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    (shards, data)
}

#[test]
fn damaged_shards_are_refused_at_open() {
    let dir = scratch("shards");
    let (good, data) = make_shards(&dir);
    let shard = std::fs::read(good.join("0000.tok")).unwrap();
    let out = dir.join("run");
    // A copy of the shard folder with 0000.tok replaced by `bytes`.
    let variant = |name: &str, bytes: &[u8]| {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(good.join("tokenizer.json"), d.join("tokenizer.json")).unwrap();
        std::fs::write(d.join("0000.tok"), bytes).unwrap();
        d
    };
    let train = |d: &Path| {
        let e = fails(&["train", "--data", s(d), "--out", s(&out), "--steps", "1"]);
        assert!(!out.exists(), "a refused shard leaves no run directory");
        e
    };
    let put = |at: usize, v: &[u8]| {
        let mut b = shard.clone();
        b[at..at + v.len()].copy_from_slice(v);
        b
    };
    says(&train(&variant("cut", &shard[..shard.len() - 3])), &["cut/0000.tok", "truncated or corrupt"]);
    says(&train(&variant("head", &shard[..20])), &["head/0000.tok", "not a wgpt token shard"]);
    says(&train(&variant("magic", &put(0, b"XX"))), &["magic/0000.tok", "bad magic"]);
    says(&train(&variant("version", &put(8, &9u32.to_le_bytes()))), &["version/0000.tok", "shard version 9"]);
    says(&train(&variant("width", &put(12, &3u32.to_le_bytes()))), &["width/0000.tok", "token width 3"]);
    says(&train(&variant("count", &put(16, &u64::MAX.to_le_bytes()))), &["count/0000.tok", "truncated or corrupt"]);
    // A vocabulary too big for the u16 ids the header declares.
    let e = train(&variant("u16", &put(24, &70_000u64.to_le_bytes())));
    says(&e, &["u16/0000.tok", "2-byte ids cannot hold a vocabulary of 70000 tokens"]);
    // An id past the vocabulary (it would index past the embedding table on the GPU).
    let e = train(&variant("id", &put(32 + 2 * 5, &60_000u16.to_le_bytes())));
    says(&e, &["id/0000.tok", "token 5 is id 60000", "outside the vocabulary of 260"]);
    // Shards and a tokenizer of another vocabulary; shards without their tokenizer.
    let other = variant("other", &shard);
    let r =
        wgpt(&["tokenizer", "train", "--data", s(&data), "--vocab", "280", "--out", s(&other.join("tokenizer.json"))]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    says(&train(&other), &["other/0000.tok", "260-token vocabulary", "the tokenizer has 280"]);
    let lone = variant("lone", &shard);
    std::fs::remove_file(lone.join("tokenizer.json")).unwrap();
    says(&train(&lone), &["lone", "tokenizer.json"]);
    // Shards are token ids, not text.
    says(
        &fails(&["tokenizer", "train", "--data", s(&good), "--vocab", "300", "--out", s(&dir.join("x.json"))]),
        &["token shards hold no text"],
    );
    // A vocabulary over 65536 tokens is stored as u32 ids and reads back.
    let wide = dir.join("wide.tok");
    wgpt::data::shard::write(&wide, &[0, 65_536, 69_999], 70_000).unwrap();
    let sh = wgpt::data::shard::Shard::open(&wide).unwrap();
    assert_eq!((sh.len(), sh.get(1), sh.get(2)), (3, 65_536, 69_999));
    assert!(wgpt::data::shard::write(&wide, &[70_000], 70_000).unwrap_err().to_string().contains("outside"));
    no_temp_files(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `wgpt train` on `data` into `run` for `steps` steps with `--set` for each of `sets`.
fn train(data: &Path, run: &Path, steps: &str, sets: &[&str]) -> Ended {
    let mut args = vec!["train", "--data", s(data), "--out", s(run), "--steps", steps];
    for kv in sets {
        args.extend(["--set", kv]);
    }
    wgpt(&args)
}

/// A trained run of one step (the GPU's part of this file).
fn trained_run(dir: &Path) -> (PathBuf, PathBuf) {
    let data = text(dir, 30_000);
    let run = dir.join("run");
    let r = train(&data, &run, "1", &["sample_tokens=4", "eval_batches=1"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    (run, data)
}

/// The header (JSON) and body of a safetensors file.
fn split_safetensors(bytes: &[u8]) -> (serde_json::Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), bytes[8 + n..].to_vec())
}

fn join_safetensors(header: &serde_json::Value, body: &[u8]) -> Vec<u8> {
    let mut h = serde_json::to_vec(header).unwrap();
    h.resize(h.len().div_ceil(8) * 8, b' ');
    [&(h.len() as u64).to_le_bytes()[..], &h, body].concat()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn damaged_or_mismatched_checkpoints_are_refused() {
    let dir = scratch("ckpt");
    let (run, data) = trained_run(&dir);
    let model = std::fs::read(run.join("model.safetensors")).unwrap();
    let (header, body) = split_safetensors(&model);
    let wte = "transformer.wte.weight";
    // A copy of the run's checkpoint files with model.safetensors replaced by `weights`.
    let copy = |name: &str, weights: &[u8]| {
        let c = dir.join(name);
        std::fs::create_dir_all(&c).unwrap();
        for f in ["config.json", "tokenizer.json"] {
            std::fs::copy(run.join(f), c.join(f)).unwrap();
        }
        std::fs::write(c.join("model.safetensors"), weights).unwrap();
        c
    };
    let edited = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut h = header.clone();
        edit(&mut h);
        join_safetensors(&h, &body)
    };
    let random: Vec<u8> = (0..model.len() as u64).map(|i| (i.wrapping_mul(0x9E3779B97F4A7C15) >> 56) as u8).collect();
    let n = u64::from_le_bytes(model[..8].try_into().unwrap()) as usize;
    let cut_header = format!("declares a {n}-byte header");
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        ("random", random, vec!["not a valid safetensors file", "header", "bytes follow"]),
        ("empty", vec![], vec!["not a valid safetensors file", "0 bytes"]),
        ("short", model[..5].to_vec(), vec!["not a valid safetensors file", "5 bytes"]),
        ("cut_header", model[..8 + n / 2].to_vec(), vec![cut_header.as_str()]),
        ("huge_header", [&u64::MAX.to_le_bytes()[..], &model[8..]].concat(), vec!["18446744073709551615-byte header"]),
        ("not_json", [&model[..8], &vec![b'{'; n][..], &body].concat(), vec!["header is not JSON"]),
        ("cut_body", model[..model.len() - 100].to_vec(), vec!["not a valid safetensors file"]),
        ("i32", edited(&|h| h[wte]["dtype"] = "I32".into()), vec![wte, "is I32 [58, 32]", "needs F32 [58, 32]"]),
        ("f64", edited(&|h| h[wte]["dtype"] = "F64".into()), vec![wte, "is F64", "needs F32"]),
        (
            "shape",
            edited(&|h| h[wte]["shape"] = serde_json::json!([32, 58])),
            vec![wte, "[32, 58]", "needs F32 [58, 32]"],
        ),
        (
            "missing",
            edited(&|h| {
                let v = h.as_object_mut().unwrap().remove("transformer.ln_f.bias").unwrap();
                h["unknown.bias"] = v;
            }),
            vec!["transformer.ln_f.bias is missing"],
        ),
    ];
    for (name, weights, want) in &cases {
        let c = copy(name, weights);
        let before = snapshot(&c);
        let e = fails(&["sample", "--ckpt", s(&c), "--tokens", "2"]);
        says(&e, &[&format!("{name}/model.safetensors")]);
        says(&e, want);
        assert_eq!(e, fails(&["eval", "--ckpt", s(&c), "--data", s(&data)]), "eval says the same");
        assert_eq!(snapshot(&c), before, "{name}: the checkpoint was changed");
    }
    // config.json and the weights disagree on the number of blocks, either way.
    for layers in [1, 3] {
        let c = copy(&format!("layers{layers}"), &model);
        let cfg = std::fs::read_to_string(c.join("config.json")).unwrap();
        std::fs::write(c.join("config.json"), cfg.replace("\"n_layer\": 2", &format!("\"n_layer\": {layers}")))
            .unwrap();
        let e = fails(&["sample", "--ckpt", s(&c)]);
        says(&e, &["model.safetensors", "holds 2 transformer blocks", &format!("n_layer {layers}"), "disagree"]);
    }
    // A config.json that is not JSON, or lacks a key.
    let c = copy("badjson", &model);
    std::fs::write(c.join("config.json"), "{\"n_layer\": 2,").unwrap();
    says(&fails(&["sample", "--ckpt", s(&c)]), &["badjson/config.json", "not valid JSON"]);
    std::fs::write(c.join("config.json"), "{\"n_layer\": 2}").unwrap();
    says(&fails(&["sample", "--ckpt", s(&c)]), &["badjson: config.json", "\"vocab_size\""]);
    // A prompt the char-level tokenizer cannot encode.
    says(
        &fails(&["sample", "--ckpt", s(&run), "--prompt", "\u{20ac}5"]),
        &["--prompt", "'\u{20ac}'", "not in the char-level"],
    );
    // An evaluation text shorter than one block.
    std::fs::write(dir.join("short.txt"), "First Citizen").unwrap();
    let e = fails(&["eval", "--ckpt", s(&run), "--data", s(&dir.join("short.txt"))]);
    says(&e, &["short.txt", "fewer than one window of 16 + 1"]);

    // --resume: a checkpoint whose config disagrees with its weights (its checksums rewritten to
    // match, as a hand edit would), then one that fails its checksum. The run stays as it was.
    let ck = run.join("checkpoints/step-00000001");
    let cfg = std::fs::read_to_string(ck.join("config.json")).unwrap();
    let cfg = cfg.replace("\"n_layer\": 2", "\"n_layer\": 1");
    std::fs::remove_file(ck.join("config.json")).unwrap(); // a hard link to the run's config.json
    std::fs::write(ck.join("config.json"), &cfg).unwrap();
    let sums = std::fs::read_to_string(ck.join("SHA256SUMS")).unwrap();
    let sums: String = sums
        .lines()
        .map(|l| match l.split_once("  ") {
            Some((_, "config.json")) => format!("{}  config.json\n", sha256_hex(cfg.as_bytes())),
            _ => format!("{l}\n"),
        })
        .collect();
    std::fs::write(ck.join("SHA256SUMS"), sums).unwrap();
    let before = snapshot(&run);
    let e = fails(&["train", "--out", s(&run), "--resume", "--steps", "2"]);
    says(&e, &["step-00000001/model.safetensors", "n_layer 1", "disagree"]);
    assert_eq!(snapshot(&run), before, "a refused resume changes nothing");
    std::fs::write(ck.join("optimizer.safetensors"), b"not weights").unwrap();
    let before = snapshot(&run);
    let e = fails(&["train", "--out", s(&run), "--resume"]);
    says(&e, &["--resume", "no complete checkpoint", "failed its checksum"]);
    assert_eq!(snapshot(&run), before, "a refused resume changes nothing");
    no_temp_files(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A tmpfs mounted on a folder for as long as it lives (unmounted on drop, even after a failed
/// assertion).
struct Mount(PathBuf);

impl Mount {
    /// Mounts a tmpfs with `options` on `dir`; None (after saying so) where mounting is not
    /// allowed, a failure under CI.
    fn tmpfs(dir: &Path, options: &str) -> Option<Mount> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", options, "tmpfs", s(dir)]).output();
        match out {
            Ok(o) if o.status.success() => Some(Mount(dir.to_path_buf())),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                assert!(std::env::var_os("CI").is_none(), "cannot mount a tmpfs on {} under CI: {why}", dir.display());
                eprintln!("SKIPPED: cannot mount a tmpfs on {} ({why}); run as root to test this", dir.display());
                None
            }
        }
    }

    fn remount(&self, options: &str) {
        let st = Command::new("mount").args(["-o", &format!("remount,{options}"), s(&self.0)]).status().unwrap();
        assert!(st.success(), "remount {options}");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_output_directory_is_named() {
    let dir = scratch("ro");
    let data = text(&dir, 20_000);
    let Some(ro) = Mount::tmpfs(&dir.join("ro"), "ro,size=1m") else { return };
    let out = ro.0.join("run");
    let e = fails(&["train", "--data", s(&data), "--out", s(&out), "--steps", "1"]);
    says(&e, &["--out", "ro/run", "read-only file system"]);
    let tok = ro.0.join("tok.json");
    let e = fails(&["tokenizer", "train", "--data", s(&data), "--vocab", "260", "--out", s(&tok)]);
    says(&e, &["writing", "ro/tok.json", "read-only file system"]);
    // A run directory that became read-only: report cannot write its charts, resume its metrics.
    let rw = Mount::tmpfs(&dir.join("rw"), "size=4m").unwrap();
    let (run, _) = trained_run(&rw.0);
    rw.remount("ro");
    let before = snapshot(&run);
    let e = fails(&["report", s(&run)]);
    says(&e, &["writing", "loss.png", "read-only file system"]);
    let e = fails(&["train", "--out", s(&run), "--resume", "--steps", "2"]);
    says(&e, &["metrics.jsonl", "read-only file system"]);
    assert_eq!(snapshot(&run), before);
    drop(rw);
    drop(ro);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_full_disk_stops_training_with_the_last_checkpoint_intact() {
    let dir = scratch("full");
    let data = text(&dir, 30_000);
    // Room for the tokens and one checkpoint (~0.35 MB of weights and optimizer state), not two.
    let Some(full) = Mount::tmpfs(&dir.join("full"), "size=600k") else { return };
    let run = full.0.join("run");
    let r = train(&data, &run, "3", &["save_every=1", "eval_every=0", "eval_batches=1", "sample_tokens=2"]);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert!(r.code == Some(1) && lines.len() == 1, "{}{}", r.stdout, r.stderr);
    says(lines[0], &["wgpt: error: ", "checkpoints/.step-00000002.tmp/", "no space left on the device", "--resume"]);
    no_temp_files(&run);
    let all = wgpt::train::checkpoints::list(&run);
    assert_eq!(all.iter().map(|c| c.0).collect::<Vec<_>>(), [1], "the older checkpoint is kept");
    wgpt::train::checkpoints::verify(&all[0].1, &wgpt::train::trainer::CHECKPOINT_FILES).unwrap();
    assert_eq!(
        std::fs::read(run.join("model.safetensors")).unwrap(),
        std::fs::read(all[0].1.join("model.safetensors")).unwrap(),
        "the run's model.safetensors is the last complete checkpoint's"
    );
    // The disk filled to the last byte: a tokenizer.json that cannot be written leaves no
    // temporary file.
    use std::io::Write;
    let mut filler = std::fs::File::create(full.0.join("filler")).unwrap();
    while filler.write_all(&[0u8; 4096]).is_ok() {}
    drop(filler);
    let tok = full.0.join("tok.json");
    let e = fails(&["tokenizer", "train", "--data", s(&data), "--vocab", "300", "--out", s(&tok)]);
    says(&e, &["writing", "full/tok.json", "no space left on the device"]);
    assert!(!tok.exists());
    no_temp_files(&full.0);
    drop(full);
    std::fs::remove_dir_all(&dir).unwrap();
}
