//! The `wgpt` binary on bad input: each mistake is one `wgpt: error:` line naming the problem and
//! what to do, exit status 1, no panic or backtrace, and nothing half-written or lost.

mod common;
use std::path::Path;

use common::{scratch, shared};

fn wgpt(args: &[&str]) -> (bool, String) {
    wgpt_in(&std::env::temp_dir(), args)
}

/// Runs wgpt with `cwd` as the working directory.
fn wgpt_in(cwd: &Path, args: &[&str]) -> (bool, String) {
    let ended = common::process::run(common::process::wgpt().current_dir(cwd).args(args));
    (ended.ok(), ended.stdout + &ended.stderr)
}

/// Runs a command that must fail; returns its error line after checking its form.
fn fails(args: &[&str]) -> String {
    let (ok, text) = wgpt(args);
    assert!(!ok, "wgpt {args:?} succeeded:\n{text}");
    common::error_line(&text).to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn settings_mistakes_are_one_line_errors() {
    let e = fails(&["train", "--preset", "huge"]);
    assert!(e.contains("huge") && e.contains("shakespeare-char"), "{e}");
    let e = fails(&["train", "--set", "n_layers=4"]);
    assert!(e.contains("n_layers"), "{e}");
    let e = fails(&["train", "--set", "lr=fast"]);
    assert!(e.contains("lr") && e.contains("fast"), "{e}");
    let e = fails(&["train", "--data", "/no/such/corpus.txt"]);
    assert!(e.contains("/no/such/corpus.txt") && e.contains("no such file"), "{e}");
    let e = fails(&["train", "--resume"]);
    assert!(e.contains("--out"), "{e}");
}

#[test]
fn a_run_directory_is_never_overwritten_or_left_half_made() {
    let dir = scratch("out");
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("notes.txt"), "mine").unwrap();
    let e = fails(&["train", "--out", s(&run), "--steps", "1"]);
    assert!(e.contains("exists") && e.contains("--resume"), "{e}");
    assert_eq!(std::fs::read_to_string(run.join("notes.txt")).unwrap(), "mine");
    assert_eq!(std::fs::read_dir(&run).unwrap().count(), 1, "nothing was added");
    let e = fails(&["train", "--out", s(&run), "--resume"]);
    assert!(e.contains("no complete checkpoint"), "{e}");

    // A corpus shorter than one block fails after the run directory was made: it is removed.
    std::fs::write(dir.join("short.txt"), "hello\n").unwrap();
    let e = fails(&["train", "--data", s(&dir.join("short.txt")), "--out", s(&dir.join("new"))]);
    assert!(e.contains("too short") && e.contains("block_size"), "{e}");
    assert!(!dir.join("new").exists(), "a failed setup leaves no run directory");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn checkpoints_of_another_model_or_corrupt_ones_are_refused() {
    let dir = scratch("ckpt");
    let text = std::fs::read_to_string(shared("data/tinyshakespeare.txt")).unwrap();
    let data = dir.join("text.txt");
    std::fs::write(&data, &text[..60_000]).unwrap();
    let run = dir.join("run");
    let args = ["train", "--data", s(&data), "--out", s(&run), "--steps", "2", "--set", "sample_tokens=4"];
    let (ok, out) = wgpt(&args);
    assert!(ok, "{out}");
    let (ok, out) = wgpt(&["sample", "--ckpt", s(&run), "--tokens", "4"]);
    assert!(ok, "{out}");

    let copy = |name: &str| {
        let c = dir.join(name);
        std::fs::create_dir_all(&c).unwrap();
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            std::fs::copy(run.join(f), c.join(f)).unwrap();
        }
        c
    };
    // config.json of a wider model than the weights.
    let other = copy("other");
    let cfg = std::fs::read_to_string(other.join("config.json")).unwrap();
    std::fs::write(other.join("config.json"), cfg.replace("\"n_embd\": 32", "\"n_embd\": 64")).unwrap();
    let e = fails(&["sample", "--ckpt", s(&other)]);
    assert!(e.contains("model.safetensors") && e.contains("64"), "{e}");
    // Truncated weights.
    let cut = copy("cut");
    let bytes = std::fs::read(cut.join("model.safetensors")).unwrap();
    std::fs::write(cut.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let e = fails(&["eval", "--ckpt", s(&cut), "--data", s(&data)]);
    assert!(e.contains("model.safetensors") && e.contains("not a valid safetensors"), "{e}");
    // A tokenizer of another vocabulary.
    let tok = copy("tok");
    std::fs::copy(dir.join("text.txt"), dir.join("t2.txt")).unwrap();
    let (ok, out) = wgpt(&[
        "tokenizer",
        "train",
        "--data",
        s(&dir.join("t2.txt")),
        "--vocab",
        "300",
        "--out",
        s(&tok.join("tokenizer.json")),
    ]);
    assert!(ok, "{out}");
    let e = fails(&["sample", "--ckpt", s(&tok)]);
    assert!(e.contains("tokenizer.json") && e.contains("vocab_size"), "{e}");
    // Not a run directory at all.
    let e = fails(&["sample", "--ckpt", s(&data)]);
    assert!(e.contains("not a model directory"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Shards named by a relative path train, and the run resumes from another working directory
/// (the checkpoint records where they are).
#[test]
fn relative_shards_resume_from_anywhere() {
    let dir = scratch("rel");
    let text = std::fs::read_to_string(shared("data/tinyshakespeare.txt")).unwrap();
    std::fs::write(dir.join("text.txt"), &text[..40_000]).unwrap();
    let (ok, out) = wgpt_in(&dir, &["tokenizer", "train", "--data", "text.txt", "--vocab", "300", "--out", "tok.json"]);
    assert!(ok, "{out}");
    let (ok, out) =
        wgpt_in(&dir, &["tokenizer", "encode", "--data", "text.txt", "--tokenizer", "tok.json", "--out", "shards"]);
    assert!(ok, "{out}");
    let (ok, out) =
        wgpt_in(&dir, &["train", "--data", "shards", "--out", "run", "--steps", "2", "--set", "sample_tokens=4"]);
    assert!(ok, "{out}");
    // The text the shards were made from is another corpus than the shards themselves.
    let e = fails(&["train", "--out", s(&dir.join("run")), "--resume", "--data", s(&dir.join("text.txt"))]);
    assert!(e.contains("--data") && e.contains("not the corpus this run was made from"), "{e}");
    let (ok, out) = wgpt_in(
        &dir,
        &["train", "--data", "shards", "--out", "run", "--steps", "3", "--set", "sample_tokens=4", "--resume"],
    );
    assert!(ok && out.contains("resuming") && out.contains("3 steps in"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The command line that started a run, with --resume added, continues it: the same text moved and
/// renamed, the same preset and settings. An edited corpus, another preset or a changed model
/// setting is one line naming the flag and both values, and leaves the run as it was.
#[test]
fn the_command_that_started_a_run_resumes_it() {
    let dir = scratch("same-command");
    let text = std::fs::read_to_string(shared("data/tinyshakespeare.txt")).unwrap();
    std::fs::write(dir.join("a.txt"), &text[..40_000]).unwrap();
    let start = |data: &str, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["train", "--data", data, "--preset", "tiny", "--out", "run", "--set", "n_head=2"]
            .iter()
            .map(|x| x.to_string())
            .collect();
        a.extend(["--set".into(), "sample_tokens=4".into()]);
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let args = start("a.txt", &["--steps", "2"]);
    let (ok, out) = wgpt_in(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{out}");
    let metrics = std::fs::read(dir.join("run/metrics.jsonl")).unwrap();
    let refused = |data: &str, extra: &[&str], says: &[&str]| {
        let mut a = start(data, extra);
        a.push("--resume".into());
        let (ok, out) = wgpt_in(&dir, &a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(!ok, "resumed:\n{out}");
        let line = common::error_line(&out);
        assert!(says.iter().all(|w| line.contains(w)), "{line}");
        assert_eq!(std::fs::read(dir.join("run/metrics.jsonl")).unwrap(), metrics, "a refused resume changed the run");
    };
    std::fs::write(dir.join("edited.txt"), format!("{}x", &text[..40_000])).unwrap();
    refused("edited.txt", &["--steps", "3"], &["--data edited.txt", "not the corpus this run was made from"]);
    refused("a.txt", &["--steps", "3", "--set", "n_head=4"], &["--set n_head=4", "n_head=2", "n_head=4"]);
    let mut other = start("a.txt", &["--steps", "3", "--resume"]);
    other[4] = "shakespeare-char".into();
    let (ok, out) = wgpt_in(&dir, &other.iter().map(String::as_str).collect::<Vec<_>>());
    let line = common::error_line(&out);
    assert!(!ok && line.contains("--preset shakespeare-char") && line.contains("the run was started with"), "{out}");
    assert_eq!(std::fs::read(dir.join("run/metrics.jsonl")).unwrap(), metrics, "a refused resume changed the run");
    // The same corpus under another name in another directory, and the same settings.
    std::fs::create_dir(dir.join("moved")).unwrap();
    std::fs::rename(dir.join("a.txt"), dir.join("moved/b.txt")).unwrap();
    let mut again = start("moved/b.txt", &["--steps", "3"]);
    again.push("--resume".into());
    let (ok, out) = wgpt_in(&dir, &again.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok && out.contains("resuming") && out.contains("3 steps in"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The tensors of a model.safetensors, by name.
fn tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors().into_iter().map(|(n, v)| (n, v.data().to_vec())).collect()
}

/// `--init DIR` starts from a model's weights and tokenizer, from a wgpt run or from a directory
/// laid out as transformers saves GPT-2 (here with GPT-2's vocab.json + merges.txt instead of
/// tokenizer.json): with lr 1e-30 (0 is refused) a step changes no weight by as much as half an f32
/// ulp, so the run's checkpoint holds the model's weights bit for bit, the position table cropped
/// to the run's block_size. Settings that contradict the model are one line, and nothing is made.
#[test]
fn init_starts_from_a_model_directory() {
    let dir = scratch("init");
    let text = std::fs::read_to_string(shared("data/tinyshakespeare.txt")).unwrap();
    std::fs::write(dir.join("a.txt"), &text[..40_000]).unwrap();
    std::fs::write(dir.join("b.txt"), &text[text.len() - 40_000..]).unwrap();
    let go = |args: &[&str]| {
        let (ok, out) = wgpt_in(&dir, args);
        assert!(ok, "{out}");
        out
    };
    let bpe =
        ["--set", "tokenizer=bpe", "--set", "vocab_size=300", "--set", "block_size=32", "--set", "sample_tokens=4"];
    go(&[&["train", "--data", "a.txt", "--out", "src", "--steps", "10"][..], &bpe].concat());
    // The same model as transformers lays it out, with GPT-2's original tokenizer files.
    std::fs::create_dir(dir.join("hf")).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(dir.join("src").join(f), dir.join("hf").join(f)).unwrap();
    }
    let tok: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("src/tokenizer.json")).unwrap()).unwrap();
    std::fs::write(dir.join("hf/vocab.json"), tok["model"]["vocab"].to_string()).unwrap();
    let merges: Vec<&str> = tok["model"]["merges"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    std::fs::write(dir.join("hf/merges.txt"), format!("#version: 0.2\n{}\n", merges.join("\n"))).unwrap();
    let want = tensors(&dir.join("src/model.safetensors"));
    for from in ["src", "hf"] {
        let out = format!("ft-{from}");
        let said = go(&[
            "train", "--init", from, "--data", "b.txt", "--out", &out, "--steps", "1", "--set", "min_lr=0", "--set",
            "lr=1e-30",
        ]);
        assert!(said.contains("starting from the model in"), "{said}");
        let got = tensors(&dir.join(&out).join("model.safetensors"));
        assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
        for (name, w) in &want {
            // tiny's block_size, 16: the first 16 of the 32 positions (C = 32 floats of 4 bytes).
            let w = if name == "transformer.wpe.weight" { &w[..16 * 32 * 4] } else { &w[..] };
            assert!(got[name] == w, "{from}: {name} is not the model's");
        }
        let tok_out: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(&out).join("tokenizer.json")).unwrap()).unwrap();
        assert_eq!(tok_out["model"]["vocab"], tok["model"]["vocab"], "{from}: the run has another tokenizer");
    }
    // The command that started a run from a model, with --resume added, continues it.
    let said = go(&[
        "train", "--init", "src", "--data", "b.txt", "--out", "ft-src", "--steps", "2", "--set", "min_lr=0", "--set",
        "lr=1e-30", "--resume",
    ]);
    assert!(said.contains("resuming") && said.contains("2 steps in"), "{said}");
    for (args, says) in [
        (&["--set", "n_embd=64"][..], &["--set n_embd=64", "--init src", "n_embd=32"][..]),
        (&["--set", "block_size=64"], &["--set block_size=64", "32 positions"]),
        (&["--set", "tokenizer=char"], &["--set tokenizer=char", "bpe tokenizer"]),
    ] {
        let a = [&["train", "--init", "src", "--data", "b.txt", "--out", "no"][..], args].concat();
        let (ok, out) = wgpt_in(&dir, &a);
        assert!(!ok, "{out}");
        let line = out.lines().find(|l| l.contains("error")).unwrap_or_default();
        assert!(says.iter().all(|w| line.contains(w)), "{line}");
        assert!(!dir.join("no").exists(), "a refused --init made its --out");
    }
    let e = fails(&["train", "--init", s(&dir.join("b.txt")), "--out", s(&dir.join("no"))]);
    assert!(e.contains("--init") && e.contains("b.txt"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `wgpt bench --json`: one object per preset; `--plan-only` plans GPT-2 (124M) without running
/// it, and its parameter bytes are GPT-2's 124,439,808 parameters in f32.
#[test]
fn bench_prints_json_and_plans_gpt2_without_running_it() {
    let (ok, out) = wgpt(&["bench", "--preset", "gpt2", "--plan-only", "--json", "--set", "batch_size=4"]);
    assert!(ok, "{out}");
    let line = out.lines().find(|l| l.starts_with('{')).expect("a JSON line");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let bytes = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {line}"));
    assert_eq!(bytes("param_bytes"), 4 * 124_439_808);
    assert_eq!(bytes("grad_bytes"), bytes("param_bytes"));
    assert_eq!(bytes("optimizer_bytes"), 2 * bytes("param_bytes"));
    assert!(bytes("activation_bytes") > 0);
    assert!(bytes("peak_bytes") >= 4 * bytes("param_bytes") + bytes("activation_bytes"));
    assert!(v["step_ms"].is_null() && v["tokens_per_s"].is_null(), "{line}");
    assert_eq!((v["batch_size"].as_u64(), v["block_size"].as_u64()), (Some(4), Some(1024)));

    // The counted FLOPs (the causal half of attention, elementwise ops included) are close to
    // the model FLOPs nanoGPT's MFU uses (full attention): a product left uncounted would not be.
    let ratio = v["flops_per_step"].as_f64().unwrap() / v["model_flops_per_step"].as_f64().unwrap();
    assert!((0.85..1.05).contains(&ratio), "counted / model FLOPs = {ratio}");

    let (ok, out) = wgpt(&["bench", "--preset", "tiny", "--steps", "1", "--json"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.lines().find(|l| l.starts_with('{')).unwrap()).unwrap();
    assert!(v["step_ms"].as_f64().unwrap() > 0.0 && v["tokens_per_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["profile"].is_null(), "{v}");
}

/// `wgpt bench --profile`: every dispatch is timed once per step and counted in one row; the
/// rows' FLOPs add up to the step's, and MFU is the model FLOPs over the step time and the peak.
#[test]
fn bench_profile_accounts_for_every_dispatch() {
    let (ok, out) = wgpt(&["bench", "--preset", "tiny", "--steps", "1", "--json", "--profile", "--peak-tflops", "0.5"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.lines().find(|l| l.starts_with('{')).unwrap()).unwrap();
    let p = &v["profile"];
    let kernels = p["kernels"].as_array().unwrap_or_else(|| panic!("{v}"));
    let sum = |k: &str| kernels.iter().map(|r| r[k].as_f64().unwrap()).sum::<f64>();
    assert_eq!(sum("calls") as u64, v["dispatches"].as_u64().unwrap());
    assert_eq!(sum("flops") as u64, v["flops_per_step"].as_u64().unwrap());
    assert!(sum("ms") > 0.0 && (sum("ms") - p["kernel_ms"].as_f64().unwrap()).abs() < 1e-6, "{p}");
    // Whichever matmul variant this adapter got: its forward row with a bias.
    let matmul = kernels
        .iter()
        .find(|r| r["name"].as_str().is_some_and(|n| n.starts_with("Matmul") && n.contains("matmul_forward")))
        .unwrap_or_else(|| panic!("a forward matmul row in {p}"));
    assert!(matmul["flops"].as_u64().unwrap() > 0 && matmul["bytes"].as_u64().unwrap() > 0, "{matmul}");
    let mfu = v["model_flops_per_step"].as_f64().unwrap() / (v["step_ms"].as_f64().unwrap() * 1e-3) / 0.5e12;
    assert!((p["mfu"].as_f64().unwrap() / mfu - 1.0).abs() < 1e-9, "{p}");

    let e = fails(&["bench", "--preset", "tiny", "--profile", "--peak-tflops", "0"]);
    assert!(e.contains("--peak-tflops") && e.contains("> 0"), "{e}");
}

#[test]
fn report_on_a_missing_or_incomplete_run_is_one_line() {
    let e = fails(&["report", "/no/such/run"]);
    assert!(e.contains("/no/such/run") && e.contains("no such run directory"), "{e}");
    let dir = scratch("report");
    let e = fails(&["report", s(&dir)]);
    assert!(e.contains("metrics.jsonl is missing"), "{e}");
}

/// A matmul variant the adapter cannot run is refused with one line saying what it needs (here
/// `coop`, which lavapipe and most adapters lack, or which needs f16 storage where it exists).
#[test]
fn an_unavailable_variant_is_one_line_naming_its_needs() {
    let e = fails(&["bench", "--preset", "tiny", "--steps", "1", "--set", "matmul=coop"]);
    assert!(e.contains("matmul=coop") || e.contains("'coop'"), "{e}");
    assert!(e.contains("EXPERIMENTAL_COOPERATIVE_MATRIX") || e.contains("--precision f16"), "{e}");
    let e = fails(&["bench", "--preset", "tiny", "--steps", "1", "--set", "attention=fast"]);
    assert!(e.contains("attention") && e.contains("rows") && e.contains("tiled"), "{e}");
}
