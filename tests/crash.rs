//! Crash safety of `wgpt train`, end to end: SIGKILL at random moments (a power cut) never leaves
//! a checkpoint that fails to load, and each resume continues from the newest complete one with
//! the same losses as an uninterrupted run; SIGTERM saves a checkpoint first and exits 143; a lost
//! device and a step too big for the device stop the run with its checkpoints intact, and it resumes.

mod common;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{error_line, scratch};
use rand::{Rng, SeedableRng};
use wgpt::train::checkpoint::{load_json, load_model, model_from_config};
use wgpt::train::checkpoints;
use wgpt::train::trainer::CHECKPOINT_FILES;

const STEPS: &str = "60";

/// Settings of every run here: a checkpoint every 4 steps, every step logged, no evaluation
/// before the last step (the preset's batches otherwise).
fn train_args(out: &Path, resume: bool) -> Vec<String> {
    train_args_for(STEPS, out, resume)
}

fn train_args_for(steps: &str, out: &Path, resume: bool) -> Vec<String> {
    let mut a: Vec<String> = ["train", "--steps", steps, "--keep", "2"].map(String::from).into();
    for kv in ["save_every=4", "log_every=1", "eval_every=0", "eval_batches=2", "sample_tokens=8"] {
        a.extend(["--set".to_string(), kv.to_string()]);
    }
    a.extend(["--out".to_string(), out.display().to_string()]);
    if resume {
        a.push("--resume".into());
    }
    a
}

/// The losses of an uninterrupted run, which every test compares with.
fn reference() -> &'static Vec<(u64, u32)> {
    static REFERENCE: OnceLock<Vec<(u64, u32)>> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let dir = scratch("reference");
        let (ok, _, out) = finish(spawn(&train_args(&dir.join("run"), false)));
        assert!(ok, "{out}");
        let l = losses(&dir.join("run"));
        std::fs::remove_dir_all(&dir).unwrap();
        l
    })
}

fn spawn(args: &[String]) -> Child {
    spawn_with(args, &[])
}

fn spawn_with(args: &[String], env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(args)
        .envs(env.iter().copied())
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

fn finish(child: Child) -> (bool, Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), out.status.code(), text)
}

#[test]
fn sigkill_at_random_moments_then_resume_matches_an_uninterrupted_run() {
    let base = scratch("kill");
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
        // Each kill lands a random number of steps (0 to 29) past where the run resumed, a random
        // few ms into that step: moments measured in steps, not time, hold on a busy machine.
        let at = losses_so_far(&run) + rng.random_range(0..30);
        let deadline = Instant::now() + Duration::from_secs(300);
        while losses_so_far(&run) < at && child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "no progress within 300 s");
            std::thread::sleep(Duration::from_millis(2));
        }
        let wait = rng.random_range(0..40);
        std::thread::sleep(Duration::from_millis(wait));
        let _ = child.kill();
        let (_, _, out) = finish(child);
        // A resume that got going started from the newest checkpoint there was.
        if let (Some(step), Some(line)) = (newest, out.lines().find(|l| l.contains("resuming"))) {
            assert!(line.ends_with(&format!(" at step {step}")), "{line}: expected step {step}");
            resumes += 1;
        }
        eprintln!("trial {trial}: killed {wait} ms after step {at}; checkpoints then: {:?}", check_all(&run));
    }
    assert!(resumes >= 2, "only {resumes} of the kills came after a checkpoint; the test proves little");
    let (ok, _, out) = finish(spawn(&train_args(&run, checkpoints::list(&run).last().is_some())));
    assert!(ok, "{out}");
    check_all(&run);
    assert_eq!(checkpoints::list(&run).len(), 2, "--keep 2");
    let (a, b) = (reference(), losses(&run));
    assert_eq!(a.len(), STEPS.parse::<usize>().unwrap());
    assert_eq!(a, &b, "the resumed run's losses differ from the uninterrupted run's");
    std::fs::remove_dir_all(&base).unwrap();
}

/// Starts a run and sends it `signals` once it has logged a few steps; returns its exit code and output.
fn signal_run(run: &Path, signals: &[&str]) -> (Option<i32>, String) {
    let child = spawn(&train_args(run, false));
    let deadline = Instant::now() + Duration::from_secs(300);
    while losses_so_far(run) < 3 {
        assert!(Instant::now() < deadline, "no training steps within 300 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    for sig in signals {
        assert!(Command::new("kill").args([*sig, &child.id().to_string()]).status().unwrap().success());
    }
    let (_, code, out) = finish(child);
    (code, out)
}

/// The step of a `stopped by SIG… at step N; …` line, after checking it says how to resume.
fn stopped_step(out: &str, signal: &str) -> u64 {
    let line = out.lines().find(|l| l.contains(&format!("stopped by {signal}"))).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("--resume"), "{line}");
    line.split(" at step ").nth(1).unwrap().split(';').next().unwrap().parse().unwrap()
}

#[test]
fn sigterm_saves_a_checkpoint_and_the_run_resumes() {
    let base = scratch("term");
    let run = base.join("run");
    let (code, out) = signal_run(&run, &["-TERM"]);
    assert_eq!(code, Some(143), "{out}");
    let step = stopped_step(&out, "SIGTERM");
    assert_eq!(check_all(&run), Some(step), "the checkpoint of the stopped step is the newest");
    let (ok, _, out) = finish(spawn(&train_args(&run, true)));
    assert!(ok && out.contains(&format!("at step {step}")), "{out}");
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_exits_130() {
    let base = scratch("int");
    let run = base.join("run");
    let (code, out) = signal_run(&run, &["-INT"]);
    assert_eq!(code, Some(130), "{out}");
    assert_eq!(check_all(&run), Some(stopped_step(&out, "SIGINT")));
    std::fs::remove_dir_all(&base).unwrap();
}

/// A second signal (an impatient Ctrl-C) ends the process at once, before any checkpoint of the
/// first is written; whatever is on disk still verifies and resumes.
#[test]
fn a_second_signal_exits_at_once_and_the_checkpoints_stay_whole() {
    let base = scratch("twice");
    let run = base.join("run");
    let (code, out) = signal_run(&run, &["-TERM", "-TERM"]);
    assert_eq!(code, Some(143), "{out}");
    assert!(!out.contains("stopped by"), "the second signal should not wait for a save: {out}");
    if check_all(&run).is_some() {
        let (ok, _, out) = finish(spawn(&train_args(&run, true)));
        assert!(ok, "{out}");
    }
    std::fs::remove_dir_all(&base).unwrap();
}

/// Runs saved before checkpoint folders existed kept their checkpoint in the run directory itself.
#[test]
fn a_run_in_the_old_layout_resumes() {
    let base = scratch("legacy");
    let run = base.join("run");
    let (ok, _, out) = finish(spawn(&train_args_for("8", &run, false)));
    assert!(ok, "{out}");
    let (step, ck) = checkpoints::list(&run).pop().unwrap();
    for f in CHECKPOINT_FILES {
        let _ = std::fs::remove_file(run.join(f));
        std::fs::rename(ck.join(f), run.join(f)).unwrap();
    }
    std::fs::remove_dir_all(run.join("checkpoints")).unwrap();
    let (ok, _, out) = finish(spawn(&train_args_for("12", &run, true)));
    assert!(ok && out.contains(&format!("at step {step}")), "{out}");
    assert_eq!(losses(&run).last().unwrap().0, 12);
    std::fs::remove_dir_all(&base).unwrap();
}

fn losses_so_far(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .map_or(0, |t| t.lines().filter(|l| l.contains("\"loss\"")).count())
}

/// `WGPT_LOSE_DEVICE_AT` destroys the device before step 23, as a driver reset would: the run stops
/// with a clear error, writes nothing more, and resumes from step 20 to the uninterrupted losses.
#[test]
fn a_lost_device_stops_the_run_with_its_checkpoints_intact_and_it_resumes() {
    let base = scratch("lost");
    let run = base.join("run");
    let (ok, code, out) = finish(spawn_with(&train_args(&run, false), &[("WGPT_LOSE_DEVICE_AT", "23")]));
    assert!(!ok && code == Some(1), "{out}");
    let line = error_line(&out);
    assert!(line.contains("GPU device lost at step 23"), "{line}");
    assert!(line.contains("step-00000020, is intact") && line.contains("--resume"), "{line}");
    assert_eq!(check_all(&run), Some(20), "nothing was saved after the device was lost");
    assert_eq!(entries(&run.join("checkpoints")), ["step-00000016", "step-00000020"], "no temporary folder left");

    let (ok, _, out) = finish(spawn(&train_args(&run, true)));
    assert!(ok && out.contains("at step 20"), "{out}");
    assert_eq!(reference(), &losses(&run), "the resumed run's losses differ from the uninterrupted run's");
    std::fs::remove_dir_all(&base).unwrap();
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// The GPU memory a tiny step plans at `batch_size` (`wgpt bench --plan-only`).
fn planned_bytes(batch_size: usize) -> u64 {
    let out = Command::new(env!("CARGO_BIN_EXE_wgpt"))
        .args(["bench", "--preset", "tiny", "--plan-only", "--json", "--set", &format!("batch_size={batch_size}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rfind(|l| l.starts_with('{')).unwrap_or_else(|| panic!("{text}"));
    serde_json::from_str::<serde_json::Value>(line).unwrap()["peak_bytes"].as_u64().unwrap()
}

/// A run resumed on a device too small for its step (`WGPT_DEVICE_MEMORY` between the plans of a
/// micro-batch of 8 and of 4) is told what to change, its checkpoints untouched; with the advice
/// taken (batch_size 4 x grad_accum 2: the same sequences per step) it resumes and follows the
/// uninterrupted run's losses up to float summation order.
#[test]
fn a_step_too_big_for_the_device_says_what_to_change_and_resumes_with_it() {
    let base = scratch("oom");
    let run = base.join("run");
    let (ok, _, out) = finish(spawn(&train_args_for("20", &run, false)));
    assert!(ok, "{out}");
    let before = std::fs::read(run.join("checkpoints/step-00000020/SHA256SUMS")).unwrap();

    let (big, small) = (planned_bytes(8), planned_bytes(4));
    assert!(small < big, "{small} vs {big}");
    let cap = ((big + small) / 2).to_string();
    let env = [("WGPT_DEVICE_MEMORY", cap.as_str())];
    let (ok, _, out) = finish(spawn_with(&train_args(&run, true), &env));
    assert!(!ok, "{out}");
    let line = error_line(&out);
    assert!(line.contains("out of GPU memory") && line.contains("memory plan") && line.contains("WGPT_DEVICE_MEMORY"));
    assert!(line.contains("--recompute block") && line.contains("--set batch_size=4 --set grad_accum=2"), "{line}");
    assert_eq!(std::fs::read(run.join("checkpoints/step-00000020/SHA256SUMS")).unwrap(), before);
    assert_eq!(losses(&run).len(), 20, "the failed resume left the log alone");

    let mut args = train_args(&run, true);
    args.extend(["--set", "batch_size=4", "--set", "grad_accum=2"].map(String::from));
    let (ok, _, out) = finish(spawn_with(&args, &env));
    assert!(ok && out.contains("at step 20"), "{out}");
    let (a, b) = (reference(), losses(&run));
    assert_eq!(a.len(), b.len());
    let mut worst = 0f32;
    for ((sa, la), (sb, lb)) in a.iter().zip(&b) {
        let (la, lb) = (f32::from_bits(*la), f32::from_bits(*lb));
        assert_eq!(sa, sb);
        assert!((la - lb).abs() <= 1e-4 * la.abs(), "step {sa}: loss {lb} vs {la} uninterrupted");
        worst = worst.max((la - lb).abs() / la.abs());
    }
    eprintln!("largest relative loss difference after the resume with batch 4 x 2: {worst:.2e}");
    std::fs::remove_dir_all(&base).unwrap();
}
