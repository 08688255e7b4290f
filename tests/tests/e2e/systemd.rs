//! Spore Drive on hosts whose PID 1 is systemd (`systemd-nspawn` containers of Debian
//! bookworm): the node runs as the `tau-node` unit, systemd starts it again when it is killed,
//! its lines are in the journal, and `destroy` leaves no unit and no file.

use std::path::Path;
use std::time::Duration;

use tau_tests::harness::{Result, host_results, spore_json, wait_for};
use tau_tests::systemd_lab::SystemdLab;

/// The node's main pid on host `i` as systemd knows it (0 when it runs none).
fn main_pid(lab: &SystemdLab, i: usize) -> Result<u32> {
    Ok(lab.ssh_ok(i, "systemctl show -p MainPID --value tau-node")?.parse()?)
}

fn write_playbook(lab: &SystemdLab, dir: &Path) -> Result<String> {
    let hosts: String = (0..2)
        .map(|i| {
            format!(
                "  - {{ name: s{}, address: {}, shape: node, location: {{ region: lab }} }}\n",
                i + 1,
                lab.ip(i)
            )
        })
        .collect();
    let text = format!(
        "cloud: {{ name: sd, domain: sd.tau, generated_domain: g.sd.tau, secrets: secrets }}\n\
         transport: ssh\nhost_keys: accept-new\nknown_hosts: known_hosts\n\
         ssh: {{ user: root, key: {key} }}\ninstall_dir: /opt/tau\n\
         shapes:\n\
         \x20 node: {{ services: [tns, hoarder, seer, substrate], \
         ports: {{ p2p: 4001, http: 8080, dns: 5353 }} }}\n\
         hosts:\n{hosts}",
        key = lab.client_key.display()
    );
    let path = dir.join("playbook.yaml");
    std::fs::write(&path, text)?;
    Ok(path.display().to_string())
}

#[test]
fn on_systemd_hosts_the_node_is_a_unit_restarted_when_killed_logging_to_the_journal() -> Result {
    let dir = tempfile::tempdir()?;
    let lab = SystemdLab::new(2, &dir.path().join("lab"))?;
    let cloud = dir.path().join("cloud");
    std::fs::create_dir_all(&cloud)?;
    let pb = write_playbook(&lab, &cloud)?;

    let (out, report) = spore_json(&["deploy", &pb, "--yes"])?;
    assert!(out.status.success(), "deploy: {report}");
    let mut got = host_results(&report);
    got.sort();
    assert_eq!(got, [("s1".into(), "changed".into()), ("s2".into(), "changed".into())]);
    for i in 0..2 {
        assert_eq!(lab.ssh_ok(i, "systemctl is-active tau-node")?, "active", "host {i}");
        assert_eq!(lab.ssh_ok(i, "systemctl is-enabled tau-node")?, "enabled", "host {i}");
        assert!(
            !lab.root(i).join("opt/tau/supervise.sh").exists(),
            "host {i}: systemd supervises, not the script"
        );
    }
    let (_, status) = spore_json(&["status", &pb])?;
    for host in status.as_array().ok_or("status is not a list")? {
        assert_eq!(host["healthy"], true, "{status}");
        assert_eq!(host["peers"], 1, "each node sees the other: {status}");
    }

    // SIGKILL the node on s1: systemd starts it again, and it joins the cloud again.
    let first = main_pid(&lab, 0)?;
    assert!(first > 0, "s1's unit has a main pid");
    lab.ssh_ok(0, &format!("kill -KILL {first}"))?;
    wait_for(Duration::from_secs(60), "systemd starts the node again", || {
        let pid = main_pid(&lab, 0)?;
        let active = lab.ssh_ok(0, "systemctl is-active tau-node").unwrap_or_default();
        Ok((pid > 0 && pid != first && active == "active").then_some(()))
    })?;
    let restarts: u32 = lab.ssh_ok(0, "systemctl show -p NRestarts --value tau-node")?.parse()?;
    assert!(restarts >= 1, "systemd counts the restart ({restarts})");
    wait_for(Duration::from_secs(60), "the restarted node is healthy", || {
        let (_, status) = spore_json(&["status", &pb])?;
        let healthy = status
            .as_array()
            .is_some_and(|hosts| hosts.iter().all(|h| h["healthy"] == true && h["peers"] == 1));
        Ok(healthy.then_some(()))
    })?;

    // The node logs to the journal (nothing to logs/node.log): both starts are there.
    let journal = lab.ssh_ok(0, "journalctl -u tau-node --no-pager -o cat")?;
    let starts = journal.lines().filter(|l| l.contains("node started")).count();
    assert!(starts >= 2, "the journal has both starts ({starts}):\n{journal}");
    let file_log = lab.root(0).join("opt/tau/logs/node.log");
    let file_lines = std::fs::read_to_string(&file_log).unwrap_or_default();
    assert!(file_lines.trim().is_empty(), "the node wrote to {}: {file_lines}", file_log.display());

    // destroy: no unit (file, enablement or loaded), no process, no file.
    let (out, report) = spore_json(&["destroy", &pb, "--yes"])?;
    assert!(out.status.success(), "destroy: {report}");
    for i in 0..2 {
        let unit = "/etc/systemd/system/tau-node.service";
        assert!(!lab.root(i).join(unit.trim_start_matches('/')).exists(), "host {i} keeps {unit}");
        let wants = lab.root(i).join("etc/systemd/system/multi-user.target.wants/tau-node.service");
        assert!(!wants.exists(), "host {i} keeps the unit enabled");
        let units = lab.ssh_ok(i, "systemctl list-units --all --no-legend 'tau-node*'")?;
        assert!(units.is_empty(), "host {i} still has the unit loaded: {units}");
        assert!(!lab.root(i).join("opt/tau").exists(), "host {i} keeps /opt/tau");
        let processes = lab.ssh(i, "cat /proc/[0-9]*/comm 2>/dev/null | grep -x tau-node")?;
        assert!(!processes.status.success(), "host {i} still runs tau-node");
    }
    Ok(())
}
