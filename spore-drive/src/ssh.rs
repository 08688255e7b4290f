//! SSH to a host with `russh`: host keys checked against the playbook's known_hosts file, key
//! file or ssh-agent authentication, timeouts on connecting and on every command, and `sudo`
//! (with the password on stdin, never on a command line) when the user is not root.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::ssh_key::{HashAlg, PublicKey};
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};

use crate::playbook::HostKeys;
use crate::script::{Output, ShellError, Stdin, quote};

/// Where and how to log in.
#[derive(Debug, Clone)]
pub struct Target {
    /// The host's name in the playbook, for messages.
    pub host: String,
    /// Its address.
    pub address: IpAddr,
    /// The SSH port.
    pub port: u16,
    /// The SSH user; not root means commands run with sudo.
    pub user: String,
    /// The private key file; `None`: the keys of the running ssh-agent (`SSH_AUTH_SOCK`).
    pub key: Option<PathBuf>,
    /// The known_hosts file.
    pub known_hosts: PathBuf,
    /// What to do with a host that is not in it.
    pub host_keys: HostKeys,
    /// How long connecting (TCP, key exchange and authentication) may take.
    pub connect_timeout: Duration,
    /// The sudo password, when the user is not root and sudo asks for one.
    pub sudo_password: Option<String>,
}

impl Target {
    /// The host part of this host's known_hosts line (russh writes `[addr]:port` itself when the
    /// port is not 22).
    fn known_hosts_name(&self) -> String {
        self.address.to_string()
    }
}

/// What the host key check decided, kept for the error message.
#[derive(Debug, Clone)]
enum KeyVerdict {
    Known,
    Learned,
    Unknown { fingerprint: String },
    Changed { fingerprint: String, line: usize },
    Unreadable { reason: String },
}

/// AES-GCM first: with AES-NI it costs both ends less per byte than ChaCha20-Poly1305, and
/// every deploy moves the whole node binary.
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_128_GCM,
    russh::cipher::AES_256_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_128_CTR,
];

static KNOWN_HOSTS_FILE: Mutex<()> = Mutex::new(());

struct Checker {
    target: Arc<Target>,
    verdict: Arc<Mutex<Option<KeyVerdict>>>,
}

impl Checker {
    fn check(&self, key: &PublicKey) -> KeyVerdict {
        let target = &self.target;
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let name = target.known_hosts_name();
        // Hosts connect in parallel and share one known_hosts file: check and learn one at a
        // time, or two appends can interleave.
        let _file = KNOWN_HOSTS_FILE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match russh::keys::check_known_hosts_path(&name, target.port, key, &target.known_hosts) {
            Ok(true) => KeyVerdict::Known,
            Ok(false) if target.host_keys == HostKeys::AcceptNew => {
                match russh::keys::known_hosts::learn_known_hosts_path(
                    &name,
                    target.port,
                    key,
                    &target.known_hosts,
                ) {
                    Ok(()) => KeyVerdict::Learned,
                    Err(e) => KeyVerdict::Unreadable { reason: format!("cannot record it: {e}") },
                }
            }
            Ok(false) => KeyVerdict::Unknown { fingerprint },
            Err(russh::keys::Error::KeyChanged { line }) => {
                KeyVerdict::Changed { fingerprint, line }
            }
            Err(e) => KeyVerdict::Unreadable { reason: e.to_string() },
        }
    }
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let verdict = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.check(key),
            PublicKeyOrCertificate::Certificate(_) => KeyVerdict::Unreadable {
                reason: "the host offered a certificate; only plain host keys are checked".into(),
            },
        };
        let accept = matches!(verdict, KeyVerdict::Known | KeyVerdict::Learned);
        if let Ok(mut slot) = self.verdict.lock() {
            *slot = Some(verdict);
        }
        Ok(accept)
    }
}

/// A logged-in session to one host.
pub struct Session {
    handle: Handle<Checker>,
    target: Arc<Target>,
    /// Whether `sudo` is needed (the user is not root).
    sudo: bool,
    /// Whether the host key was learned by this connection.
    pub learned_key: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("host", &self.target.host).finish_non_exhaustive()
    }
}

impl Session {
    /// Connects, checks the host key and logs in, all within `target.connect_timeout`.
    pub async fn connect(target: Target) -> Result<Self, ShellError> {
        let target = Arc::new(target);
        let timeout = target.connect_timeout;
        let addr = SocketAddr::new(target.address, target.port);
        match tokio::time::timeout(timeout, Self::connect_inner(target.clone(), addr)).await {
            Ok(result) => result,
            Err(_) => Err(ShellError::Unreachable {
                host: target.host.clone(),
                reason: format!("no SSH session with {addr} within {}s", timeout.as_secs()),
            }),
        }
    }

    async fn connect_inner(target: Arc<Target>, addr: SocketAddr) -> Result<Self, ShellError> {
        let host = target.host.clone();
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(Duration::from_secs(600)),
            keepalive_interval: Some(Duration::from_secs(15)),
            nodelay: true,
            window_size: 8 << 20,
            preferred: russh::Preferred { cipher: Cow::Borrowed(CIPHERS), ..Default::default() },
            ..client::Config::default()
        });
        let verdict = Arc::new(Mutex::new(None));
        let checker = Checker { target: target.clone(), verdict: verdict.clone() };
        let connected = client::connect(config, addr, checker).await;
        let seen = verdict.lock().ok().and_then(|v| v.clone());
        let mut handle = match (connected, seen) {
            (Ok(handle), _) => handle,
            (Err(_), Some(KeyVerdict::Unknown { fingerprint })) => {
                return Err(ShellError::UnknownHostKey {
                    host,
                    addr: addr.to_string(),
                    fingerprint,
                    known_hosts: target.known_hosts.display().to_string(),
                });
            }
            (Err(_), Some(KeyVerdict::Changed { fingerprint, line })) => {
                return Err(ShellError::HostKeyChanged {
                    host,
                    addr: addr.to_string(),
                    fingerprint,
                    known_hosts: target.known_hosts.display().to_string(),
                    line,
                });
            }
            (Err(_), Some(KeyVerdict::Unreadable { reason })) => {
                return Err(ShellError::Refused {
                    host,
                    reason: format!(
                        "host key of {addr} not checked against {}: {reason}",
                        target.known_hosts.display()
                    ),
                });
            }
            (Err(e), _) => {
                return Err(ShellError::Unreachable { host, reason: format!("{addr}: {e}") });
            }
        };
        let learned_key =
            matches!(verdict.lock().ok().and_then(|v| v.clone()), Some(KeyVerdict::Learned));
        authenticate(&mut handle, &target).await?;
        let sudo = target.user != "root";
        Ok(Self { handle, target, sudo, learned_key })
    }

    /// Runs `script` with `sh` on the host (as root, through sudo when needed), feeding it
    /// `stdin`, and waits (at most `timeout`) until the channel closes.
    pub async fn run(
        &self,
        script: &str,
        stdin: Stdin,
        timeout: Duration,
    ) -> Result<Output, ShellError> {
        let host = self.target.host.clone();
        match tokio::time::timeout(timeout, self.run_inner(script, stdin)).await {
            Ok(result) => result,
            Err(_) => Err(ShellError::Timeout { host, secs: timeout.as_secs() }),
        }
    }

    async fn run_inner(&self, script: &str, stdin: Stdin) -> Result<Output, ShellError> {
        let host = &self.target.host;
        let lost = |e: russh::Error| ShellError::Unreachable {
            host: host.clone(),
            reason: format!("SSH channel: {e}"),
        };
        let channel = self.handle.channel_open_session().await.map_err(lost)?;
        let mut command = format!("sh -c {}", quote(script));
        let mut password = None;
        if self.sudo {
            // The password goes first on stdin: sudo reads it byte by byte up to the newline
            // and leaves the rest to the command.
            command = match &self.target.sudo_password {
                Some(p) => {
                    password = Some(format!("{p}\n"));
                    format!("sudo -S -p '' {command}")
                }
                None => format!("sudo -n {command}"),
            };
        }
        channel.exec(true, command.into_bytes()).await.map_err(lost)?;
        let (mut read, write) = channel.split();
        let send = async {
            if let Some(password) = password {
                write.data(password.as_bytes()).await?;
            }
            match stdin {
                Stdin::Null => {}
                Stdin::Bytes(bytes) => write.data(&bytes[..]).await?,
                Stdin::Shared(bytes) => write.data(&bytes[..]).await?,
            }
            write.eof().await
        };
        let receive = async {
            let mut output = Output::default();
            while let Some(message) = read.wait().await {
                match message {
                    ChannelMsg::Data { data } => output.push_stdout(&data),
                    ChannelMsg::ExtendedData { data, .. } => output.push_stderr(&data),
                    ChannelMsg::ExitStatus { exit_status } => {
                        output.status = Some(exit_status as i32)
                    }
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        output.push_stderr(format!("killed by signal {signal_name:?}").as_bytes());
                    }
                    _ => {}
                }
            }
            output
        };
        let (sent, output) = tokio::join!(send, receive);
        if output.status.is_none() {
            if let Err(e) = sent {
                return Err(lost(e));
            }
            return Err(ShellError::Unreachable {
                host: host.clone(),
                reason: "the command's channel closed without an exit status".into(),
            });
        }
        Ok(output)
    }

    /// Says goodbye.
    pub async fn close(&self) {
        let _ = self.handle.disconnect(Disconnect::ByApplication, "done", "en").await;
    }
}

async fn authenticate(handle: &mut Handle<Checker>, target: &Target) -> Result<(), ShellError> {
    let refused = |how: String| ShellError::Refused {
        host: target.host.clone(),
        reason: format!("{}@{} refused {how}", target.user, target.address),
    };
    let lost = |e: russh::Error| ShellError::Unreachable {
        host: target.host.clone(),
        reason: format!("authenticating: {e}"),
    };
    let hash = handle.best_supported_rsa_hash().await.map_err(lost)?.flatten();
    if let Some(path) = &target.key {
        let key = russh::keys::load_secret_key(path, None).map_err(|e| ShellError::Refused {
            host: target.host.clone(),
            reason: format!("cannot load SSH key {}: {e}", path.display()),
        })?;
        let result = handle
            .authenticate_publickey(&target.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(lost)?;
        return if result.success() {
            Ok(())
        } else {
            Err(refused(format!("the key {}", path.display())))
        };
    }
    let mut agent = russh::keys::agent::client::AgentClient::connect_env().await.map_err(|e| {
        ShellError::Refused {
            host: target.host.clone(),
            reason: format!(
                "no `ssh.key` in the playbook and no ssh-agent to ask (SSH_AUTH_SOCK): {e}"
            ),
        }
    })?;
    let identities = agent.request_identities().await.map_err(|e| ShellError::Refused {
        host: target.host.clone(),
        reason: format!("ssh-agent: {e}"),
    })?;
    let count = identities.len();
    for identity in identities {
        let russh::keys::agent::AgentIdentity::PublicKey { key, .. } = identity else {
            continue;
        };
        match handle.authenticate_publickey_with(&target.user, key, hash, &mut agent).await {
            Ok(result) if result.success() => return Ok(()),
            Ok(_) => {}
            Err(e) => {
                return Err(ShellError::Refused {
                    host: target.host.clone(),
                    reason: format!("ssh-agent could not sign: {e}"),
                });
            }
        }
    }
    Err(refused(format!("all {count} keys of the ssh-agent")))
}
