//! What a host says about itself before anything changes: its machine, whether systemd runs,
//! free disk, whether the node runs, and the sha256 of every file Spore Drive manages.

use std::collections::BTreeMap;

/// A host's facts, from the output of its facts script.
#[derive(Debug, Default)]
pub(super) struct Facts {
    pub(super) arch: String,
    pub(super) systemd: bool,
    pub(super) free_kb: u64,
    pub(super) running: bool,
    sha: BTreeMap<String, Option<String>>,
}

impl Facts {
    pub(super) fn parse(text: &str) -> Self {
        let mut facts = Self::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("sha ") {
                if let Some((path, hash)) = rest.rsplit_once(' ') {
                    let hash = (hash != "-").then(|| hash.to_string());
                    facts.sha.insert(path.to_string(), hash);
                }
            } else if let Some((key, value)) = line.split_once('=') {
                match key {
                    "arch" => facts.arch = value.trim().to_string(),
                    "systemd" => facts.systemd = value.trim() == "1",
                    "free_kb" => facts.free_kb = value.trim().parse().unwrap_or(0),
                    "running" => facts.running = value.trim() == "1",
                    _ => {}
                }
            }
        }
        facts
    }

    /// Whether the host holds `path` with this sha256.
    pub(super) fn has(&self, path: &str, sha256: &str) -> bool {
        self.sha.get(path).and_then(|h| h.as_deref()) == Some(sha256)
    }

    /// Whether the host holds `path` at all.
    pub(super) fn exists(&self, path: &str) -> bool {
        self.sha.get(path).is_some_and(|h| h.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_parse_every_line() {
        let facts = Facts::parse(
            "arch=x86_64\nsystemd=0\nfree_kb=1234\nrunning=1\nsha bin/tau-node -\nsha node.yaml abcd\n",
        );
        assert_eq!(facts.arch, "x86_64");
        assert!(!facts.systemd && facts.running);
        assert_eq!(facts.free_kb, 1234);
        assert!(!facts.exists("bin/tau-node"));
        assert!(facts.has("node.yaml", "abcd"));
    }
}
