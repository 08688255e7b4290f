//! `tau-node project`.

use std::io::IsTerminal;
use std::path::PathBuf;
use tau_proto::tns::TnsProtocol;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use libp2p::PeerId;
use libp2p::identity::Keypair;
use serde::Serialize;
use tau_node::patrick::host_key;
use tau_node::project;
use tau_proto::git::{
    self, Grants, PatrickProtocol, PatrickRequest, PatrickResponse, RepoKind, RepoUrl, Repository,
};
use tau_proto::hoarder::DEFAULT_REPLICAS;
use tau_proto::identity::WriterKey;
use tau_proto::tns::values::ProjectRoot;
use tau_proto::tns::{Draft, PutOutcome, Record, TnsRequest, TnsResponse, keys};
use tau_proto::{Client, cbor, keyfile};

use super::hoarder::{hoarder_nodes, put_file};
use super::output;
use super::tns::tns_node;

/// Projects: create one (operator) and push a project folder (owner).
#[derive(Debug, Args)]
pub(crate) struct Project {
    #[command(subcommand)]
    command: ProjectCommand,
}

#[derive(Debug, Subcommand)]
enum ProjectCommand {
    /// Create a project and name its owner key (the operator's job).
    Create(Create),
    /// Register a project through a vault node, as its owner.
    ///
    /// Reads the project id from DIR/config.yaml and sends one registration signed by KEY to a
    /// vault node, which checks it and creates the project in TNS with KEY as its owner.
    ///
    /// With --config-repo and --code-repo the project is git-operated: for each repository it
    /// makes a read-only deploy key (OpenSSH ed25519) and a webhook secret, encrypted to the
    /// vault with the registration; pins the git host's SSH host key (from --known-hosts, or
    /// the key the host offers once you confirm its fingerprint or pass --host-fingerprint);
    /// writes the repositories and a grant that lets the cloud's `ci` nodes read those four
    /// secrets and deploy the project. It prints what to add to the git host: each deploy key
    /// and webhook URL, and how to read each webhook secret.
    Register(Register),
    /// Print the TXT record that lets seer serve a custom domain for a project.
    ///
    /// A domain under the cloud's generated suffix is served at once; any other domain a
    /// project's functions name is served only once `_tau.<domain>` holds this token.
    DomainToken(DomainToken),
    /// What a project serves and why: its repositories, webhook URL, the commits each branch
    /// serves, and its latest jobs (a git-operated project serves nothing until a job succeeds).
    Status(Status),
    /// Compile a project folder into TNS records and push what changed (the owner's job).
    ///
    /// Pushing the same folder twice writes nothing; a function removed from the folder is
    /// deleted. The whole folder is checked before anything is sent.
    Push(Push),
}

#[derive(Debug, Args)]
struct Create {
    /// The project id (1-63 of a-z, 0-9 and -).
    #[arg(long)]
    id: String,
    /// The owner's public key, as `tau-node key public` prints it (ed25519:<hex>).
    #[arg(long)]
    owner: WriterKey,
    /// The cloud profile (`cloud.yaml`).
    #[arg(long)]
    cloud: PathBuf,
    /// The operator key file [default: the profile's operator_key].
    #[arg(long)]
    operator_key: Option<PathBuf>,
    /// The tns node to send to [default: the first one found].
    #[arg(long)]
    node: Option<PeerId>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct DomainToken {
    /// The project id, as in its config.yaml.
    #[arg(long)]
    id: String,
    /// The custom domain to prove, such as shop.example.com.
    #[arg(long)]
    domain: String,
    /// The cloud profile (`cloud.yaml`).
    #[arg(long)]
    cloud: PathBuf,
}

#[derive(Debug, Args)]
struct Register {
    /// The project folder (its config.yaml gives the id).
    dir: PathBuf,
    /// The cloud profile (`cloud.yaml`).
    #[arg(long)]
    cloud: PathBuf,
    /// The key file of the project's owner-to-be.
    #[arg(long)]
    key: PathBuf,
    /// The config repository (the project's YAML): ssh://[user@]host[:port]/path.
    #[arg(long, requires = "code_repo")]
    config_repo: Option<String>,
    /// The code repository (the functions' sources, or built .wasm files):
    /// ssh://[user@]host[:port]/path.
    #[arg(long, requires = "config_repo")]
    code_repo: Option<String>,
    /// The branch the cloud deploys, in both repositories.
    #[arg(long, default_value = "main")]
    branch: String,
    /// A known_hosts file that lists the git host's key (hashed entries too).
    #[arg(long)]
    known_hosts: Option<PathBuf>,
    /// The git host's SSH key fingerprint (SHA256:...), as the host publishes it: the key the
    /// host offers is pinned only if it matches.
    #[arg(long, conflicts_with = "known_hosts")]
    host_fingerprint: Option<String>,
    /// Print JSON (never a secret).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct Status {
    /// The project id.
    id: String,
    /// The cloud profile (`cloud.yaml`).
    #[arg(long)]
    cloud: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct Push {
    /// The project folder (config.yaml, functions/*.yaml).
    dir: PathBuf,
    /// The cloud profile (`cloud.yaml`).
    #[arg(long)]
    cloud: PathBuf,
    /// The project owner's key file.
    #[arg(long)]
    key: PathBuf,
    /// The tns node to send to [default: the first one found].
    #[arg(long)]
    node: Option<PeerId>,
    /// Show what would change, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    project: String,
    node: String,
    written: Vec<String>,
    deleted: Vec<String>,
    unchanged: usize,
    dry_run: bool,
    /// Each component stored in hoarder, and on how many nodes when the push went on.
    components: Vec<(String, usize)>,
}

impl Project {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        match self.command {
            ProjectCommand::Create(cmd) => cmd.run().await,
            ProjectCommand::Register(cmd) => cmd.run().await,
            ProjectCommand::DomainToken(cmd) => cmd.run().await,
            ProjectCommand::Push(cmd) => cmd.run().await,
            ProjectCommand::Status(cmd) => cmd.run().await,
        }
    }
}

/// Signs `drafts` one version above the node's clock and puts them; fails on any refusal.
async fn put(
    client: &Client,
    node: PeerId,
    drafts: Vec<Draft>,
    key: &Keypair,
) -> anyhow::Result<PutOutcome> {
    let version = client.tns_status(node).await?.clock.saturating_add(1);
    let records: Vec<Record> = drafts
        .into_iter()
        .map(|d| d.sign(version, key).context("the key is not an ed25519 key"))
        .collect::<anyhow::Result<_>>()?;
    let mut total = PutOutcome::default();
    for chunk in tau_proto::tns::batches(records, tau_proto::tns::MAX_PAGE_BYTES) {
        let outcome =
            match client.call::<TnsProtocol>(node, TnsRequest::Put { records: chunk }).await? {
                TnsResponse::Put(outcome) => outcome,
                other => bail!("{node} gave an unexpected answer to Put: {other:?}"),
            };
        total.stored += outcome.stored;
        total.unchanged += outcome.unchanged;
        total.rejected.extend(outcome.rejected);
    }
    if !total.rejected.is_empty() {
        let lines: Vec<String> =
            total.rejected.iter().map(|(k, why)| format!("{k}: {why}")).collect();
        bail!("{node} refused {} records:\n  {}", lines.len(), lines.join("\n  "));
    }
    Ok(total)
}

/// The owner of project `id` as `node`'s registry names it (`None`: no such project).
async fn project_owner(
    client: &Client,
    node: PeerId,
    id: &str,
) -> anyhow::Result<Option<WriterKey>> {
    let root = client.tns_record(node, &keys::project(id)).await?;
    Ok(root
        .as_ref()
        .and_then(|r| r.value.as_deref())
        .and_then(|v| cbor::from_slice::<ProjectRoot>(v).ok())
        .map(|root| root.owner))
}

impl Create {
    async fn run(self) -> anyhow::Result<()> {
        if !keys::is_name(&self.id) {
            bail!(
                "project id `{}`: 1-63 of a-z, 0-9 and -, not starting or ending with -",
                self.id
            );
        }
        let operator = output::operator_key(&self.cloud, self.operator_key)?;
        let client = output::connect(&self.cloud).await?;
        let node = tns_node(&client, self.node).await?;
        let key = keys::project(&self.id);
        let unchanged = project_owner(&client, node, &self.id).await? == Some(self.owner);
        if !unchanged {
            let value = cbor::to_vec(&ProjectRoot { owner: self.owner })?;
            put(
                &client,
                node,
                vec![Draft { key: key.clone(), scope: self.id.clone(), value: Some(value) }],
                &operator,
            )
            .await?;
        }
        if self.json {
            #[derive(Serialize)]
            struct Created<'a> {
                project: &'a str,
                owner: String,
                changed: bool,
            }
            return output::print_json(&Created {
                project: &self.id,
                owner: self.owner.to_string(),
                changed: !unchanged,
            });
        }
        match unchanged {
            true => println!("project {} already exists with owner {}", self.id, self.owner),
            false => println!("created project {} with owner {}", self.id, self.owner),
        }
        Ok(())
    }
}

impl DomainToken {
    async fn run(self) -> anyhow::Result<()> {
        let domain = self.domain.trim_end_matches('.').to_ascii_lowercase();
        if !keys::is_fqdn(&domain) {
            bail!("`{}` is not a domain name", self.domain);
        }
        let client = output::connect(&self.cloud).await?;
        let node = tns_node(&client, None).await?;
        let owner = project_owner(&client, node, &self.id)
            .await?
            .with_context(|| format!("project `{}` does not exist in this cloud", self.id))?;
        let token = tau_proto::seer::validation_token(&self.id, &owner, &domain);
        println!("_tau.{domain}. TXT \"{token}\"");
        Ok(())
    }
}

/// One repository as registration makes it: the record to write and the secrets to store.
struct NewRepo {
    repository: Repository,
    deploy_fingerprint: String,
    host_fingerprint: String,
    deploy_key: tau_node::patrick::deploy_key::DeployKey,
    webhook_secret: zeroize::Zeroizing<String>,
}

impl Register {
    /// The git host's key for `url`: from --known-hosts, or the key the host offers once its
    /// fingerprint is confirmed (--host-fingerprint, or a yes at the terminal).
    async fn pin(&self, url: &RepoUrl) -> anyhow::Result<host_key::Pinned> {
        if let Some(path) = &self.known_hosts {
            return Ok(host_key::from_known_hosts(path, url)?);
        }
        let offered = host_key::scan(url).await?;
        match &self.host_fingerprint {
            Some(expected) if *expected == offered.fingerprint => Ok(offered),
            Some(expected) => bail!(
                "{}:{} offers the key {}, not {expected} (--host-fingerprint): check the host \
                 before trusting it",
                url.host,
                url.port,
                offered.fingerprint
            ),
            None if std::io::stdin().is_terminal() => {
                eprint!(
                    "{}:{} offers the SSH host key {}.\nIs this your git host's key (compare it \
                     with what the host publishes)? [y/N] ",
                    url.host, url.port, offered.fingerprint
                );
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                if matches!(line.trim(), "y" | "Y" | "yes") {
                    Ok(offered)
                } else {
                    bail!("the git host's key was not confirmed: nothing registered")
                }
            }
            None => bail!(
                "{}:{} offers the SSH host key {}: pass --host-fingerprint {} once you checked \
                 it with the git host, or --known-hosts FILE",
                url.host,
                url.port,
                offered.fingerprint,
                offered.fingerprint
            ),
        }
    }

    /// Checks both repositories, pins their hosts, makes their keys and secrets.
    async fn repositories(&self, id: &str) -> anyhow::Result<Vec<NewRepo>> {
        let (Some(config), Some(code)) = (&self.config_repo, &self.code_repo) else {
            return Ok(Vec::new());
        };
        git::check_branch("--branch", &self.branch)?;
        let urls = [
            (RepoKind::Config, RepoUrl::parse("--config-repo", config)?),
            (RepoKind::Code, RepoUrl::parse("--code-repo", code)?),
        ];
        let mut pinned: Vec<((String, u16), host_key::Pinned)> = Vec::new();
        let mut repos = Vec::new();
        for (kind, url) in urls {
            let host = (url.host.clone(), url.port);
            let pin = match pinned.iter().find(|(h, _)| *h == host) {
                Some((_, pin)) => pin.clone(),
                None => {
                    let pin = self.pin(&url).await?;
                    pinned.push((host, pin.clone()));
                    pin
                }
            };
            let deploy_key = tau_node::patrick::deploy_key::generate(&format!("tau {id} {kind}"))
                .context("cannot make a deploy key")?;
            let repository = Repository {
                kind,
                url,
                branch: self.branch.clone(),
                host_key: pin.line.clone(),
                deploy_key: deploy_key.public.trim().to_string(),
            };
            repository.check()?;
            repos.push(NewRepo {
                repository,
                deploy_fingerprint: deploy_key.fingerprint.clone(),
                host_fingerprint: pin.fingerprint,
                deploy_key,
                webhook_secret: zeroize::Zeroizing::new(hex::encode(rand::random::<[u8; 32]>())),
            });
        }
        Ok(repos)
    }

    async fn run(self) -> anyhow::Result<()> {
        // Only the id: a git-operated project's sources are built by the cloud.
        let id = project::config_id(&self.dir)?;
        let owner = keyfile::read(&self.key)?;
        let writer = WriterKey::of(&owner).context("the key is not an ed25519 key")?;
        let repos = self.repositories(&id).await?;
        let names: Vec<(String, String)> = repos
            .iter()
            .flat_map(|r| {
                let kind = r.repository.kind;
                [(git::deploy_key_secret(kind), "deploy"), (git::webhook_secret(kind), "webhook")]
            })
            .map(|(name, what)| (name, what.to_string()))
            .collect();
        let mut secrets: Vec<(&str, &[u8])> = Vec::new();
        for (repo, pair) in repos.iter().zip(names.chunks(2)) {
            secrets.push((&pair[0].0, repo.deploy_key.private.as_bytes()));
            secrets.push((&pair[1].0, repo.webhook_secret.as_bytes()));
        }
        let client = output::connect(&self.cloud).await?;
        let registered = client
            .register_project(&id, &owner, &secrets)
            .await
            .with_context(|| format!("cannot register project `{id}`"))?;
        let mut written = registered.written.clone();
        let mut endpoint = None;
        if !repos.is_empty() {
            let node = tns_node(&client, None).await?;
            let mut drafts: Vec<Draft> = repos
                .iter()
                .map(|r| {
                    Ok(Draft {
                        key: git::key(&id, r.repository.kind),
                        scope: id.clone(),
                        value: Some(cbor::to_vec(&r.repository)?),
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            drafts.push(Draft {
                key: git::grants_key(&id),
                scope: id.clone(),
                value: Some(cbor::to_vec(&Grants::ci())?),
            });
            written.extend(drafts.iter().map(|d| d.key.clone()));
            put(&client, node, drafts, &owner)
                .await
                .context("the project is registered, but its repositories were not written")?;
            endpoint = webhook_endpoint(&client).await;
        }
        let hooks: Vec<serde_json::Value> = repos
            .iter()
            .map(|r| {
                let kind = r.repository.kind;
                serde_json::json!({
                    "kind": kind.as_str(),
                    "url": r.repository.url.to_string(),
                    "branch": r.repository.branch,
                    "host_key": r.repository.host_key,
                    "host_key_fingerprint": r.host_fingerprint,
                    "deploy_key": r.repository.deploy_key,
                    "deploy_key_fingerprint": r.deploy_fingerprint,
                    "webhook_url": endpoint.as_ref().map(|e: &String| format!("{e}/{id}/{kind}")),
                    "webhook_secret_name": git::webhook_secret(kind),
                })
            })
            .collect();
        if self.json {
            return output::print_json(&serde_json::json!({
                "project": registered.project,
                "owner": writer.to_string(),
                "node": registered.node.to_string(),
                "written": written,
                "repositories": hooks,
            }));
        }
        println!(
            "registered project {} with owner {writer} through vault node {}",
            registered.project, registered.node
        );
        for key in &written {
            println!("  {key}");
        }
        let cloud = self.cloud.display();
        let key = self.key.display();
        for r in &repos {
            let kind = r.repository.kind;
            println!();
            println!("{kind} repository {} (branch {})", r.repository.url, r.repository.branch);
            println!("  host key pinned: {}", r.host_fingerprint);
            println!("  add this deploy key to it, read-only:");
            println!("    {}", r.repository.deploy_key);
            match &endpoint {
                Some(url) => println!("  add a push webhook (JSON): {url}/{id}/{kind}"),
                None => println!(
                    "  add a push webhook (JSON): no ci node answered; `tau-node project status {id}` prints its URL once one runs"
                ),
            }
            println!(
                "  its secret: tau-node secret get {id} {} --cloud {cloud} --key {key}",
                git::webhook_secret(kind)
            );
        }
        Ok(())
    }
}

/// The webhook endpoint a `ci` node gives, if one answers.
async fn webhook_endpoint(client: &Client) -> Option<String> {
    for node in client.nodes_running("ci").await.ok()? {
        if let Ok(PatrickResponse::Endpoint { url }) =
            client.call::<PatrickProtocol>(node, PatrickRequest::Endpoint).await
        {
            return Some(url);
        }
    }
    None
}

impl Push {
    async fn run(self) -> anyhow::Result<()> {
        let compiled = project::compile(&self.dir)?;
        let owner = keyfile::read(&self.key)?;
        let writer = WriterKey::of(&owner).context("the key is not an ed25519 key")?;
        // As the owner's peer: the components it stores are pinned by the owner.
        let client = output::connect_as(&self.cloud, Some(owner.clone())).await?;
        let node = tns_node(&client, self.node).await?;

        match project_owner(&client, node, &compiled.id).await? {
            None => bail!(
                "project `{}` does not exist in this cloud: the operator creates it with\n  \
                 tau-node project create --id {} --owner {writer} --cloud ...",
                compiled.id,
                compiled.id
            ),
            Some(owner) if owner != writer => bail!(
                "project `{}` is owned by {}, not by the key in {} ({writer})",
                compiled.id,
                owner,
                self.key.display()
            ),
            Some(_) => {}
        }

        let mut current =
            client.tns_list(node, &format!("{}/", keys::project(&compiled.id)), true).await?;
        for prefix in ["/domains/", "/http/"] {
            let records = client.tns_list(node, prefix, true).await?;
            let claimed = |r: &Record| {
                r.scope == compiled.id || compiled.drafts.iter().any(|d| d.key == r.key)
            };
            current.extend(records.into_iter().filter(claimed));
        }
        let plan = project::plan(&compiled, &current, &writer)?;
        // The components go to hoarder first: a record never names a blob the cloud lacks.
        let mut stored = Vec::new();
        if !self.dry_run {
            let hoarders = hoarder_nodes(&client, None).await?;
            for (file, cid) in &compiled.sources {
                let (stored_cid, _, holders) = put_file(&client, &hoarders, file, DEFAULT_REPLICAS)
                    .await
                    .with_context(|| format!("cannot store {} in hoarder", file.display()))?;
                if stored_cid != *cid {
                    bail!("{} changed while it was being pushed", file.display());
                }
                stored.push((cid.to_string(), holders.len()));
            }
        }
        let report = Report {
            project: compiled.id.clone(),
            node: node.to_string(),
            written: plan.writes.iter().map(|d| d.key.clone()).collect(),
            deleted: plan.deletes.iter().map(|d| d.key.clone()).collect(),
            unchanged: plan.unchanged,
            dry_run: self.dry_run,
            components: stored,
        };
        if !self.dry_run && (!plan.writes.is_empty() || !plan.deletes.is_empty()) {
            put(&client, node, plan.drafts().cloned().collect(), &owner).await?;
        }
        if self.json {
            return output::print_json(&report);
        }
        for (cid, holders) in &report.components {
            println!("blob    {cid} (on {holders} nodes)");
        }
        for key in &report.written {
            println!("write   {key}");
        }
        for key in &report.deleted {
            println!("delete  {key}");
        }
        let verb = if self.dry_run { "would push" } else { "pushed" };
        println!(
            "{verb} project {} to {node}: {} written, {} deleted, {} unchanged",
            report.project,
            report.written.len(),
            report.deleted.len(),
            report.unchanged
        );
        Ok(())
    }
}

/// What `project status` reports.
#[derive(Debug, Serialize)]
struct StatusReport {
    project: String,
    owner: String,
    /// How its records are written: `git` (repositories) or `push` (`project push`).
    operated: &'static str,
    repositories: Vec<Repository>,
    /// `<endpoint>/<project>/<kind>` for each repository, when a ci node answered.
    webhooks: Vec<String>,
    functions: usize,
    /// Each branch and what it serves.
    serving: std::collections::BTreeMap<String, git::DeployedBranch>,
    /// Why it serves nothing, when it does not.
    why: Option<String>,
    /// The newest jobs first (at most 10).
    jobs: Vec<serde_json::Value>,
}

impl Status {
    async fn run(self) -> anyhow::Result<()> {
        if !keys::is_name(&self.id) {
            bail!("`{}` is not a project id", self.id);
        }
        let client = output::connect(&self.cloud).await?;
        let node = tns_node(&client, None).await?;
        let id = &self.id;
        let owner = project_owner(&client, node, id)
            .await?
            .with_context(|| format!("project `{id}` does not exist in this cloud"))?;
        let records = client.tns_list(node, &format!("{}/", keys::project(id)), false).await?;
        let value_of =
            |key: &str| records.iter().find(|r| r.key == key).and_then(|r| r.value.clone());
        let repositories: Vec<Repository> = RepoKind::ALL
            .iter()
            .filter_map(|&kind| value_of(&git::key(id, kind)))
            .filter_map(|v| cbor::from_slice(&v).ok())
            .collect();
        let functions = records.iter().filter(|r| r.key.contains("/functions/")).count();
        let serving = value_of(&git::deployed_key(id))
            .and_then(|v| cbor::from_slice::<git::Deployed>(&v).ok())
            .unwrap_or_default()
            .branches;
        let mut jobs: Vec<git::Job> = client
            .tns_list(node, &format!("{}{id}/", git::JOBS), false)
            .await?
            .into_iter()
            .filter_map(|r| cbor::from_slice(r.value.as_deref()?).ok())
            .collect();
        jobs.sort_by_key(|j| std::cmp::Reverse(j.queued_at));
        jobs.truncate(10);
        let git_operated = !repositories.is_empty();
        let why = match (git_operated, serving.is_empty(), jobs.first()) {
            (false, _, _) if functions == 0 => {
                Some("nothing was pushed (`tau-node project push`)".to_string())
            }
            (true, true, None) => Some(format!(
                "no push has reached the cloud yet: push to branch {} of a repository, or check \
                 its webhook (URL and secret)",
                repositories[0].branch
            )),
            (true, true, Some(last)) => Some(format!(
                "no job has deployed it yet; the newest, {} ({}), is {}{}",
                last.commit.chars().take(12).collect::<String>(),
                last.repo,
                last.state.name(),
                match &last.state {
                    git::JobState::Failed(f) => format!(": {}", f.summary),
                    git::JobState::Skipped { reason } => format!(": {reason}"),
                    _ => String::new(),
                }
            )),
            _ => None,
        };
        let webhooks = match git_operated {
            true => match webhook_endpoint(&client).await {
                Some(url) => {
                    repositories.iter().map(|r| format!("{url}/{id}/{}", r.kind)).collect()
                }
                None => Vec::new(),
            },
            false => Vec::new(),
        };
        let report = StatusReport {
            project: id.clone(),
            owner: owner.to_string(),
            operated: if git_operated { "git" } else { "push" },
            repositories,
            webhooks,
            functions,
            serving,
            why,
            jobs: jobs
                .iter()
                .map(|j| {
                    serde_json::json!({
                        "commit": j.commit,
                        "repo": j.repo,
                        "branch": j.branch,
                        "state": j.state.name(),
                    })
                })
                .collect(),
        };
        if self.json {
            return output::print_json(&report);
        }
        println!(
            "project {} (owner {}), {} function records",
            report.project, report.owner, report.functions
        );
        for repo in &report.repositories {
            println!("  {} repository {} (branch {})", repo.kind, repo.url, repo.branch);
        }
        for url in &report.webhooks {
            println!("  webhook {url}");
        }
        for (branch, deployed) in &report.serving {
            println!(
                "  serving {branch}: config {}, code {} (job {})",
                deployed.config_commit.chars().take(12).collect::<String>(),
                deployed.code_commit.chars().take(12).collect::<String>(),
                deployed.job
            );
        }
        if let Some(why) = &report.why {
            println!("  serves nothing: {why}");
        }
        for job in &jobs {
            println!(
                "  job {} {} {} {}",
                job.commit.chars().take(12).collect::<String>(),
                job.repo,
                job.branch,
                job.state.name()
            );
        }
        Ok(())
    }
}
