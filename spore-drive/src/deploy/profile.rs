//! The cloud profile (`cloud.yaml`), built in one place: for the clients Spore Drive starts
//! itself (health checks, status, publishing the vault key set) and for the file it writes.

use std::path::PathBuf;

use libp2p::Multiaddr;
use tau_proto::profile::{CloudProfile, ProfileError};

use super::Run;
use crate::host::Desired;

impl Run {
    /// This cloud's profile, reaching it through `bootstrap`, with the operator key when
    /// `operator` (paths as Spore Drive sees them, absolute or relative to here).
    pub(super) fn profile(&self, bootstrap: Vec<Multiaddr>, operator: bool) -> CloudProfile {
        CloudProfile {
            name: self.playbook.cloud.name.clone(),
            swarm_key: self.layout.swarm_key(),
            bootstrap,
            operator_key: operator.then(|| self.layout.operator_key()),
        }
    }

    /// A profile that reaches one host's node only.
    pub(super) fn profile_of(&self, desired: &Desired) -> CloudProfile {
        self.profile(vec![desired.p2p_addr.clone()], false)
    }

    /// A profile that reaches every node, with the operator key.
    pub(super) fn operator_profile(&self) -> CloudProfile {
        self.profile(self.desired.iter().map(|d| d.p2p_addr.clone()).collect(), true)
    }

    /// Writes `cloud.yaml` beside the secrets folder (its key paths relative to that file) and
    /// returns its path.
    pub fn write_profile(&self) -> Result<PathBuf, ProfileError> {
        let secrets = self.layout.dir.file_name().map(PathBuf::from).unwrap_or_default();
        let profile = CloudProfile {
            swarm_key: secrets.join("swarm.key"),
            operator_key: Some(secrets.join("operator.key")),
            ..self.operator_profile()
        };
        let path = self.layout.profile();
        profile.save(&path)?;
        Ok(path)
    }
}
