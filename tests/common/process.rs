//! A wgpt process a test watches while it runs: its stdout and stderr are collected as they come,
//! so the test waits on what the process printed or wrote (a line, a file, a checkpoint folder),
//! never on a guess of how long something takes. Every wait has a generous deadline and fails
//! saying what did not happen, with the output so far.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any one wait may take: far beyond what the slowest step or start-up took on a loaded
/// 2-core machine, so reaching it means the awaited event is not coming.
pub const DEADLINE: Duration = Duration::from_secs(600);

/// The interleaved output so far, and a signal for each new piece.
type Output = Arc<(Mutex<String>, Condvar)>;

pub struct Watched {
    child: Child,
    output: Output,
    readers: Vec<JoinHandle<()>>,
}

impl Watched {
    /// Starts the wgpt binary with `args` and the extra environment `env`.
    pub fn spawn(args: &[String], env: &[(&str, &str)]) -> Watched {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wgpt"))
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("wgpt starts");
        let output: Output = Arc::default();
        let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let readers = vec![read_into(out, output.clone()), read_into(err, output.clone())];
        Watched { child, output, readers }
    }

    /// Everything printed so far, stdout and stderr interleaved line by line.
    pub fn output(&self) -> String {
        self.output.0.lock().unwrap().clone()
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
            let (lock, more) = &*self.output;
            let out = lock.lock().unwrap();
            if ready(&out) {
                return true;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "waited {} s for {what}, which did not happen; wgpt printed:\n{out}",
                DEADLINE.as_secs()
            );
            // New output wakes it at once; files are looked at again every 10 ms.
            drop(more.wait_timeout(out, Duration::from_millis(10)).unwrap());
        }
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

    /// Waits for the process to end: its exit code (None when a signal ended it) and all it printed.
    #[track_caller]
    pub fn finish(mut self) -> (Option<i32>, String) {
        let (lock, _) = &*self.output.clone();
        let started = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if started.elapsed() > DEADLINE {
                let _ = self.child.kill();
                panic!("wgpt did not end within {} s; it printed:\n{}", DEADLINE.as_secs(), lock.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.drain();
        (status.code(), self.output())
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

fn read_into(pipe: impl std::io::Read + Send + 'static, output: Output) -> JoinHandle<()> {
    use std::io::BufRead;
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(pipe);
        let mut line = Vec::new();
        while lines.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let (lock, more) = &*output;
            lock.lock().unwrap().push_str(&String::from_utf8_lossy(&line));
            more.notify_all();
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
