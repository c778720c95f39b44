//! `mpirun -np N wgpt train` (cargo feature `mpi`; `make test-mpi` runs these with Open MPI on
//! loopback): N ranks write the model one rank writes with grad_accum × N, byte for byte (with
//! virtual_ranks N where each rank accumulates), ZeRO-1 changes no bit, a run resumes at another
//! rank count, and a build without the feature says how to get one.

mod common;
use std::path::{Path, PathBuf};
#[cfg(feature = "mpi")]
use std::process::Command;

use common::process::{run, wgpt};
#[cfg(not(feature = "mpi"))]
use common::*;

fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgpt-mpi-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A tiny run's arguments: `steps` steps, no evaluation until the last, the default corpus.
fn train_args(out: &Path, steps: u64, more: &[&str]) -> Vec<String> {
    let mut a: Vec<String> =
        ["train", "--preset", "tiny", "--set", "eval_every=0", "--set", "sample_tokens=8"].map(String::from).to_vec();
    a.extend(["--steps".into(), steps.to_string(), "--out".into(), out.display().to_string()]);
    a.extend(more.iter().map(|s| s.to_string()));
    a
}

#[cfg(feature = "mpi")]
fn mpirun(np: usize, args: &[String]) -> common::process::Ended {
    run(&mut mpirun_command(np, args))
}

#[cfg(feature = "mpi")]
fn mpirun_command(np: usize, args: &[String]) -> Command {
    let mut c = mpirun_options(np);
    c.arg(env!("CARGO_BIN_EXE_wgpt")).args(args);
    c
}

/// mpirun with the options of every test and `-np np`, the program not yet named.
#[cfg(feature = "mpi")]
fn mpirun_options(np: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe", "-np", &np.to_string()]);
    // Loopback only; one lavapipe thread per rank on this 2-core machine.
    c.args(["--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo"]);
    c.args(["--mca", "pml", "ob1", "-x", "LP_NUM_THREADS=1", "-x", "XDG_RUNTIME_DIR", "-x", "WGPT_COMM_TIMEOUT"]);
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c.env("WGPT_COMM_TIMEOUT", "60");
    c
}

#[cfg(feature = "mpi")]
fn have_mpirun() -> bool {
    let found = Command::new("mpirun").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found || std::env::var("CI").is_err(), "CI runs the MPI tests with mpirun installed (make test-mpi)");
    if !found {
        eprintln!("skipped: no mpirun (apt-get install openmpi-bin libopenmpi-dev)");
    }
    found
}

#[cfg(feature = "mpi")]
fn model_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("model.safetensors")).unwrap()
}

/// `mpirun -np np` training `steps` steps with `job` into one new directory and one process with
/// `alone` into another, both succeeding: (the job's directory, the process's, mpirun's output).
#[cfg(feature = "mpi")]
fn job_and_alone(
    name: &str,
    np: usize,
    steps: u64,
    job: &[&str],
    alone: &[&str],
) -> (PathBuf, PathBuf, common::process::Ended) {
    let (job_dir, one_dir) = (scratch_dir(&format!("{name}-job")), scratch_dir(&format!("{name}-one")));
    let ran = mpirun(np, &train_args(&job_dir, steps, job));
    assert!(ran.ok(), "mpirun -np {np}:\n{}", ran.all);
    let one = run(wgpt().args(train_args(&one_dir, steps, alone)));
    assert!(one.ok(), "{}", one.all);
    (job_dir, one_dir, ran)
}

#[cfg(feature = "mpi")]
#[test]
fn ranks_write_the_model_of_one_rank_accumulating() {
    if !have_mpirun() {
        return;
    }
    for np in [2, 3] {
        let (job, one, ran) = job_and_alone(&format!("plain{np}"), np, 3, &[], &["--set", &format!("grad_accum={np}")]);
        assert!(ran.stdout.contains(&format!("data-parallel: {np} ranks")), "{}", ran.stdout);
        assert!(model_bytes(&job) == model_bytes(&one), "{np} ranks and one rank with grad_accum {np} differ");
        let metrics = std::fs::read_to_string(job.join("metrics.jsonl")).unwrap();
        assert!(metrics.contains(&format!("\"ranks\":{np}")) && metrics.contains("\"comm_s\""), "{metrics}");
        for d in [job, one] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
}

// fp16 storage: 2 ranks write the model of one process with 2 virtual ranks, byte for byte; with
// zero=1 too, where each rank keeps the f32 masters of its shard only and rank 0's checkpoint
// gathers them (and the moments).
#[cfg(feature = "mpi")]
#[test]
fn f16_ranks_write_the_model_of_virtual_ranks() {
    if !have_mpirun() {
        return;
    }
    let more = ["--precision", "f16", "--set", "grad_accum=2", "--set", "virtual_ranks=2"];
    for zero in ["zero=0", "zero=1"] {
        let (job, one, ran) =
            job_and_alone(&format!("f16-{zero}"), 2, 3, &["--precision", "f16", "--set", zero], &more);
        assert!(model_bytes(&job) == model_bytes(&one), "f16, {zero}: 2 ranks and virtual_ranks 2 differ");
        assert!(optimizer_bytes(&job, 3) == optimizer_bytes(&one, 3), "f16, {zero}: optimizer states differ");
        if zero == "zero=1" {
            assert!(ran.stdout.contains("moments and f32 master weights of about 1/2"), "{}", ran.stdout);
            // Resumed as 3 ranks, each loading its new shard of the masters from the checkpoint.
            let ran = mpirun(3, &train_args(&job, 5, &["--resume"]));
            assert!(ran.ok(), "{}", ran.all);
            let alone = run(wgpt().args(train_args(
                &one,
                5,
                &["--resume", "--set", "virtual_ranks=3", "--set", "grad_accum=3"],
            )));
            assert!(alone.ok(), "{}", alone.all);
            assert!(model_bytes(&job) == model_bytes(&one), "f16, zero=1 resumed on 3 ranks: the models differ");
            assert!(optimizer_bytes(&job, 5) == optimizer_bytes(&one, 5), "... and the optimizer states");
        }
        for d in [job, one] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
}

/// The optimizer state of a run's checkpoint at `step`.
#[cfg(feature = "mpi")]
fn optimizer_bytes(dir: &Path, step: u64) -> Vec<u8> {
    std::fs::read(dir.join(format!("checkpoints/step-{step:08}/optimizer.safetensors"))).unwrap()
}

// ZeRO-1 with each rank accumulating 2 micro-batches: 2 ranks write the model and the (gathered)
// optimizer state of one process with grad_accum 4 in 2 virtual ranks; resumed as 3 ranks with
// their moments sharded anew, they still match that process resumed with 3 virtual ranks.
#[cfg(feature = "mpi")]
#[test]
fn zero_and_virtual_ranks_keep_the_bits_across_rank_counts() {
    if !have_mpirun() {
        return;
    }
    let (job_args, alone_args) =
        (["--set", "grad_accum=2", "--set", "zero=1"], ["--set", "grad_accum=4", "--set", "virtual_ranks=2"]);
    let (job, one, ran) = job_and_alone("zero", 2, 2, &job_args, &alone_args);
    assert!(ran.stdout.contains("ZeRO-1: each rank keeps the AdamW moments of about 1/2"), "{}", ran.stdout);
    assert!(model_bytes(&job) == model_bytes(&one), "2 ranks with zero=1 and virtual_ranks 2 differ in the model");
    assert!(optimizer_bytes(&job, 2) == optimizer_bytes(&one, 2), "... and in the optimizer state");
    let more = ["--resume", "--set", "grad_accum=1"];
    let ran = mpirun(3, &train_args(&job, 4, &more));
    assert!(ran.ok(), "{}", ran.all);
    assert!(ran.stdout.contains("about 1/3"), "{}", ran.stdout);
    let alone =
        run(wgpt().args(train_args(&one, 4, &["--resume", "--set", "grad_accum=3", "--set", "virtual_ranks=3"])));
    assert!(alone.ok(), "{}", alone.all);
    assert!(model_bytes(&job) == model_bytes(&one), "resumed on 3 ranks with zero=1, the models differ");
    assert!(optimizer_bytes(&job, 4) == optimizer_bytes(&one, 4), "... and the optimizer states");
    for d in [job, one] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

// A checkpoint does not depend on the rank count: a one-rank run with grad_accum 2 resumed as a
// job of 2 ranks (grad_accum 1) ends as the one-rank run resumed alone.
#[cfg(feature = "mpi")]
#[test]
fn a_run_resumes_at_another_rank_count() {
    if !have_mpirun() {
        return;
    }
    let (a, b) = (scratch_dir("resume-a"), scratch_dir("resume-b"));
    for d in [&a, &b] {
        let first = run(wgpt().args(train_args(d, 2, &["--set", "grad_accum=2"])));
        assert!(first.ok(), "{}", first.all);
    }
    let job = mpirun(2, &train_args(&a, 4, &["--resume", "--set", "grad_accum=1"]));
    assert!(job.ok(), "{}", job.all);
    let alone = run(wgpt().args(train_args(&b, 4, &["--resume"])));
    assert!(alone.ok(), "{}", alone.all);
    assert!(model_bytes(&a) == model_bytes(&b), "resumed on 2 ranks differs from resumed alone");
    for d in [a, b] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[cfg(not(feature = "mpi"))]
#[test]
fn a_build_without_mpi_says_how_to_build_one() {
    let out = scratch_dir("nompi");
    let ran =
        run(wgpt().args(train_args(&out, 1, &[])).env("OMPI_COMM_WORLD_SIZE", "2").env("OMPI_COMM_WORLD_RANK", "0"));
    assert!(!ran.ok());
    let line = error_line(&ran.all);
    assert!(line.contains("rank 0 of 2") && line.contains("--features mpi"), "{line}");
    assert!(!out.exists(), "a failed start left {}", out.display());
}

/// The pid of the wgpt process that is rank `rank` of a job writing to `out`.
#[cfg(feature = "mpi")]
fn rank_pid(out: &Path, rank: usize) -> Option<String> {
    let want_env = format!("OMPI_COMM_WORLD_RANK={rank}");
    let want_arg = out.display().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid = e.file_name().to_string_lossy().to_string();
        pid.parse::<u32>().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let environ = std::fs::read(e.path().join("environ")).ok()?;
        let has = |buf: &[u8], s: &str| buf.split(|&b| b == 0).any(|x| x == s.as_bytes());
        (has(&cmdline, &want_arg) && has(&environ, &want_env) && !has(&cmdline, "mpirun")).then_some(pid)
    })
}

// A rank stopped (SIGSTOP: alive, silent) leaves the others waiting in the exchange: after
// comm_timeout they stop with one line saying why, and mpirun ends the job.
#[cfg(feature = "mpi")]
#[test]
fn a_stopped_rank_ends_the_job_within_the_timeout() {
    if !have_mpirun() {
        return;
    }
    let out = scratch_dir("stopped");
    // The setting, over the environment's 60 s.
    let mut cmd = mpirun_command(2, &train_args(&out, 100_000, &["--set", "log_every=1", "--set", "comm_timeout=5"]));
    let mut job = common::process::Watched::start(&mut cmd);
    assert!(job.wait_until("step 3", |all| all.contains("step      3/")), "{}", job.output());
    let pid = rank_pid(&out, 1).expect("rank 1's process");
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let stopped = std::time::Instant::now();
    let ended = job.finish();
    let waited = stopped.elapsed();
    let _ = Command::new("kill").args(["-KILL", &pid]).status();
    assert!(!ended.ok(), "the job went on:\n{}", ended.all);
    assert!(waited.as_secs() < 60, "the job took {waited:?} to end after a rank stopped");
    assert!(ended.all.contains("have not joined the gradient exchange for 5 s"), "{}", ended.all);
    let _ = std::fs::remove_dir_all(out);
}

// A signal to one rank stops the whole job at the same step: the ranks agree after every step,
// and with ZeRO-1 rank 0's checkpoint holds every rank's shard of the moments, so it resumes.
#[cfg(feature = "mpi")]
#[test]
fn a_signal_to_one_rank_saves_the_job_and_it_resumes() {
    if !have_mpirun() {
        return;
    }
    let out = scratch_dir("signal");
    let args = train_args(&out, 100_000, &["--set", "log_every=1", "--set", "zero=1"]);
    let mut job = common::process::Watched::start(&mut mpirun_command(2, &args));
    assert!(job.wait_until("step 3", |all| all.contains("step      3/")), "{}", job.output());
    let pid = rank_pid(&out, 1).expect("rank 1's process");
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let ended = job.finish();
    assert!(!ended.ok(), "the job went on:\n{}", ended.all);
    // Both ranks name the same step.
    let steps: Vec<&str> = ended.all.lines().filter_map(|l| l.split("stopped by SIGINT at step ").nth(1)).collect();
    assert_eq!(steps.len(), 2, "{}", ended.all);
    let at: u64 = steps[0].split(';').next().unwrap().parse().unwrap();
    assert!(steps[1].starts_with(&format!("{at};")), "{steps:?}");
    let ck = out.join(format!("checkpoints/step-{at:08}"));
    assert!(ck.join("optimizer.safetensors").is_file(), "{}", ended.all);
    let resumed = mpirun(2, &train_args(&out, at + 2, &["--resume"]));
    assert!(resumed.ok(), "{}", resumed.all);
    assert!(out.join(format!("checkpoints/step-{:08}", at + 2)).is_dir(), "{}", resumed.all);
    let _ = std::fs::remove_dir_all(out);
}

// A rank whose device is lost stops with one line naming its rank and the step, and mpirun ends
// the job (rank 0 is not left waiting for the timeout); the last checkpoint is intact. The two
// ranks are two app contexts, so only rank 1 gets WGPT_LOSE_DEVICE_AT.
#[cfg(feature = "mpi")]
#[test]
fn a_rank_that_loses_its_device_ends_the_job_with_its_name() {
    if !have_mpirun() {
        return;
    }
    let out = scratch_dir("lost");
    let args = train_args(&out, 100_000, &["--set", "log_every=1", "--set", "save_every=2"]);
    let mut cmd = mpirun_command(1, &args);
    cmd.args([":", "-np", "1", "env", "WGPT_LOSE_DEVICE_AT=5", env!("CARGO_BIN_EXE_wgpt")]).args(&args);
    cmd.env("WGPT_COMM_TIMEOUT", "600");
    let started = std::time::Instant::now();
    let ended = run(&mut cmd);
    assert!(!ended.ok(), "the job went on:\n{}", ended.all);
    assert!(started.elapsed().as_secs() < 120, "the job took {:?} to end", started.elapsed());
    assert!(ended.all.contains("wgpt: error: rank 1 of 2: GPU device lost at step 5"), "{}", ended.all);
    let ck = out.join("checkpoints/step-00000004");
    assert!(ck.join("SHA256SUMS").is_file(), "no intact checkpoint at step 4:\n{}", ended.all);
    let _ = std::fs::remove_dir_all(out);
}

// Rank 0 decides the kernel variants and the others compile with them: here rank 1's autotune
// cache prefers `register` for every product, rank 0's the timed choices, and the job still ends
// with the model of one process using rank 0's cache (rank 1 recompiles with rank 0's choices
// instead of being refused at the start for different kernels).
#[cfg(feature = "mpi")]
#[test]
fn ranks_compile_with_rank_0s_kernel_choices() {
    if !have_mpirun() {
        return;
    }
    let (job, one, first) = (scratch_dir("kernels-job"), scratch_dir("kernels-one"), scratch_dir("kernels-first"));
    let (c0, c1) = (scratch_dir("cache0"), scratch_dir("cache1"));
    let tuned = run(wgpt().args(train_args(&first, 1, &["--set", "autotune=on"])).env("WGPT_CACHE_DIR", &c0));
    assert!(tuned.ok(), "{}", tuned.all);
    let mut cache: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c0.join("autotune.json")).unwrap()).unwrap();
    let entries = cache["entries"].as_object_mut().unwrap();
    let chosen: Vec<String> = entries.values().map(|e| e["variant"].as_str().unwrap().to_string()).collect();
    assert!(chosen.iter().any(|v| v != "register"), "rank 0's cache must differ from rank 1's: {chosen:?}");
    for e in entries.values_mut() {
        e["variant"] = "register".into();
        for (v, ms) in e["ms"].as_object_mut().unwrap() {
            *ms = if v == "register" { 0.001 } else { 1000.0 }.into();
        }
    }
    std::fs::create_dir_all(&c1).unwrap();
    std::fs::write(c1.join("autotune.json"), serde_json::to_vec(&cache).unwrap()).unwrap();
    let args = train_args(&job, 3, &["--set", "autotune=on"]);
    let exe = env!("CARGO_BIN_EXE_wgpt");
    let mut cmd = mpirun_options(1);
    cmd.args(["env", &format!("WGPT_CACHE_DIR={}", c0.display()), exe]).args(&args);
    cmd.args([":", "-np", "1", "env", &format!("WGPT_CACHE_DIR={}", c1.display()), exe]).args(&args);
    let ran = run(&mut cmd);
    assert!(ran.ok(), "{}", ran.all);
    let alone = run(wgpt()
        .args(train_args(&one, 3, &["--set", "autotune=on", "--set", "grad_accum=2"]))
        .env("WGPT_CACHE_DIR", &c0));
    assert!(alone.ok(), "{}", alone.all);
    assert!(model_bytes(&job) == model_bytes(&one), "the job differs from one process with rank 0's kernels");
    for d in [job, one, first, c0, c1] {
        let _ = std::fs::remove_dir_all(d);
    }
}
