//! `destroy`: the node stopped and every file Spore Drive put on the host removed.

use std::time::Instant;

use super::{Failure, Run, run, stop_timeout};
use crate::host::Desired;
use crate::progress::HostProgress;
use crate::script::Stdin;
use crate::state::{HostReport, Outcome};

impl Run {
    /// Stops and removes the node on one host.
    pub async fn destroy_host(&self, desired: &Desired, progress: &HostProgress) -> HostReport {
        let started = Instant::now();
        let (result, error) = match self.remove_files(desired, progress).await {
            Ok(()) => (Outcome::Changed, None),
            Err(e) => (Outcome::Failed, Some(e.reason)),
        };
        progress.finish(match &error {
            None => "removed",
            Some(e) => e,
        });
        HostReport::new(&desired.host.name, result, started.elapsed().as_secs_f64(), error)
    }

    /// Connects to a host, stops its node and removes everything Spore Drive put there (the
    /// systemd unit too): what `destroy` and removing a host from a running cloud share.
    pub(super) async fn remove_files(
        &self,
        desired: &Desired,
        progress: &HostProgress,
    ) -> Result<(), Failure> {
        progress.phase("connecting");
        let conn = self.connect(desired, false).await?;
        progress.phase("stopping the node and removing its files");
        let result = run(
            &conn,
            "removing the node",
            &desired.destroy_script(),
            Stdin::Null,
            stop_timeout(self.options.command_timeout),
        )
        .await;
        conn.close().await;
        result.map(|_| ())
    }
}
