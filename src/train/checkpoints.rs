//! The run directory's checkpoints, crash-safe: each is a folder `checkpoints/step-NNNNNNNN/`
//! written under a temporary name (every file fsynced, a `SHA256SUMS` last), then renamed into
//! place, so a folder with that name is always complete. The newest is also linked into the run
//! directory (`model.safetensors`, `config.json`, `tokenizer.json`) for `transformers` and the
//! other commands; only the last `keep` folders stay. A resume takes the newest folder whose
//! checksums verify and says which ones it passed over; `ModelDir` opens a model directory or a
//! run's newest good checkpoint for `--init`, `sample` and `eval`. (`checkpoint.rs` holds the
//! file formats.)

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The folder under the run directory that holds the checkpoints.
pub const DIR: &str = "checkpoints";
/// The manifest, in `sha256sum` format (`sha256sum -c SHA256SUMS` checks a folder by hand).
pub const SUMS: &str = "SHA256SUMS";
/// The files linked into the run directory from the newest checkpoint.
pub const EXPORTED: [&str; 3] = ["model.safetensors", "config.json", "tokenizer.json"];

fn io_err(path: &Path, e: std::io::Error) -> Error {
    let reason = crate::util::io_reason(&e);
    if e.raw_os_error() == Some(28) {
        return Error::Other(format!(
            "{}: {reason}; free some space (or lower --keep) and resume with --resume",
            path.display()
        ));
    }
    Error::Other(format!("{}: {reason}", path.display()))
}

/// The folder of the checkpoint at `step`.
pub fn folder(run: &Path, step: u64) -> PathBuf {
    run.join(DIR).join(format!("step-{step:08}"))
}

/// The checkpoint folders under `run`, oldest first (complete by construction; not yet verified).
pub fn list(run: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(run.join(DIR)) else { return Vec::new() };
    let mut out: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let step = name.strip_prefix("step-")?.parse().ok()?;
            Some((step, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Writes `files` (name, bytes) as the checkpoint of `step`, links the exported ones into `run`,
/// and removes all but the newest `keep` checkpoints. Returns the checkpoint's folder.
pub fn save(run: &Path, step: u64, files: &[(&str, Vec<u8>)], keep: usize) -> Result<PathBuf> {
    let root = run.join(DIR);
    std::fs::create_dir_all(&root).map_err(|e| io_err(&root, e))?;
    let tmp = root.join(format!(".step-{step:08}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
    }
    std::fs::create_dir(&tmp).map_err(|e| io_err(&tmp, e))?;
    let written = (|| {
        let mut sums = String::new();
        for (i, (name, bytes)) in files.iter().enumerate() {
            write_synced(&tmp.join(name), bytes)?;
            sums += &format!("{}  {name}\n", hex(&Sha256::digest(bytes)));
            if i == 0 {
                super::interrupt::pause_in_save(step, &tmp);
            }
        }
        write_synced(&tmp.join(SUMS), sums.as_bytes())?;
        sync_dir(&tmp)
    })();
    if let Err(e) = written {
        // A full disk or a failed write leaves nothing behind; the older checkpoints are untouched.
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let dest = folder(run, step);
    if dest.exists() {
        // Saved again at the same step (an interrupt right after an evaluation's save): swap.
        let old = root.join(format!(".step-{step:08}.old"));
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(&dest, &old).map_err(|e| io_err(&dest, e))?;
        std::fs::rename(&tmp, &dest).map_err(|e| io_err(&dest, e))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&tmp, &dest).map_err(|e| io_err(&dest, e))?;
    }
    sync_dir(&root)?;
    export(run, &dest)?;
    prune(run, keep.max(1))?;
    Ok(dest)
}

/// Points the run directory's exported files at the checkpoint in `dir`: a hard link (or a copy
/// where links are not possible) under a temporary name, renamed over the old one.
fn export(run: &Path, dir: &Path) -> Result<()> {
    for name in EXPORTED {
        let (src, dst) = (dir.join(name), run.join(name));
        if !src.exists() {
            continue;
        }
        let tmp = run.join(format!(".{name}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        if std::fs::hard_link(&src, &tmp).is_err() {
            let bytes = std::fs::read(&src).map_err(|e| io_err(&src, e))?;
            write_synced(&tmp, &bytes)?;
        }
        std::fs::rename(&tmp, &dst).map_err(|e| io_err(&dst, e))?;
    }
    sync_dir(run)
}

/// Removes the oldest checkpoints beyond `keep`, and temporary folders a crash left.
fn prune(run: &Path, keep: usize) -> Result<()> {
    let all = list(run);
    for (_, dir) in &all[..all.len().saturating_sub(keep)] {
        std::fs::remove_dir_all(dir).map_err(|e| io_err(dir, e))?;
    }
    if let Ok(entries) = std::fs::read_dir(run.join(DIR)) {
        for e in entries.filter_map(|e| e.ok()) {
            if e.file_name().to_string_lossy().starts_with(".step-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(())
}

/// Checks every file `SHA256SUMS` lists in `dir` (and that `required` are among them).
pub fn verify(dir: &Path, required: &[&str]) -> Result<()> {
    let bad = |m: String| Error::Other(format!("{}: {m}", dir.display()));
    let sums = std::fs::read_to_string(dir.join(SUMS)).map_err(|e| bad(format!("{SUMS}: {e}")))?;
    let mut listed = Vec::new();
    for line in sums.lines() {
        let (want, name) = line.split_once("  ").ok_or_else(|| bad(format!("{SUMS}: malformed line {line:?}")))?;
        if !required.contains(&name) {
            continue;
        }
        let got = file_sha256(&dir.join(name)).map_err(|e| bad(format!("{name}: {e}")))?;
        if got != want {
            return Err(bad(format!("{name}: checksum mismatch (the file is damaged)")));
        }
        listed.push(name);
    }
    if let Some(missing) = required.iter().find(|r| !listed.contains(r)) {
        return Err(bad(format!("{SUMS} does not list {missing}")));
    }
    Ok(())
}

/// The newest checkpoint of `run` that verifies, and a line for each newer one that did not.
pub fn latest(run: &Path, required: &[&str]) -> (Option<(u64, PathBuf)>, Vec<String>) {
    let mut passed = Vec::new();
    for (step, dir) in list(run).into_iter().rev() {
        match verify(&dir, required) {
            Ok(()) => return (Some((step, dir)), passed),
            Err(e) => passed.push(format!("skipping damaged checkpoint {e}")),
        }
    }
    (None, passed)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(|e| io_err(path, e))?;
    f.write_all(bytes).map_err(|e| io_err(path, e))?;
    f.sync_all().map_err(|e| io_err(path, e))
}

/// Makes a folder's entries (new names, renames) durable.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(|e| io_err(dir, e))
}

fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A model read from a directory and checked: its architecture (from `config.json`), tokenizer and
/// weights. What `--init`, `sample --ckpt` and `eval --ckpt` open.
pub struct ModelDir {
    /// Where it was read: the directory given, or the newest checkpoint of a wgpt run.
    pub dir: PathBuf,
    pub model: crate::model::GptConfig,
    pub tokenizer: crate::data::Tokenizer,
    pub params: std::collections::HashMap<String, Vec<f32>>,
}

impl ModelDir {
    /// A directory with `config.json` (GPT2Config keys), `model.safetensors` (Hugging Face names)
    /// and a tokenizer (`Tokenizer::load_dir`), as transformers' `save_pretrained` or wgpt writes
    /// them; or a wgpt run directory, whose newest checkpoint that verifies is read (its root's copy
    /// of the model carries no checksum). `flag` names the directory in errors (`--init runs/x`).
    pub fn open(path: &Path, flag: &str) -> Result<ModelDir> {
        use super::checkpoint::{check_tokenizer, load_json, load_model, model_from_config};
        let bad = |m: String| Error::Other(format!("{flag}: {m}"));
        let dir = if path.join("checkpoints").is_dir() {
            // The model's files only: a damaged optimizer state does not spoil the weights.
            let (found, passed) = latest(path, &["model.safetensors", "config.json", "tokenizer.json"]);
            for note in passed {
                eprintln!("{flag}: {note}");
            }
            found.map(|(_, ck)| ck).ok_or_else(|| bad("a run directory without a complete checkpoint".into()))?
        } else if path.join("config.json").is_file() {
            path.to_path_buf()
        } else if path.exists() {
            return Err(bad(
                "not a model directory (config.json, model.safetensors and a tokenizer) nor a wgpt run directory"
                    .into(),
            ));
        } else {
            return Err(bad("no such directory".into()));
        };
        let model = model_from_config(&load_json(&dir.join("config.json"))?).map_err(|e| bad(e.to_string()))?;
        let tokenizer = crate::data::Tokenizer::load_dir(&dir).map_err(|e| bad(e.to_string()))?;
        check_tokenizer(&model, &tokenizer).map_err(|e| bad(e.to_string()))?;
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(bad(format!("{} is missing", weights.display())));
        }
        let params = load_model(&weights, &model)?;
        Ok(ModelDir { dir, model, tokenizer, params })
    }
}

/// A forward-only trainer holding a checkpoint's weights, for `windows` windows at a time at most,
/// and what `prepare` makes of the model and tokenizer first: a mistake in the input (a prompt or
/// text the tokenizer does not cover, a text too short) is reported before the GPU is set up.
pub fn open_forward_only<T>(
    backend: crate::gpu::context::BackendChoice,
    ckpt: &Path,
    windows: impl FnOnce(&crate::model::GptConfig, &T) -> usize,
    prepare: impl FnOnce(&crate::model::GptConfig, &crate::data::Tokenizer) -> Result<T>,
    keep_logits: bool,
) -> Result<(super::trainer::Trainer, T)> {
    let found = ModelDir::open(ckpt, &format!("--ckpt {}", ckpt.display()))?;
    let (model, tokenizer) = (found.model, found.tokenizer);
    let prepared = prepare(&model, &tokenizer)?;
    let mut cfg = super::config::RunConfig::preset("tiny")?;
    (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size) =
        (model.n_layer, model.n_head, model.n_embd, model.block_size);
    let gpu = pollster::block_on(crate::gpu::Gpu::new(backend))?;
    let windows = windows(&model, &prepared);
    Ok((
        super::trainer::Trainer::forward_only(&gpu, cfg, model, tokenizer, &found.params, windows, keep_logits)?,
        prepared,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(step: u64) -> Vec<(&'static str, Vec<u8>)> {
        vec![("model.safetensors", vec![step as u8; 100]), ("trainer_state.json", format!("{step}").into_bytes())]
    }

    #[test]
    fn saves_keep_the_newest_and_damage_is_detected() {
        let run = std::env::temp_dir().join(format!("wgpt-ckpts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&run);
        std::fs::create_dir_all(&run).unwrap();
        for step in [10, 20, 30, 40] {
            save(&run, step, &files(step), 3).unwrap();
        }
        let steps: Vec<u64> = list(&run).iter().map(|s| s.0).collect();
        assert_eq!(steps, [20, 30, 40], "keep 3");
        assert_eq!(std::fs::read(run.join("model.safetensors")).unwrap(), vec![40u8; 100], "the newest is exported");
        let req = ["model.safetensors", "trainer_state.json"];
        assert_eq!(latest(&run, &req).0.unwrap().0, 40);
        // Saving the same step again replaces it whole.
        save(&run, 40, &files(40), 3).unwrap();
        assert_eq!(latest(&run, &req).0.unwrap().0, 40);

        // A flipped byte in the newest, a missing file in the one before: the oldest is taken.
        let m = folder(&run, 40).join("model.safetensors");
        let mut b = std::fs::read(&m).unwrap();
        b[7] ^= 1;
        // The export is a hard link to the same file: write a new file, as damage on disk would.
        std::fs::remove_file(&m).unwrap();
        std::fs::write(&m, &b).unwrap();
        std::fs::remove_file(folder(&run, 30).join("trainer_state.json")).unwrap();
        let (found, passed) = latest(&run, &req);
        assert_eq!(found.unwrap().0, 20);
        assert_eq!(passed.len(), 2);
        assert!(passed[0].contains("step-00000040") && passed[0].contains("checksum mismatch"), "{}", passed[0]);
        assert!(passed[1].contains("step-00000030") && passed[1].contains("trainer_state.json"), "{}", passed[1]);
        // A manifest that omits a required file does not verify either.
        assert!(verify(&folder(&run, 20), &["optimizer.safetensors"]).is_err());
        std::fs::remove_dir_all(&run).unwrap();
    }
}
