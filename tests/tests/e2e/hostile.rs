//! What a hostile holder of the swarm key can do to a cloud, each case against real processes:
//! a stock `tau-node` started by a tenant, with whatever it chooses to claim.

use std::path::Path;
use std::time::Duration;

use tau_proto::CloudProfile;
use tau_tests::harness::{DevCloud, KillOnDrop, Result, run_node, tau_node_ok, wait_for};

/// A stock node that joins `cloud` with the swarm key from its profile, set up by `tau-node
/// init` with `options`, running until dropped.
fn rogue_node(cloud: &DevCloud, dir: &Path, options: &[&str]) -> Result<KillOnDrop> {
    let profile = CloudProfile::load(&cloud.profile)?;
    let bootstrap = profile.bootstrap.first().ok_or("the profile names no bootstrap node")?;
    let node_dir = dir.join("rogue");
    let swarm_key = profile.swarm_key.to_string_lossy().into_owned();
    let (dir_arg, bootstrap) = (node_dir.to_string_lossy().into_owned(), bootstrap.to_string());
    let mut args = vec!["init", "--dir", &dir_arg, "--swarm-key", &swarm_key];
    args.extend(["--bootstrap", &bootstrap, "--listen", "127.0.0.1", "--p2p-port", "0"]);
    args.extend(["--http-port", "0", "--dns-port", "0"]);
    args.extend(options);
    tau_node_ok(&args)?;
    run_node(&node_dir.join("node.yaml"), &node_dir.join("node.log"))
}

fn profile_arg(cloud: &DevCloud) -> String {
    cloud.profile.to_string_lossy().into_owned()
}

/// A node's region reaches every operator's terminal through `tau-node nodes` and `tau-node
/// status`: sent raw, `\e]0;TITLE\a\e[2J` would retitle their window and clear their screen.
#[test]
fn a_hostile_region_cannot_drive_an_operators_terminal() -> Result {
    let dir = tempfile::tempdir()?;
    let cloud = DevCloud::start(2, &dir.path().join("cloud"))?;
    let hostile = "\u{1b}]0;TITLE\u{7}\u{1b}[2J\u{202e}";
    let _rogue = rogue_node(&cloud, dir.path(), &["--region", hostile])?;
    let profile = profile_arg(&cloud);
    let shown = "\\x1b]0;TITLE\\x07\\x1b[2J\\u{202e}";
    for command in ["nodes", "status"] {
        let (out, _) = wait_for(
            Duration::from_secs(30),
            &format!("`tau-node {command}` lists the rogue node"),
            || {
                let out = tau_node_ok(&[command, "--cloud", &profile])?;
                // Raw or escaped: once the region is there at all, look at how.
                Ok((out.contains("TITLE")).then_some(out))
            },
        )?;
        assert!(
            !out.contains('\u{1b}') && !out.contains('\u{7}') && !out.contains('\u{202e}'),
            "`tau-node {command}` printed a control character a node sent:\n{}",
            out.escape_debug()
        );
        assert!(
            out.contains(shown),
            "`tau-node {command}` does not show the region escaped:\n{out}"
        );
    }
    Ok(())
}
