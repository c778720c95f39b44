//! Per-dispatch GPU time for `wgpt bench --profile`: each dispatch of a compiled step in its own
//! compute pass with timestamps at the pass boundaries where the device has timestamp queries,
//! else each one submitted alone and waited on (a fenced wall clock, which adds the submit cost).

#[cfg(not(target_arch = "wasm32"))]
use {
    super::executor::{map_read, Step},
    crate::error::{Error, Result},
    std::time::Instant,
};

/// How the times were taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    Timestamps,
    WallClock,
}

impl Clock {
    pub fn name(self) -> &'static str {
        match self {
            Clock::Timestamps => "GPU timestamps",
            Clock::WallClock => "fenced wall clock",
        }
    }
}

/// Queries one set holds (wgpu's limit is 4096): two per dispatch.
#[cfg(not(target_arch = "wasm32"))]
const DISPATCHES_PER_SET: usize = 2048;

#[cfg(not(target_arch = "wasm32"))]
impl Step {
    /// Milliseconds each dispatch took, the smallest of `reps` runs of the whole list (the step
    /// runs as it does in training, in order, so every dispatch sees real data).
    pub fn time_dispatches(&self, reps: usize) -> Result<(Clock, Vec<f64>)> {
        let mut best = vec![f64::INFINITY; self.len()];
        let clock = if self.timestamp_period.is_some() { Clock::Timestamps } else { Clock::WallClock };
        for _ in 0..reps.max(1) {
            let times = match clock {
                Clock::Timestamps => self.timestamped()?,
                Clock::WallClock => self.fenced()?,
            };
            for (b, t) in best.iter_mut().zip(times) {
                *b = b.min(t);
            }
        }
        Ok((clock, best))
    }

    fn fenced(&self) -> Result<Vec<f64>> {
        self.wait()?;
        (0..self.len())
            .map(|i| {
                let t0 = Instant::now();
                self.run_range(i..i + 1);
                self.wait()?;
                Ok(t0.elapsed().as_secs_f64() * 1e3)
            })
            .collect()
    }

    fn timestamped(&self) -> Result<Vec<f64>> {
        let period = self.timestamp_period.unwrap_or(1.0) as f64;
        let mut ms = Vec::with_capacity(self.len());
        for first in (0..self.len()).step_by(DISPATCHES_PER_SET) {
            let chunk = &self.compiled[first..(first + DISPATCHES_PER_SET).min(self.len())];
            let queries = 2 * chunk.len() as u32;
            let set = self.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile"),
                ty: wgpu::QueryType::Timestamp,
                count: queries,
            });
            let bytes = queries as u64 * 8;
            let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile resolve"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut enc =
                self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("profile") });
            for (i, c) in chunk.iter().enumerate() {
                let writes = wgpu::ComputePassTimestampWrites {
                    query_set: &set,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                };
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("profile"),
                    timestamp_writes: Some(writes),
                });
                pass.set_pipeline(&c.kernel.pipeline);
                pass.set_bind_group(0, &c.bind_group, &[]);
                pass.dispatch_workgroups(c.groups[0], c.groups[1], c.groups[2]);
            }
            enc.resolve_query_set(&set, 0..queries, &resolve, 0);
            enc.copy_buffer_to_buffer(&resolve, 0, &staging, 0, bytes);
            self.queue.submit([enc.finish()]);
            pollster::block_on(map_read(&self.device, &staging))?;
            if let Some(fault) = self.fault() {
                return Err(Error::Gpu(fault));
            }
            let ticks: Vec<u64> = {
                let mapped = staging.get_mapped_range(..).map_err(|e| Error::Gpu(e.to_string()))?;
                bytemuck::pod_collect_to_vec(&mapped)
            };
            staging.unmap();
            ms.extend(ticks.chunks_exact(2).map(|t| t[1].saturating_sub(t[0]) as f64 * period / 1e6));
        }
        Ok(ms)
    }
}
