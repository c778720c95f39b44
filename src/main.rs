//! The `wgpt` binary: parses the command line and prints errors as one line, never a backtrace.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    use clap::Parser;
    let cli = match wgpt::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match wgpt::cli::usage_error(&e, &std::env::args().skip(1).collect::<Vec<_>>()) {
            // A mistake on the command line: one line, exit status 2 (clap's).
            Some(line) => {
                eprintln!("wgpt: error: {line}");
                return std::process::ExitCode::from(2);
            }
            // --help, --version, or no subcommand: clap prints them as usual.
            None => e.exit(),
        },
    };
    // In a job under mpirun, which rank speaks (the others' lines interleave with its own).
    let who = match wgpt::dist::launch::detect() {
        Ok(Some((place, _))) => format!("rank {} of {}: ", place.rank, place.ranks),
        _ => String::new(),
    };
    match wgpt::cli::run(cli) {
        Ok(()) => {
            wgpt::dist::finalize();
            std::process::ExitCode::SUCCESS
        }
        // Stopped by SIGINT/SIGTERM after saving: the shell's convention, 128 + the signal.
        Err(e @ wgpt::Error::Interrupted { signal, .. }) => {
            eprintln!("wgpt: {who}{e}");
            std::process::ExitCode::from(128 + signal as u8)
        }
        Err(e) => {
            eprintln!("wgpt: error: {who}{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {}
