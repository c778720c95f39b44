//! Adapter choice and device creation: prefer a real GPU over a software one, honour
//! `--backend` / `WGPU_BACKEND` / `WGPU_ADAPTER_NAME`, and ask for every feature and limit wgpt can use.

use super::driver_cache::DriverCache;
use super::faults::{self, Faults};
use crate::error::{Error, Result};

/// The optional features wgpt makes use of when the adapter has them.
pub const WANTED_FEATURES: wgpu::Features = wgpu::Features::SHADER_F16
    .union(wgpu::Features::SUBGROUP)
    .union(wgpu::Features::TIMESTAMP_QUERY)
    .union(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
    .union(wgpu::Features::PIPELINE_CACHE);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// `WGPU_BACKEND` if set, else every backend compiled in.
    #[default]
    Auto,
    Vulkan,
    Metal,
    Dx12,
    Gl,
}

impl BackendChoice {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" => Self::Auto,
            "vulkan" | "vk" => Self::Vulkan,
            "metal" => Self::Metal,
            "dx12" | "d3d12" => Self::Dx12,
            "gl" | "gles" | "opengl" => Self::Gl,
            other => {
                return Err(Error::Other(format!(
                    "--backend: unknown backend '{other}'; expected one of auto, vulkan, metal, dx12, gl"
                )))
            }
        })
    }

    /// The backends to look in, in order: `Auto` (without `WGPU_BACKEND`) tries the native compute
    /// APIs first and GL only when they offer no adapter, so a machine with Vulkan never loads
    /// the GL and EGL libraries.
    pub fn tiers(self) -> Vec<wgpu::Backends> {
        match self {
            Self::Auto if wgpu::Backends::from_env().is_none() => {
                vec![wgpu::Backends::all() - wgpu::Backends::GL, wgpu::Backends::GL]
            }
            other => vec![other.backends()],
        }
    }

    pub fn backends(self) -> wgpu::Backends {
        match self {
            Self::Auto => wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()),
            Self::Vulkan => wgpu::Backends::VULKAN,
            Self::Metal => wgpu::Backends::METAL,
            Self::Dx12 => wgpu::Backends::DX12,
            Self::Gl => wgpu::Backends::GL,
        }
    }
}

/// An open device and what it allows. Cloning shares the device (wgpu's handles are shared
/// references): a trainer keeps one to compile its sampling program when it first samples.
#[derive(Clone)]
pub struct Gpu {
    pub instance: wgpu::Instance,
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub features: wgpu::Features,
    pub limits: wgpu::Limits,
    /// What the device reported lost or failed outside an error scope.
    pub faults: Faults,
    /// `WGPT_DEVICE_MEMORY`: the most memory a compiled step may plan (None: what the device allows).
    pub memory_cap: Option<u64>,
    /// `WGPT_MAX_BUFFER_SIZE`: one buffer's limit below the adapter's (None: the adapter's).
    pub buffer_cap: Option<u64>,
    /// The driver's pipeline cache kept on disk, where the backend has one (`driver_cache.rs`).
    pub driver_cache: Option<DriverCache>,
    /// Subgroups exactly 8 wide, each 8 consecutive invocations (`subgroup_lanes.rs`).
    pub consecutive_lanes_of_8: bool,
}

/// Lower is better: real GPUs first, the CPU (lavapipe, SwiftShader, WARP) last.
fn preference(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

pub fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// An instance of `backends` and the adapters it sees, probed with stderr silenced (unless
/// `WGPT_DEBUG` is set): what the drivers' display probes print is not wgpt's to show. On a
/// headless Linux machine both GL's EGL and Mesa's Vulkan device-select layer try Wayland, whose
/// client library prints "error: XDG_RUNTIME_DIR is invalid or not set in the environment."
pub async fn probe(backends: wgpu::Backends) -> (wgpu::Instance, Vec<wgpu::Adapter>) {
    #[cfg(all(unix, not(target_arch = "wasm32")))]
    if !crate::gpu::executor::debug_enabled() {
        // Native enumeration does not wait on anything, so blocking here costs nothing.
        return quietly(|| {
            let inst = instance(backends);
            let adapters = pollster::block_on(list_adapters(&inst, backends));
            (inst, adapters)
        });
    }
    let inst = instance(backends);
    let adapters = list_adapters(&inst, backends).await;
    (inst, adapters)
}

/// Runs `f` with file descriptor 2 pointed at /dev/null, then puts it back, also when `f`
/// panics. One probe at a time: two threads swapping descriptor 2 at once could leave it silenced.
#[cfg(all(unix, not(target_arch = "wasm32")))]
fn quietly<T>(f: impl FnOnce() -> T) -> T {
    static SWAP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = SWAP.lock().unwrap_or_else(|e| e.into_inner());
    struct Restore {
        saved: i32,
        null: i32,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: descriptors this guard owns; 2 gets its saved copy back.
            unsafe {
                if self.saved >= 0 {
                    libc::dup2(self.saved, 2);
                    libc::close(self.saved);
                }
                if self.null >= 0 {
                    libc::close(self.null);
                }
            }
        }
    }
    // SAFETY: plain descriptor calls, close-on-exec so a child started meanwhile inherits none.
    let _restore = unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        let saved = if null >= 0 { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) } else { -1 };
        if saved >= 0 {
            libc::dup2(null, 2);
        }
        Restore { saved, null }
    };
    f()
}

/// Every adapter the instance sees (on the web, the single one the browser offers).
pub async fn list_adapters(instance: &wgpu::Instance, backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        instance.enumerate_adapters(backends).await
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = backends;
        let opts = wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        };
        instance.request_adapter(&opts).await.into_iter().collect()
    }
}

/// Which of the equally preferred adapters a process trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterPick {
    /// A data-parallel rank's local rank on its machine (modulo their number; 0 alone).
    LocalRank(usize),
    /// `--device INDEX`: that one, or an error.
    Index(usize),
}

/// Picks the adapter: `name` (substring, case-insensitive; `WGPU_ADAPTER_NAME` for the CLI)
/// filters first, then the device-type preference decides.
pub fn choose(adapters: Vec<wgpu::Adapter>, name: Option<&str>) -> Option<wgpu::Adapter> {
    choose_nth(adapters, name, 0)
}

/// `choose`, taking the `k`-th (modulo their number) of the adapters that tie for the best: the
/// GPU of a data-parallel rank, by its local rank on the machine.
pub fn choose_nth(adapters: Vec<wgpu::Adapter>, name: Option<&str>, k: usize) -> Option<wgpu::Adapter> {
    let best = best_adapters(adapters, name);
    let n = best.len();
    best.into_iter().nth(k % n.max(1))
}

/// The adapters that tie for the best (`choose`'s preference), in the order the backend lists them.
pub fn best_adapters(mut adapters: Vec<wgpu::Adapter>, name: Option<&str>) -> Vec<wgpu::Adapter> {
    if let Some(name) = name {
        let name = name.to_lowercase();
        adapters.retain(|a| a.get_info().name.to_lowercase().contains(&name));
    }
    // Ties (lavapipe on Vulkan and on GL) go to the native compute APIs over GL.
    let key = |a: &wgpu::Adapter| {
        let i = a.get_info();
        (preference(i.device_type), i.backend == wgpu::Backend::Gl)
    };
    adapters.sort_by_key(key);
    let Some(best) = adapters.first().map(key) else { return adapters };
    adapters.into_iter().take_while(|a| key(a) == best).collect()
}

impl Gpu {
    /// Opens the preferred adapter of the chosen backends, honouring `WGPU_ADAPTER_NAME`.
    pub async fn new(choice: BackendChoice) -> Result<Gpu> {
        Self::for_local_rank(choice, 0).await
    }

    /// `new` for local rank `k` of a data-parallel job: the k-th of the equally preferred
    /// adapters (one GPU per rank on a machine with several; all share the one there is).
    pub async fn for_local_rank(choice: BackendChoice, k: usize) -> Result<Gpu> {
        Self::with_name_nth(choice, std::env::var("WGPU_ADAPTER_NAME").ok().as_deref(), k).await
    }

    /// The adapter `pick` names.
    pub async fn picked(choice: BackendChoice, pick: AdapterPick) -> Result<Gpu> {
        match pick {
            AdapterPick::LocalRank(k) => Self::for_local_rank(choice, k).await,
            AdapterPick::Index(i) => Self::by_index(choice, i).await,
        }
    }

    /// `new` for `wgpt train --device INDEX`: the INDEX-th of the equally preferred adapters (as
    /// `wgpt info` lists them), an error naming them when there are fewer.
    pub async fn by_index(choice: BackendChoice, index: usize) -> Result<Gpu> {
        let name = std::env::var("WGPU_ADAPTER_NAME").ok();
        let mut names = Vec::new();
        for backends in choice.tiers() {
            let (instance, adapters) = probe(backends).await;
            let best = best_adapters(adapters, name.as_deref());
            if best.is_empty() {
                continue;
            }
            names = best.iter().map(|a| a.get_info().name).collect();
            if let Some(adapter) = best.into_iter().nth(index) {
                return Self::open(instance, adapter).await;
            }
            break;
        }
        Err(Error::Other(format!(
            "--device {index}: this machine has {} adapter(s) of the preferred kind ({}); pass an index below that",
            names.len(),
            names.join(", ")
        )))
    }

    /// Like `new`, with the adapter-name filter given explicitly.
    pub async fn with_name(choice: BackendChoice, name: Option<&str>) -> Result<Gpu> {
        Self::with_name_nth(choice, name, 0).await
    }

    async fn with_name_nth(choice: BackendChoice, name: Option<&str>, k: usize) -> Result<Gpu> {
        let mut seen = 0;
        for backends in choice.tiers() {
            let (instance, adapters) = probe(backends).await;
            seen += adapters.len();
            if let Some(adapter) = choose_nth(adapters, name, k) {
                return Self::open(instance, adapter).await;
            }
        }
        Err(Error::NoAdapter {
            detail: match name {
                Some(name) if seen > 0 => format!(" named like '{name}' ({seen} others seen)"),
                _ => format!(" for backends {:?}", choice.backends()),
            },
        })
    }

    async fn open(instance: wgpu::Instance, adapter: wgpu::Adapter) -> Result<Gpu> {
        let info = adapter.get_info();
        let features = adapter.features() & WANTED_FEATURES;
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgpt"),
                required_features: features,
                required_limits: limits.clone(),
                // Cooperative matrices are experimental in wgpu 30; only the `coop` matmul variant,
                // used when asked, touches them.
                experimental_features: if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
                    // SAFETY: wgpu's token for experimental features; see Variant::Coop.
                    unsafe { wgpu::ExperimentalFeatures::enabled() }
                } else {
                    wgpu::ExperimentalFeatures::disabled()
                },
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::Device { adapter: info.name.clone(), reason: e.to_string() })?;
        let faults = Faults::watch(&device);
        let (memory_cap, buffer_cap) = (faults::memory_cap()?, faults::buffer_cap()?);
        let driver_cache = DriverCache::open(&device, &info, features, None);
        let sizes = (info.subgroup_min_size, info.subgroup_max_size);
        let consecutive_lanes_of_8 =
            super::subgroup_lanes::consecutive_lanes_of_8(&device, &queue, sizes, features).await;
        Ok(Gpu {
            instance,
            adapter,
            device,
            queue,
            info,
            features,
            limits,
            faults,
            memory_cap,
            buffer_cap,
            driver_cache,
            consecutive_lanes_of_8,
        })
    }

    /// Largest byte range one storage binding may cover.
    pub fn max_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size
    }

    /// Largest buffer a memory plan may make (`WGPT_MAX_BUFFER_SIZE` may lower it).
    pub fn max_buffer(&self) -> u64 {
        self.buffer_cap.map_or(self.limits.max_buffer_size, |c| c.min(self.limits.max_buffer_size))
    }

    /// Storage-binding offsets are rounded to this many bytes.
    pub fn align(&self) -> u64 {
        self.limits.min_storage_buffer_offset_alignment.max(self.limits.min_uniform_buffer_offset_alignment) as u64
    }

    pub fn describe(&self) -> String {
        format!("{} ({:?}, {:?})", self.info.name, self.info.backend, self.info.device_type)
    }
}
