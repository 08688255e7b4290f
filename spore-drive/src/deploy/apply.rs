//! `deploy` on one host: connect and read its facts, stage what differs (config and secrets in
//! one command, the binary in a second), stop the node, put everything in place and start it,
//! wait until it is healthy; roll back to the previous files when it is not.

use std::time::{Duration, Instant};

use super::recap::kinds;
use super::{Bundle, Failure, Run, fail, run, stop_timeout};
use crate::host::{self, Desired, File, Kind, Service};
use crate::progress::HostProgress;
use crate::script::Stdin;
use crate::shell::Conn;
use crate::state::{HostReport, Outcome};

/// What a deploy did on a host so far.
#[derive(Default)]
struct Work {
    /// What it changed.
    changes: Vec<Kind>,
    /// The files it put in place, once the node they make is healthy.
    activated: Vec<String>,
}

impl Run {
    /// Deploys one host.
    pub async fn deploy_host(
        &self,
        desired: &Desired,
        bundle: &Bundle,
        progress: &HostProgress,
    ) -> HostReport {
        let started = Instant::now();
        let mut changes = Vec::new();
        let mut activated = Vec::new();
        let outcome =
            self.deploy_inner(desired, bundle, progress, &mut changes, &mut activated).await;
        let seconds = started.elapsed().as_secs_f64();
        let (result, error) = match outcome {
            Ok(()) if changes.is_empty() => (Outcome::Unchanged, None),
            Ok(()) => (Outcome::Changed, None),
            Err(Failure { reason, rolled_back: true }) => (Outcome::RolledBack, Some(reason)),
            Err(Failure { reason, rolled_back: false }) => (Outcome::Failed, Some(reason)),
        };
        progress.finish(&match (&result, &error) {
            (Outcome::Unchanged, _) => "unchanged".to_string(),
            (Outcome::Changed, _) => format!("changed ({})", kinds(&changes)),
            (_, Some(e)) => format!("{}: {e}", result.word()),
            (_, None) => result.word().to_string(),
        });
        HostReport {
            changes,
            spec: Some(desired.host.clone()),
            activated,
            ..HostReport::new(&desired.host.name, result, seconds, error)
        }
    }

    /// Puts back what a deploy put in place on a host that became healthy (`activated`, from
    /// its report), when its batch failed: stops the node, restores the previous files and
    /// starts the previous node (a host that had none is left stopped, its new files removed).
    pub async fn put_back(
        &self,
        desired: &Desired,
        activated: &[String],
        progress: &HostProgress,
    ) -> Result<(), String> {
        let timeout = self.options.command_timeout;
        progress.phase("connecting");
        let conn = self.connect(desired, false).await.map_err(|e| e.to_string())?;
        let result = async {
            progress.phase("stopping the node");
            run(
                &conn,
                "stopping the node",
                &desired.stop_script(),
                Stdin::Null,
                stop_timeout(timeout),
            )
            .await?;
            progress.phase("restoring the previous files");
            run(
                &conn,
                "restoring files",
                &desired.rollback_script(activated),
                Stdin::Null,
                timeout,
            )
            .await?;
            let facts = self.facts(&conn, desired).await?;
            if !facts.exists("bin/tau-node") {
                return Ok(());
            }
            let service = if facts.systemd { Service::Systemd } else { Service::Supervised };
            progress.phase("starting the previous node");
            let started = Instant::now();
            run(
                &conn,
                "starting the previous node",
                &desired.start_script(service),
                Stdin::Null,
                timeout,
            )
            .await?;
            self.health(desired, started).await.map_err(|e| fail(e.to_string()))
        }
        .await;
        conn.close().await;
        result.map_err(|f| f.reason)
    }

    async fn deploy_inner(
        &self,
        desired: &Desired,
        bundle: &Bundle,
        progress: &HostProgress,
        changes: &mut Vec<Kind>,
        activated: &mut Vec<String>,
    ) -> Result<(), Failure> {
        let timeout = self.options.command_timeout;
        progress.phase("connecting");
        let conn = self.connect(desired, false).await?;
        let mut work = Work::default();
        let result = self.deploy_on(&conn, desired, bundle, progress, &mut work, timeout).await;
        *changes = work.changes;
        *activated = work.activated;
        conn.close().await;
        result
    }

    async fn deploy_on(
        &self,
        conn: &Conn,
        desired: &Desired,
        bundle: &Bundle,
        progress: &HostProgress,
        work: &mut Work,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let Work { changes, activated } = work;
        let name = &desired.host.name;
        progress.phase("checking facts");
        let facts = self.facts(conn, desired).await?;
        if !host::arch_matches(bundle.arch, &facts.arch) {
            return Err(fail(bundle.arch_error(&facts.arch)));
        }
        if facts.running
            && let Ok(mut up) = self.up.lock()
        {
            up.insert(name.clone());
        }
        let service = if facts.systemd { Service::Systemd } else { Service::Supervised };
        let upload = !facts.has("bin/tau-node", &bundle.sha256);
        let files: Vec<File> = desired
            .all_files(service)
            .into_iter()
            .filter(|f| !facts.has(&f.path, &f.sha256()))
            .collect();
        if !upload && files.is_empty() && facts.running {
            return Ok(());
        }
        if upload {
            changes.push(Kind::Binary);
            // Room for the new binary beside the running one, and some for the node's data.
            let needed_kb = bundle.size() / 1024 + 64 * 1024;
            if facts.free_kb < needed_kb {
                return Err(fail(format!(
                    "not enough disk space for the node: {} MiB free under {}, {} MiB needed",
                    facts.free_kb / 1024,
                    desired.base,
                    needed_kb / 1024
                )));
            }
        }
        for file in &files {
            if !changes.contains(&file.kind) {
                changes.push(file.kind);
            }
        }
        changes.sort();
        // Folders and small files in one command, the binary in a second: each command is a
        // round trip and a shell on the host.
        progress.phase(&if files.is_empty() {
            "preparing folders".to_string()
        } else {
            let mut written: Vec<Kind> = files.iter().map(|f| f.kind).collect();
            written.sort();
            written.dedup();
            format!("writing {}", kinds(&written))
        });
        run(
            conn,
            "writing config and secrets",
            &desired.stage_files_script(&files),
            Stdin::Bytes(Desired::stage_files_input(&files)),
            timeout,
        )
        .await?;
        let mut paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        if upload {
            progress.phase(&format!("uploading tau-node ({} MiB)", bundle.size() >> 20));
            let script = desired.stage_script("bin/tau-node", 0o755, &bundle.sha256);
            run(
                conn,
                "uploading tau-node",
                &script,
                Stdin::Shared(bundle.bytes.clone()),
                timeout * 10,
            )
            .await?;
            paths.push("bin/tau-node".to_string());
        }
        if facts.running {
            progress.phase("stopping the node");
            run(
                conn,
                "stopping the node",
                &desired.stop_script(),
                Stdin::Null,
                stop_timeout(timeout),
            )
            .await?;
        }
        progress.phase("starting the node");
        // Not before the new hosts are admitted: they would start as clients.
        self.wait_may_start().await;
        let start = desired.start_script(service);
        let started = Instant::now();
        // Files in place, then the node started: one command (set -e stops at the first error).
        let activate_and_start = format!("{}{start}", desired.activate_script(&paths));
        let health = match run(
            conn,
            "putting files in place and starting the node",
            &activate_and_start,
            Stdin::Null,
            timeout,
        )
        .await
        {
            Ok(_) => {
                progress.phase("waiting until the node answers and sees its peers");
                self.health(desired, started).await.map_err(|e| e.to_string())
            }
            Err(e) => Err(e.reason),
        };
        let reason = match health {
            Ok(()) => {
                if let Ok(mut up) = self.up.lock() {
                    up.insert(name.clone());
                }
                *activated = paths;
                return Ok(());
            }
            Err(reason) => reason,
        };
        progress.phase("health check failed: rolling back");
        let log = conn
            .run(&desired.log_tail_script(3), Stdin::Null, timeout)
            .await
            .map(|o| o.text().lines().map(str::trim).collect::<Vec<_>>().join(" | "))
            .unwrap_or_default();
        let reason = if log.is_empty() {
            format!("health check failed: {reason}")
        } else {
            format!("health check failed: {reason} (node log: {log})")
        };
        let stop = stop_timeout(timeout);
        run(conn, "stopping the failed node", &desired.stop_script(), Stdin::Null, stop).await?;
        run(conn, "restoring files", &desired.rollback_script(&paths), Stdin::Null, timeout)
            .await?;
        if !facts.exists("bin/tau-node") {
            return Err(fail(format!(
                "{reason}; no previous version to roll back to, left stopped"
            )));
        }
        let started = Instant::now();
        run(conn, "starting the previous node", &start, Stdin::Null, timeout).await?;
        match self.health(desired, started).await {
            Ok(()) => Err(Failure {
                reason: format!("{reason}; rolled back to the previous binary and config"),
                rolled_back: true,
            }),
            Err(again) => Err(fail(format!(
                "{reason}; rolled back, but the previous node is not healthy either: {again}"
            ))),
        }
    }
}
