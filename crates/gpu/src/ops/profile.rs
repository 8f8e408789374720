//! GPU time by dispatch site (`TILLER_GPU_PROFILE=1`, native): timestamp queries around every
//! compute pass, resolved at each submission and summed by the code that dispatched.

use std::collections::HashMap;
use std::panic::Location;

/// Most compute passes one submission times (two timestamps each, at most 4096 queries in a
/// set): a profiling run submits when it is full.
pub(crate) const PROF_PASSES: u32 = 2048;

/// Timestamps around every compute pass (each dispatch is one), resolved and read back at
/// each submission (blocking: a profiling run only), summed by the code that dispatched.
pub(crate) struct Prof {
    pub(crate) set: wgpu::QuerySet,
    pub(crate) resolve: wgpu::Buffer,
    pub(crate) read: wgpu::Buffer,
    /// Nanoseconds per timestamp tick.
    period: f64,
    /// The dispatch site of each pass timed in the commands being recorded.
    pub(crate) pending: Vec<&'static Location<'static>>,
    /// Per site: passes and nanoseconds since the last [`crate::Gpu::take_profile`].
    totals: HashMap<String, (u64, f64)>,
}

impl Prof {
    pub(crate) fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Self {
        let n = 2 * PROF_PASSES;
        let set = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile"),
            ty: wgpu::QueryType::Timestamp,
            count: n,
        });
        let buf = |usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile"),
                size: n as u64 * 8,
                usage,
                mapped_at_creation: false,
            })
        };
        Prof {
            set,
            resolve: buf(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC),
            read: buf(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
            period: queue.get_timestamp_period() as f64,
            pending: Vec::new(),
            totals: HashMap::new(),
        }
    }

    /// Add each pass's time (its two timestamps in `ticks`) to the site that dispatched it.
    pub(crate) fn add(&mut self, sites: &[&'static Location<'static>], ticks: &[u64]) {
        for (site, t) in sites.iter().zip(ticks.chunks_exact(2)) {
            let ns = t[1].saturating_sub(t[0]) as f64 * self.period;
            let k = format!("{}:{}", site.file().rsplit('/').next().unwrap_or(""), site.line());
            let e = self.totals.entry(k).or_default();
            e.0 += 1;
            e.1 += ns;
        }
    }

    /// The totals since the last call (`file:line`, passes, nanoseconds), the largest first.
    pub(crate) fn take(&mut self) -> Vec<(String, u64, f64)> {
        let mut v: Vec<_> = self.totals.drain().map(|(k, (n, ns))| (k, n, ns)).collect();
        v.sort_by(|a, b| b.2.total_cmp(&a.2));
        v
    }
}
