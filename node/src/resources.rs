//! The host's resources (CPU, memory, load, the data disk), sampled in the background.
//!
//! Sampling reads `/proc` and calls `statvfs`, which is too slow for a request path, so one task
//! samples every few seconds and publishes the latest figures on a `watch` channel that the admin
//! protocol (and later seer's heartbeats) read without waiting.

use std::path::PathBuf;
use std::time::Duration;

use sysinfo::System;
use tau_proto::admin::Resources;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the resources are sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);

/// The bytes free (for an unprivileged writer) on the disk that holds `path`; `None` when
/// `statvfs` fails. A system call: called now and then, not per request.
pub fn free_bytes(path: &std::path::Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    Some(stat.blocks_available() as u64 * stat.fragment_size() as u64)
}

/// Starts sampling; the receiver always holds the latest sample.
pub fn spawn(data_dir: PathBuf, shutdown: CancellationToken) -> watch::Receiver<Resources> {
    let mut system = System::new();
    let first = sample(&mut system, &data_dir);
    let (sender, receiver) = watch::channel(first);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let dir = data_dir.clone();
            let result = tokio::task::spawn_blocking(move || {
                let resources = sample(&mut system, &dir);
                (system, resources)
            })
            .await;
            match result {
                Ok((back, resources)) => {
                    system = back;
                    sender.send_replace(resources);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "resource sampling failed");
                    break;
                }
            }
        }
    });
    receiver
}

/// One sample. CPU use is measured since the previous sample of the same `system`.
pub fn sample(system: &mut System, data_dir: &std::path::Path) -> Resources {
    system.refresh_cpu_usage();
    system.refresh_memory();
    let load = System::load_average();
    let (disk_total, disk_available) = match nix::sys::statvfs::statvfs(data_dir) {
        Ok(stat) => {
            let block = stat.fragment_size();
            (stat.blocks() * block, stat.blocks_available() * block)
        }
        Err(_) => (0, 0),
    };
    Resources {
        cpus: u32::try_from(system.cpus().len()).unwrap_or(u32::MAX),
        cpu_percent: system.global_cpu_usage(),
        load: [load.one, load.five, load.fifteen],
        memory_total: system.total_memory(),
        memory_used: system.used_memory(),
        disk_total,
        disk_available,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_real_figures() {
        let mut system = System::new();
        let resources = sample(&mut system, std::path::Path::new("/"));
        assert!(resources.cpus >= 1);
        assert!(resources.memory_total > 0 && resources.memory_used <= resources.memory_total);
        assert!(resources.disk_total > 0 && resources.disk_available <= resources.disk_total);
    }
}
