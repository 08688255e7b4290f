//! `destroy`: the node stopped and every file Spore Drive put on the host removed.

use std::time::Instant;

use super::{Run, run, stop_timeout};
use crate::host::Desired;
use crate::progress::HostProgress;
use crate::script::Stdin;
use crate::state::{HostReport, Outcome};

impl Run {
    /// Stops and removes the node on one host.
    pub async fn destroy_host(&self, desired: &Desired, progress: &HostProgress) -> HostReport {
        let started = Instant::now();
        let outcome = async {
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
        .await;
        let (result, error) = match outcome {
            Ok(()) => (Outcome::Changed, None),
            Err(e) => (Outcome::Failed, Some(e.reason)),
        };
        progress.finish(match &error {
            None => "removed",
            Some(e) => e,
        });
        HostReport::new(&desired.host.name, result, started.elapsed().as_secs_f64(), error)
    }
}
