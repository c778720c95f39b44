//! Crash safety of `wgpt train`, end to end: SIGKILL at random moments (a power cut) never leaves
//! a checkpoint that fails to load, and each resume continues from the newest complete one with
//! the same losses as an uninterrupted run; SIGTERM saves a checkpoint first and exits 143.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use wgpt::train::checkpoint::{load_json, load_model, model_from_config};
use wgpt::train::checkpoints;
use wgpt::train::trainer::CHECKPOINT_FILES;

const STEPS: &str = "60";

/// Settings of every run here: a checkpoint every 4 steps, every step logged, no evaluation
/// before the last step (the preset's batches otherwise).
fn train_args(out: &Path, resume: bool) -> Vec<String> {
    let mut a: Vec<String> = ["train", "--steps", STEPS, "--keep", "2"].map(String::from).into();
    for kv in ["save_every=4", "log_every=1", "eval_every=0", "eval_batches=2", "sample_tokens=8"] {
        a.extend(["--set".to_string(), kv.to_string()]);
    }
    a.extend(["--out".to_string(), out.display().to_string()]);
    if resume {
        a.push("--resume".into());
    }
    a
}

fn spawn(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wgpt starts")
}

/// (step, loss bits) of every logged training step.
fn losses(run: &Path) -> Vec<(u64, u32)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .filter(|v| v.get("loss").is_some())
        .map(|v| (v["step"].as_u64().unwrap(), (v["loss"].as_f64().unwrap() as f32).to_bits()))
        .collect()
}

/// Every checkpoint folder on disk verifies and its weights load; returns the newest step.
fn check_all(run: &Path) -> Option<u64> {
    let all = checkpoints::list(run);
    for (step, dir) in &all {
        checkpoints::verify(dir, &CHECKPOINT_FILES).unwrap_or_else(|e| panic!("checkpoint {step}: {e}"));
        let model = model_from_config(&load_json(&dir.join("config.json")).unwrap()).unwrap();
        load_model(&dir.join("model.safetensors"), &model).unwrap();
    }
    all.last().map(|c| c.0)
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgpt-crash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn finish(child: Child) -> (bool, Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), out.status.code(), text)
}

#[test]
fn sigkill_at_random_moments_then_resume_matches_an_uninterrupted_run() {
    let base = scratch("kill");
    let reference = base.join("reference");
    let started = Instant::now();
    let (ok, _, out) = finish(spawn(&train_args(&reference, false)));
    assert!(ok, "{out}");
    // The kills land anywhere from process start-up to past the end of a run this long.
    let span = started.elapsed().as_millis() as u64;

    let run = base.join("run");
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261130);
    let mut resumes = 0;
    for trial in 0..6 {
        let newest = check_all(&run);
        if newest.is_none() {
            // Killed before its first checkpoint: nothing to resume, start over.
            let _ = std::fs::remove_dir_all(&run);
        }
        let mut child = spawn(&train_args(&run, newest.is_some()));
        let wait = rng.random_range(span / 5..span);
        std::thread::sleep(Duration::from_millis(wait));
        let _ = child.kill();
        let (_, _, out) = finish(child);
        // A resume that got going started from the newest checkpoint there was.
        if let (Some(step), Some(line)) = (newest, out.lines().find(|l| l.contains("resuming"))) {
            assert!(line.ends_with(&format!(" at step {step}")), "{line}: expected step {step}");
            resumes += 1;
        }
        eprintln!("trial {trial}: killed after {wait} ms; checkpoints then: {:?}", check_all(&run));
    }
    assert!(resumes >= 2, "only {resumes} of the kills came after a checkpoint; the test proves little");
    let (ok, _, out) = finish(spawn(&train_args(&run, checkpoints::list(&run).last().is_some())));
    assert!(ok, "{out}");
    check_all(&run);
    assert_eq!(checkpoints::list(&run).len(), 2, "--keep 2");
    let (a, b) = (losses(&reference), losses(&run));
    assert_eq!(a.len(), STEPS.parse::<usize>().unwrap());
    assert_eq!(a, b, "the resumed run's losses differ from the uninterrupted run's");
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn sigterm_saves_a_checkpoint_and_the_run_resumes() {
    let base = scratch("term");
    let run = base.join("run");
    let child = spawn(&train_args(&run, false));
    // Wait until training is under way (a few steps logged), then ask it to stop.
    let deadline = Instant::now() + Duration::from_secs(300);
    while losses_so_far(&run) < 3 {
        assert!(Instant::now() < deadline, "no training steps within 300 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    let (_, code, out) = finish(child);
    assert_eq!(code, Some(143), "{out}");
    let line = out.lines().find(|l| l.contains("stopped by SIGTERM")).unwrap_or_else(|| panic!("{out}"));
    let step: u64 = line.split(" at step ").nth(1).unwrap().split(';').next().unwrap().parse().unwrap();
    assert!(line.contains("--resume"), "{line}");
    assert_eq!(check_all(&run), Some(step), "the checkpoint of the stopped step is the newest");
    let (ok, _, out) = finish(spawn(&train_args(&run, true)));
    assert!(ok && out.contains(&format!("at step {step}")), "{out}");
    std::fs::remove_dir_all(&base).unwrap();
}

fn losses_so_far(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .map_or(0, |t| t.lines().filter(|l| l.contains("\"loss\"")).count())
}
