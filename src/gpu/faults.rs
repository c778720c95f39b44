//! Device faults. wgpu reports a lost device and errors no error scope caught through callbacks
//! (its default handler panics); they land here so the step that met one stops with a clear error.
//! Also the optional memory cap `WGPT_DEVICE_MEMORY`, which makes a device look smaller than it is.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// The first fault a device reported, shared with the callbacks that record it.
#[derive(Clone, Default)]
pub struct Faults(Arc<Mutex<Option<String>>>);

impl Faults {
    /// Installs the handlers on `device`.
    pub fn watch(device: &wgpu::Device) -> Faults {
        let faults = Faults::default();
        let slot = faults.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| slot.record(e.to_string())));
        let slot = faults.clone();
        device.set_device_lost_callback(move |reason, message| {
            let why = match reason {
                wgpu::DeviceLostReason::Destroyed => "destroyed".to_string(),
                other => format!("{other:?}"),
            };
            slot.record(format!("the device was lost ({why}){}", if message.is_empty() { "" } else { ": " }) + &message)
        });
        faults
    }

    /// Keeps the first fault: later ones are mostly its consequences.
    fn record(&self, what: String) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(one_line(&what));
        }
    }

    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// wgpu's messages span lines (a cause chain); the CLI prints errors on one.
fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// `WGPT_DEVICE_MEMORY` (bytes, or with a K/M/G suffix): the most GPU memory a step may plan.
pub fn memory_cap() -> Result<Option<u64>> {
    size_env("WGPT_DEVICE_MEMORY")
}

/// `WGPT_MAX_BUFFER_SIZE` (as above): one buffer's limit, lowered below the adapter's (tests split
/// small models into many buffers with it).
pub fn buffer_cap() -> Result<Option<u64>> {
    size_env("WGPT_MAX_BUFFER_SIZE")
}

fn size_env(name: &str) -> Result<Option<u64>> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => parse_bytes(&v).filter(|&b| b > 0).map(Some).ok_or_else(|| {
            Error::Other(format!("{name}: '{v}' is not a size; expected bytes or a number with K, M or G (e.g. 512M)"))
        }),
        _ => Ok(None),
    }
}

/// Bytes, or a number with a K, M or G suffix (KiB, MB and the like read the same: powers of 2).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&s[..i], s[i..].trim_end_matches(['B', 'b', 'i'])),
        None => (s, ""),
    };
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return None,
    };
    let n: f64 = num.trim().parse().ok()?;
    (n.is_finite() && n >= 0.0).then_some((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("2K"), Some(2048));
        assert_eq!(parse_bytes("1.5M"), Some(3 << 19));
        assert_eq!(parse_bytes("1GiB"), Some(1 << 30));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("-1M"), None);
        assert_eq!(parse_bytes("3T"), None);
    }

    #[test]
    fn faults_keep_the_first_on_one_line() {
        let f = Faults::default();
        assert_eq!(f.get(), None);
        f.record("Validation Error\n\nCaused by:\n  buffer destroyed\n".into());
        f.record("later".into());
        assert_eq!(f.get().as_deref(), Some("Validation Error Caused by: buffer destroyed"));
    }
}
