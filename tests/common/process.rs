//! Processes the tests start (wgpt, mostly), watched while they run: their stdout and stderr are
//! collected as they come, so a test waits on what the process printed or wrote (a line, a file,
//! a checkpoint folder), never on a guess of how long something takes. Every wait, the wait for
//! the process to end included, has a generous deadline and fails saying what did not happen,
//! with the output so far.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any one wait may take: far beyond what the slowest step or start-up took on a loaded
/// 2-core machine, so reaching it means the awaited event is not coming.
pub const DEADLINE: Duration = Duration::from_secs(600);

/// What the process printed so far (both streams interleaved line by line, and each alone), and a
/// signal for each new line.
type Output = Arc<(Mutex<Printed>, Condvar)>;

#[derive(Default)]
struct Printed {
    all: String,
    stdout: String,
    stderr: String,
}

/// The wgpt binary of this build, as a command to add arguments to. wgpt silences the drivers'
/// Wayland probes itself (tests/terminal.rs); `XDG_RUNTIME_DIR` also quiets them under
/// `WGPT_DEBUG` and in the window tests.
pub fn wgpt() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wgpt"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

/// Runs `cmd` to its end (at most `DEADLINE`).
#[track_caller]
pub fn run(cmd: &mut Command) -> Ended {
    Watched::start(cmd).finish()
}

/// A process that ended.
pub struct Ended {
    /// The exit code; None when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Both, interleaved line by line.
    pub all: String,
}

impl Ended {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

pub struct Watched {
    child: Child,
    output: Output,
    readers: Vec<JoinHandle<()>>,
}

impl Watched {
    /// Starts `cmd` (`wgpt().args(…)`, or any program) with its stdout and stderr read as they come.
    pub fn start(cmd: &mut Command) -> Watched {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the test's command starts");
        let output: Output = Arc::default();
        let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let readers = vec![read_into(out, false, output.clone()), read_into(err, true, output.clone())];
        Watched { child, output, readers }
    }

    /// Starts the wgpt binary with `args` and the extra environment `env`.
    pub fn spawn(args: &[String], env: &[(&str, &str)]) -> Watched {
        Watched::start(wgpt().args(args).envs(env.iter().copied()))
    }

    /// Everything printed so far, stdout and stderr interleaved line by line.
    pub fn output(&self) -> String {
        lock(&self.output).all.clone()
    }

    /// Waits until `ready` (given the output so far; it may also look at files) holds: true, or
    /// false if the process ended first and `ready` did not hold on all it printed. Past
    /// `DEADLINE` the test fails, naming `what` did not happen.
    #[track_caller]
    pub fn wait_until(&mut self, what: &str, mut ready: impl FnMut(&str) -> bool) -> bool {
        let started = Instant::now();
        loop {
            if self.child.try_wait().unwrap().is_some() {
                self.drain();
                return ready(&self.output());
            }
            let printed = lock(&self.output);
            if ready(&printed.all) {
                return true;
            }
            if started.elapsed() >= DEADLINE {
                let all = printed.all.clone();
                drop(printed);
                panic!("waited {} s for {what}, which did not happen; wgpt printed:\n{all}", DEADLINE.as_secs());
            }
            // New output wakes it at once; files are looked at again every 10 ms.
            drop(self.output.1.wait_timeout(printed, Duration::from_millis(10)).unwrap_or_else(|e| e.into_inner()));
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends `signal` (as `kill` names it: -TERM, -INT) to the process, which must not have ended.
    #[track_caller]
    pub fn signal(&mut self, signal: &str) {
        // An ended process not yet waited for keeps its pid, so the signal cannot hit another.
        if let Some(st) = self.child.try_wait().unwrap() {
            panic!("wgpt ended ({st}) before {signal} was sent; it printed:\n{}", self.output());
        }
        let pid = self.child.id().to_string();
        let st = Command::new("kill").args([signal, &pid]).status().expect("kill runs");
        assert!(st.success(), "kill {signal} {pid} failed");
    }

    /// SIGKILL, as a power cut would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Waits for the process to end (at most `DEADLINE`, then the test fails): what it printed.
    #[track_caller]
    pub fn finish(mut self) -> Ended {
        let started = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if started.elapsed() > DEADLINE {
                let _ = self.child.kill();
                panic!("the process did not end within {} s; it printed:\n{}", DEADLINE.as_secs(), self.output());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.drain();
        let p = std::mem::take(&mut *lock(&self.output));
        Ended { code: status.code(), stdout: p.stdout, stderr: p.stderr, all: p.all }
    }

    /// Waits for the readers to reach the end of both pipes (the process has ended).
    fn drain(&mut self) {
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
    }
}

impl Drop for Watched {
    /// A test that failed halfway leaves no wgpt running.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The lock of `output`, also after a failed assertion elsewhere poisoned it.
fn lock(output: &Output) -> std::sync::MutexGuard<'_, Printed> {
    output.0.lock().unwrap_or_else(|e| e.into_inner())
}

fn read_into(pipe: impl std::io::Read + Send + 'static, stderr: bool, output: Output) -> JoinHandle<()> {
    use std::io::BufRead;
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(pipe);
        let mut line = Vec::new();
        while lines.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&line);
            let mut p = lock(&output);
            p.all.push_str(&text);
            if stderr { &mut p.stderr } else { &mut p.stdout }.push_str(&text);
            drop(p);
            output.1.notify_all();
            line.clear();
        }
    })
}

/// The number of training-step lines (`step N/M  loss …`) in `output`.
pub fn step_lines(output: &str) -> usize {
    output.lines().filter(|l| l.starts_with("step ") && l.contains("  loss ")).count()
}

/// Waits for `path` to exist (written by the process `p`), failing with `what` if it does not.
#[track_caller]
pub fn wait_for_file(p: &mut Watched, path: &Path, what: &str) {
    let there = p.wait_until(what, |_| path.exists());
    assert!(there, "wgpt ended before {what}:\n{}", p.output());
}
