//! TNS key paths and who may write them.
//!
//! | key | scope | who may write |
//! |---|---|---|
//! | `/projects/<id>` | `<id>` | the operator or a registrar (the value names the owner) |
//! | `/projects/<id>/...` | `<id>` | the project's owner; for `config`, `functions/*` and `deployed`, also a node of a role the owner granted deploys (`/projects/<id>/grants`, [`crate::git`]) |
//! | `/jobs/<id>/<commit>` | `<id>` | the project's owner, or a node of a role it granted deploys: a build job |
//! | `/domains/<fqdn>` | the claiming project | that project's owner, or a node of a granted role |
//! | `/http/<fqdn>/<METHOD>/<path>` | the claiming project | that project's owner, or a node of a granted role |
//! | `/registrars/<peer id>` | empty | the operator: delegates project creation to a key |
//! | `/nodes/<peer id>` | empty | the operator: admits a node ([`crate::membership`]) |
//! | `/cloud` | empty | the operator: the cloud's names ([`super::values::CloudNames`]) |
//! | anything else (`/vault/keyset`, ...) | empty | the operator |
//!
//! The rules here depend only on the record. A registry node also checks a domain or route
//! against what it holds (`/cloud`'s names, the domain's current claim); see
//! [`super::values::CloudNames::refuses`].

/// The most bytes a key may have.
pub const MAX_KEY_LEN: usize = 512;

/// Who must have signed a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authority {
    /// The cloud's operator key.
    Operator,
    /// The operator key, or a key the operator named under `/registrars/` (a vault node, which
    /// creates a project only after checking its registration).
    Registrar,
    /// The owner of this project (as its `/projects/<id>` record names it), or, for the keys a
    /// deploy writes (`crate::git::deployable`), a node the operator admitted for a role the
    /// owner granted deploys (`/projects/<id>/grants`).
    Owner(String),
}

/// Why a key (or its scope) is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub enum KeyError {
    /// The key is malformed.
    #[error("bad key `{key}`: {reason}")]
    Malformed {
        /// The key (cut to 100 characters).
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// The scope does not fit the key.
    #[error("key `{key}` must have scope `{expected}`, not `{scope}`")]
    Scope {
        key: String,
        /// The scope it has.
        scope: String,
        /// The scope it must have.
        expected: String,
    },
}

/// Checks `key`'s shape and `scope`, and says who must sign it.
pub fn authority(key: &str, scope: &str) -> Result<Authority, KeyError> {
    let malformed = |reason| KeyError::Malformed { key: key.chars().take(100).collect(), reason };
    if key.len() > MAX_KEY_LEN {
        return Err(malformed("longer than 512 bytes"));
    }
    let Some(rest) = key.strip_prefix('/') else { return Err(malformed("must start with /")) };
    if rest.is_empty() || rest.ends_with('/') || rest.contains("//") {
        return Err(malformed("empty path segment"));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(malformed("only printable ASCII without spaces"));
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let scoped = |expected: &str| {
        if scope == expected {
            Ok(Authority::Owner(expected.to_string()))
        } else {
            Err(KeyError::Scope {
                key: key.to_string(),
                scope: scope.to_string(),
                expected: expected.to_string(),
            })
        }
    };
    match segments.as_slice() {
        ["projects", id] => {
            if !is_name(id) {
                return Err(malformed("a project id is 1-63 of a-z, 0-9 and -"));
            }
            scoped(id).map(|_| Authority::Registrar)
        }
        ["projects", id, ..] => {
            if !is_name(id) {
                return Err(malformed("a project id is 1-63 of a-z, 0-9 and -"));
            }
            scoped(id)
        }
        ["jobs", id, _] => {
            if !is_name(id) {
                return Err(malformed("a project id is 1-63 of a-z, 0-9 and -"));
            }
            scoped(id)
        }
        ["jobs", ..] => Err(malformed("expected /jobs/<project>/<commit>")),
        ["domains", fqdn] | ["http", fqdn, _, ..] => {
            if !is_fqdn(fqdn) {
                return Err(malformed("not a domain name"));
            }
            if is_ip_literal(fqdn) {
                return Err(malformed("an IP address is not a domain a project can claim"));
            }
            if !is_name(scope) {
                return Err(malformed("a domain or route must name its project as scope"));
            }
            Ok(Authority::Owner(scope.to_string()))
        }
        ["nodes", peer] => {
            if peer.parse::<libp2p::PeerId>().is_err() {
                return Err(malformed("expected /nodes/<peer id>"));
            }
            scoped("").map(|_| Authority::Operator)
        }
        ["domains", ..] | ["http", ..] => {
            Err(malformed("expected /domains/<fqdn> or /http/<fqdn>/<METHOD>/<path>"))
        }
        _ => {
            if scope.is_empty() {
                Ok(Authority::Operator)
            } else {
                Err(KeyError::Scope {
                    key: key.to_string(),
                    scope: scope.to_string(),
                    expected: String::new(),
                })
            }
        }
    }
}

/// A project or function name: 1-63 of `a-z`, `0-9`, `-`, not starting or ending with `-`.
pub fn is_name(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A fully qualified domain name: dot-separated labels of letters, digits and `-`.
pub fn is_fqdn(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').count() >= 2
        && s.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Whether `host` is written like an IPv4 address (its last label is all digits, which no
/// top-level domain is): a gateway serves no project at an IP address.
pub fn is_ip_literal(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
        || host.rsplit('.').next().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
}

/// The domain a `/domains/<fqdn>` or `/http/<fqdn>/...` key claims.
pub fn claimed_domain(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("/domains/").or_else(|| key.strip_prefix("/http/"))?;
    rest.split('/').next().filter(|fqdn| !fqdn.is_empty())
}

/// A domain of one or more labels, lower case (a cloud's domain may be a single label).
pub fn is_domain(name: &str) -> bool {
    name == name.to_ascii_lowercase() && (is_fqdn(name) || is_fqdn(&format!("x.{name}")))
}

/// `/projects/<id>`.
pub fn project(id: &str) -> String {
    format!("/projects/{id}")
}

/// `/projects/<id>/config`.
pub fn project_config(id: &str) -> String {
    format!("/projects/{id}/config")
}

/// `/projects/<id>/functions/<name>`.
pub fn function(project: &str, name: &str) -> String {
    format!("/projects/{project}/functions/{name}")
}

/// `/projects/<id>/branches/<branch>/functions/<name>`: a function as a mapped branch has it,
/// served instead of `/projects/<id>/functions/<name>` by the nodes the branch names.
pub fn branch_function(project: &str, branch: &str, name: &str) -> String {
    format!("/projects/{project}/branches/{branch}/functions/{name}")
}

/// The prefix of a branch's records: `/projects/<id>/branches/<branch>/`.
pub fn branch_prefix(project: &str, branch: &str) -> String {
    format!("/projects/{project}/branches/{branch}/")
}

/// `(project, branch)` of a key under `/projects/<id>/branches/<branch>/`.
pub fn parse_branch_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("/projects/")?;
    let (project, rest) = rest.split_once('/')?;
    let (branch, _) = rest.strip_prefix("branches/")?.split_once('/')?;
    (is_name(project) && is_name(branch)).then_some((project, branch))
}

/// `/projects/<id>/databases/<name>`: a key-value store of the project.
pub fn database(project: &str, name: &str) -> String {
    format!("/projects/{project}/databases/{name}")
}

/// `/projects/<id>/storages/<name>`: named blobs of the project.
pub fn storage(project: &str, name: &str) -> String {
    format!("/projects/{project}/storages/{name}")
}

/// `/projects/<id>/secrets/<name>`: a secret encrypted to the vault's key set.
pub fn secret(project: &str, name: &str) -> String {
    format!("/projects/{project}/secrets/{name}")
}

/// The prefix of every registrar record.
pub const REGISTRARS: &str = "/registrars/";

/// `/registrars/<name>`: the operator's delegation of project creation to a key (a vault node's,
/// named by its peer id).
pub fn registrar(name: &str) -> String {
    format!("{REGISTRARS}{name}")
}

/// The prefix of every admission record.
pub const NODES: &str = "/nodes/";

/// `/nodes/<peer id>`: the operator's admission of a node.
pub fn node(peer: &str) -> String {
    format!("{NODES}{peer}")
}

/// The cloud's names (its domain and the suffix of its generated domains), written by the
/// operator: [`super::values::CloudNames`].
pub const CLOUD: &str = "/cloud";

/// The vault's public key set, written by the operator.
pub const VAULT_KEYSET: &str = "/vault/keyset";

/// `(project, name)` of a `/projects/<id>/secrets/<name>` key.
pub fn parse_secret(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("/projects/")?;
    let (project, rest) = rest.split_once('/')?;
    let name = rest.strip_prefix("secrets/")?;
    (is_name(project) && is_name(name)).then_some((project, name))
}

/// `/domains/<fqdn>`.
pub fn domain(fqdn: &str) -> String {
    format!("/domains/{}", fqdn.to_ascii_lowercase())
}

/// `/http/<fqdn>/<METHOD><path>`, the route a request is looked up by. A trailing `/` is
/// dropped, so the root path `/` is `/http/<fqdn>/<METHOD>`.
pub fn route(fqdn: &str, method: &str, path: &str) -> String {
    format!(
        "/http/{}/{}{}",
        fqdn.to_ascii_lowercase(),
        method.to_ascii_uppercase(),
        path.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_who_may_write_each_key() {
        assert_eq!(authority("/projects/shop", "shop"), Ok(Authority::Registrar));
        assert_eq!(authority(&registrar("12D3KooWabc"), ""), Ok(Authority::Operator));
        assert_eq!(parse_secret(&secret("shop", "db-password")), Some(("shop", "db-password")));
        assert_eq!(parse_secret("/projects/shop/functions/db"), None);
        assert_eq!(parse_secret("/projects/shop/secrets/a/b"), None);
        assert_eq!(authority("/projects/shop/config", "shop"), Ok(Authority::Owner("shop".into())));
        assert_eq!(
            authority("/domains/shop.example.com", "shop"),
            Ok(Authority::Owner("shop".into()))
        );
        assert_eq!(
            authority(&route("shop.example.com", "get", "/ping"), "shop"),
            Ok(Authority::Owner("shop".into()))
        );
        assert_eq!(authority("/vault/keyset", ""), Ok(Authority::Operator));
        let peer = libp2p::PeerId::random().to_string();
        assert_eq!(authority(&node(&peer), ""), Ok(Authority::Operator));
        assert!(matches!(authority("/nodes/not-a-peer", ""), Err(KeyError::Malformed { .. })));
        assert!(matches!(authority(&node(&peer), "shop"), Err(KeyError::Scope { .. })));
        // The root path and trailing slashes make valid keys too.
        assert_eq!(route("shop.example.com", "get", "/"), "/http/shop.example.com/GET");
        assert_eq!(route("a.b", "POST", "/x/"), "/http/a.b/POST/x");
        for path in ["/", "/x/"] {
            assert!(authority(&route("shop.example.com", "get", path), "shop").is_ok(), "{path}");
        }
    }

    #[test]
    fn refuses_bad_keys_and_scopes() {
        assert!(matches!(authority("/projects/shop/config", "other"), Err(KeyError::Scope { .. })));
        assert!(matches!(authority("/projects/shop", ""), Err(KeyError::Scope { .. })));
        assert!(matches!(authority("/vault/keyset", "shop"), Err(KeyError::Scope { .. })));
        for key in [
            "projects/x",
            "/",
            "/projects//x",
            "/projects/x/",
            "/projects/UP",
            "/domains/nodot",
            "/has space",
            "/domains/a.b/extra",
        ] {
            assert!(authority(key, "x").is_err(), "{key}");
        }
        assert!(authority("/domains/a.example", "").is_err(), "a domain needs a project");
        for ip in ["/domains/127.0.0.1", "/http/10.0.0.1/GET/x", "/domains/a.b.0x.123"] {
            assert!(
                matches!(authority(ip, "x"), Err(KeyError::Malformed { .. })),
                "{ip} is an address"
            );
        }
        assert_eq!(authority(CLOUD, ""), Ok(Authority::Operator));
        assert!(authority(&format!("/{}", "a".repeat(600)), "").is_err());
    }

    #[test]
    fn names_and_domains() {
        assert!(is_name("shop-1") && !is_name("-shop") && !is_name("Shop") && !is_name(""));
        assert!(is_fqdn("ping.example.tau") && !is_fqdn("localhost") && !is_fqdn("a..b"));
        assert!(is_ip_literal("127.0.0.1") && is_ip_literal("::1") && is_ip_literal("a.10"));
        assert!(!is_ip_literal("1.example.tau") && !is_ip_literal("ping.example.tau"));
        assert_eq!(claimed_domain("/domains/a.b"), Some("a.b"));
        assert_eq!(claimed_domain(&route("a.b", "GET", "/x/y")), Some("a.b"));
        assert_eq!(claimed_domain("/projects/a"), None);
    }
}
