//! The recap table a deploy or destroy ends with.

use crate::host::Kind;
use crate::state::HostReport;

/// `binary, config` and the like.
pub fn kinds(kinds: &[Kind]) -> String {
    kinds
        .iter()
        .map(|k| match k {
            Kind::Binary => "binary",
            Kind::Config => "config",
            Kind::Secrets => "secrets",
            Kind::Service => "service",
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The table printed after a deploy: per host, what changed and how it ended.
pub fn recap(reports: &[HostReport]) -> String {
    let width = reports.iter().map(|r| r.host.len()).max().unwrap_or(4).max(4);
    let mut out = format!("{:<width$}  {:<11}  {:>6}  details\n", "host", "result", "time");
    for r in reports {
        let details = match (&r.error, r.changes.is_empty()) {
            (Some(e), _) => e.clone(),
            (None, true) => String::new(),
            (None, false) => kinds(&r.changes),
        };
        out.push_str(&format!(
            "{:<width$}  {:<11}  {:>5.1}s  {details}\n",
            r.host,
            r.result.word(),
            r.seconds
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Outcome;

    #[test]
    fn the_recap_names_each_host_and_why() {
        let reports = [
            HostReport {
                changes: vec![Kind::Binary, Kind::Config],
                ..HostReport::new("a", Outcome::Changed, 1.25, None)
            },
            HostReport::new("bb", Outcome::Failed, 0.5, Some("unreachable: refused".into())),
        ];
        let text = recap(&reports);
        assert!(text.contains("a     changed        1.2s  binary, config"), "{text}");
        assert!(text.contains("bb    failed         0.5s  unreachable: refused"), "{text}");
    }
}
