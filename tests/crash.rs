//! Crash safety of `wgpt train`, end to end: SIGKILL at random moments (a power cut) never leaves
//! a checkpoint that fails to load, and each resume continues from the newest complete one with
//! the same losses as an uninterrupted run; SIGTERM saves a checkpoint first and exits 143, and a
//! second signal during that save exits at once; a lost device and a step too big for the device
//! stop the run with its checkpoints intact, and it resumes. Every moment here is an event the
//! process shows (a line it printed, a file it wrote: `common::process`), never a length of time.

mod common;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use common::process::{run, step_lines, wait_for_file, wgpt, Watched};
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

fn spawn(args: &[String]) -> Watched {
    Watched::spawn(args, &[])
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

/// Waits for the process to end: (exited 0, exit code, all it printed).
#[track_caller]
fn finish(p: Watched) -> (bool, Option<i32>, String) {
    let ended = p.finish();
    (ended.ok(), ended.code, ended.all)
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
        let mut p = spawn(&train_args(&run, newest.is_some()));
        // Each kill lands a random number of this process's steps (0 to 29) after its start line
        // (`resuming … at step N`, or `run directory:`), a random few ms after that step's log
        // line: moments counted in the process's own output, not in time, hold on a busy machine.
        let (k, wait) = (rng.random_range(0..30), rng.random_range(0..40));
        let start = if newest.is_some() { "resuming" } else { "run directory:" };
        let reached =
            p.wait_until(&format!("{start} and {k} steps"), |out| out.contains(start) && step_lines(out) >= k);
        std::thread::sleep(Duration::from_millis(wait));
        p.kill();
        let (_, _, out) = finish(p);
        // A resume started from the newest checkpoint there was.
        if let Some(step) = newest {
            let line = out.lines().find(|l| l.contains("resuming")).unwrap_or_else(|| panic!("no resume:\n{out}"));
            assert!(line.ends_with(&format!(" at step {step}")), "{line}: expected step {step}");
            resumes += 1;
        }
        let at = if reached { format!("{wait} ms after its step {k}") } else { "after it ended".into() };
        eprintln!("trial {trial}: killed {at}; checkpoints then: {:?}", check_all(&run));
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

/// Starts a run far too long to end by itself and waits until it has logged `steps` steps. The
/// signal tests send their signals then: the run is training, with its handlers installed, and
/// every checkpoint up to step `steps - 1` is complete (each is written before the next step).
fn signal_run(run: &Path, steps: usize, env: &[(&str, &str)]) -> Watched {
    let mut p = Watched::spawn(&train_args_for("1000000", run, false), env);
    let trained = p.wait_until(&format!("{steps} training steps"), |out| step_lines(out) >= steps);
    assert!(trained, "wgpt ended before its step {steps}:\n{}", p.output());
    p
}

/// A resume of `run` to 4 steps past the checkpoint at `step`.
fn resume_from(run: &Path, step: u64) -> String {
    let (ok, _, out) = finish(spawn(&train_args_for(&(step + 4).to_string(), run, true)));
    assert!(ok && out.contains(&format!("at step {step}")), "expected a resume at step {step}:\n{out}");
    assert_eq!(losses(run).last().unwrap().0, step + 4, "{out}");
    out
}

/// The step and the half-written folder of the save that `WGPT_TEST_PAUSE_SAVE` paused.
fn paused_save(file: &Path) -> (u64, PathBuf) {
    let text = std::fs::read_to_string(file).unwrap();
    let mut lines = text.lines();
    let step = lines.next().and_then(|l| l.strip_prefix("step ")).and_then(|n| n.parse().ok());
    (step.unwrap_or_else(|| panic!("{text}")), PathBuf::from(lines.next().unwrap()))
}

/// The step of a `stopped by SIG… at step N; …` line, after checking it says how to resume.
fn stopped_step(out: &str, signal: &str) -> u64 {
    let line = out.lines().find(|l| l.contains(&format!("stopped by {signal}"))).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("--resume"), "{line}");
    line.split(" at step ").nth(1).unwrap().split(';').next().unwrap().parse().unwrap()
}

/// SIGTERM: the run finishes its step, saves it and exits 143 saying how to resume. The save is
/// held halfway (`WGPT_TEST_PAUSE_SAVE`) and let go, which shows the hook changes nothing but time.
#[test]
fn sigterm_saves_a_checkpoint_and_the_run_resumes() {
    let base = scratch("term");
    let (run, pause) = (base.join("run"), base.join("paused"));
    let mut p = signal_run(&run, 3, &[("WGPT_TEST_PAUSE_SAVE", pause.to_str().unwrap())]);
    p.signal("-TERM");
    wait_for_file(&mut p, &pause, "the save after SIGTERM to start");
    let (paused, half) = paused_save(&pause);
    std::fs::remove_file(&pause).unwrap();
    let (_, code, out) = finish(p);
    assert_eq!(code, Some(143), "{out}");
    let step = stopped_step(&out, "SIGTERM");
    assert_eq!(step, paused, "the paused save was the one SIGTERM asked for");
    assert!(!half.exists(), "{} was renamed into place", half.display());
    assert_eq!(check_all(&run), Some(step), "the checkpoint of the stopped step is the newest");
    resume_from(&run, step);
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_exits_130() {
    let base = scratch("int");
    let run = base.join("run");
    let mut p = signal_run(&run, 3, &[]);
    p.signal("-INT");
    let (_, code, out) = finish(p);
    assert_eq!(code, Some(130), "{out}");
    assert_eq!(check_all(&run), Some(stopped_step(&out, "SIGINT")));
    std::fs::remove_dir_all(&base).unwrap();
}

/// A second signal (an impatient Ctrl-C) ends the process at once, in the middle of the save the
/// first one asked for: the test holds that save halfway (`WGPT_TEST_PAUSE_SAVE`), so the second
/// signal provably lands during it. The half-written folder is never taken for a checkpoint; the
/// older ones verify and the run resumes from the newest.
#[test]
fn a_second_signal_exits_at_once_and_the_checkpoints_stay_whole() {
    let base = scratch("twice");
    let (run, pause) = (base.join("run"), base.join("paused"));
    // Step 5 logged: the checkpoint of step 4 is complete.
    let mut p = signal_run(&run, 5, &[("WGPT_TEST_PAUSE_SAVE", pause.to_str().unwrap())]);
    p.signal("-TERM");
    wait_for_file(&mut p, &pause, "the save after the first SIGTERM to start");
    let (paused, half) = paused_save(&pause);
    p.signal("-TERM");
    let (_, code, out) = finish(p);
    assert_eq!(code, Some(143), "{out}");
    assert!(!out.contains("stopped by"), "the second signal should not wait for the save: {out}");
    assert!(half.join("model.safetensors").is_file(), "the save was cut off halfway in {}", half.display());
    assert!(!half.join(checkpoints::SUMS).exists(), "{}: the manifest comes last", half.display());
    // Older than the save cut off, or of the same step when the signal came during the save every
    // save_every steps makes (that one completes; the one the signal asked for follows it).
    let newest = check_all(&run).expect("the checkpoint of step 4 or later");
    assert!((4..=paused).contains(&newest), "newest complete checkpoint {newest}, save cut off at {paused}");
    resume_from(&run, newest);
    assert!(!half.exists(), "the resumed run removed the half-written {}", half.display());
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

/// `WGPT_LOSE_DEVICE_AT` destroys the device before step 23, as a driver reset would: the run stops
/// with a clear error, writes nothing more, and resumes from step 20 to the uninterrupted losses.
#[test]
fn a_lost_device_stops_the_run_with_its_checkpoints_intact_and_it_resumes() {
    let base = scratch("lost");
    let run = base.join("run");
    let (ok, code, out) = finish(Watched::spawn(&train_args(&run, false), &[("WGPT_LOSE_DEVICE_AT", "23")]));
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
    let bench = ["bench", "--preset", "tiny", "--plan-only", "--json", "--set"];
    let text = run(wgpt().args(bench).arg(format!("batch_size={batch_size}"))).stdout;
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
    let (ok, _, out) = finish(Watched::spawn(&train_args(&run, true), &env));
    assert!(!ok, "{out}");
    let line = error_line(&out);
    assert!(line.contains("out of GPU memory") && line.contains("memory plan") && line.contains("WGPT_DEVICE_MEMORY"));
    assert!(line.contains("--recompute block") && line.contains("--set batch_size=4 --set grad_accum=2"), "{line}");
    assert_eq!(std::fs::read(run.join("checkpoints/step-00000020/SHA256SUMS")).unwrap(), before);
    assert_eq!(losses(&run).len(), 20, "the failed resume left the log alone");

    let mut args = train_args(&run, true);
    args.extend(["--set", "batch_size=4", "--set", "grad_accum=2"].map(String::from));
    let (ok, _, out) = finish(Watched::spawn(&args, &env));
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
