//! A project folder into TNS drafts.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tau_proto::cbor;
use tau_proto::database::{DEFAULT_REPLICAS, MAX_REPLICAS};
use tau_proto::hoarder::BlobId;
use tau_proto::outbound;
use tau_proto::tns::Draft;
use tau_proto::tns::keys::{self, is_fqdn, is_name};
use tau_proto::tns::values::{
    BranchNodes, Database, DomainClaim, Execution, Function, ProjectConfig, Route, Source, Storage,
    Trigger, TriggerKind,
};
use tau_proto::yaml::{self, YamlError};

use super::spec::{ConfigFile, DatabaseFile, FunctionFile, StorageFile, TriggerType};

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
const MAX_TIMEOUT: Duration = Duration::from_millis(Execution::MAX_TIMEOUT_MS);
const MAX_MEMORY: u64 = Execution::MAX_MEMORY;

/// A project folder as TNS records, ready to sign and push.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// From `config.yaml`'s `id`.
    pub id: String,
    /// Every record the folder describes, sorted by key.
    pub drafts: Vec<Draft>,
    /// The components the functions name, to store in hoarder before the records are written.
    pub sources: Vec<(PathBuf, BlobId)>,
    /// The branches `config.yaml` maps to nodes: their records are kept by a plan.
    pub branches: Vec<String>,
}

impl Compiled {
    /// The functions only, as `branch`'s version (`/projects/<id>/branches/<branch>/functions/*`):
    /// what a push to a mapped branch writes. Its domains and routes are the deployed branch's.
    pub fn for_branch(&self, branch: &str) -> Compiled {
        let prefix = format!("{}/functions/", keys::project(&self.id));
        let drafts = self
            .drafts
            .iter()
            .filter_map(|draft| {
                let name = draft.key.strip_prefix(&prefix)?;
                Some(Draft { key: keys::branch_function(&self.id, branch, name), ..draft.clone() })
            })
            .collect();
        Compiled {
            id: self.id.clone(),
            drafts,
            sources: self.sources.clone(),
            branches: Vec::new(),
        }
    }
}

/// The project id `dir/config.yaml` names, checked; nothing else of the folder is read.
pub fn config_id(dir: &Path) -> Result<String, YamlError> {
    read_config(dir).map(|config| config.id)
}

/// `dir/config.yaml`, its id checked.
fn read_config(dir: &Path) -> Result<ConfigFile, YamlError> {
    let config_path = dir.join("config.yaml");
    let config: ConfigFile = yaml::load(&config_path)?;
    if !is_name(&config.id) {
        return Err(YamlError::invalid(
            &config_path,
            "id",
            "1-63 of a-z, 0-9 and -, not starting or ending with -",
        ));
    }
    Ok(config)
}

/// Reads and checks a project folder; any error names the file and the field, and nothing is
/// produced unless everything is right. A function's `source` is a file in the folder.
pub fn compile(dir: &Path) -> Result<Compiled, YamlError> {
    compile_with(dir, &|source| dir.join(source))
}

/// [`compile`], with each function's `source` (already checked to be a relative path without
/// `..`) found where `resolve` says: a monkey finds it in the code repository, or among what
/// the repository's build made.
pub fn compile_with(dir: &Path, resolve: &dyn Fn(&str) -> PathBuf) -> Result<Compiled, YamlError> {
    let config = read_config(dir)?;
    let id = config.id.clone();
    let branches = check_branches(&dir.join("config.yaml"), &config)?;
    let mut drafts: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    drafts.insert(
        keys::project_config(&id),
        encode(&ProjectConfig {
            name: config.name,
            description: config.description,
            branches: branches.clone(),
        }),
    );

    let mut sources: Vec<(PathBuf, BlobId)> = Vec::new();
    let mut routes: HashMap<String, PathBuf> = HashMap::new();
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    for path in function_files(dir)? {
        let spec: FunctionFile = yaml::load(&path)?;
        let function = check_function(resolve, &path, spec)?;
        let source = (resolve(&function.source.file), function.source.cid);
        if !sources.contains(&source) {
            sources.push(source);
        }
        if let Some(other) = names.insert(function.name.clone(), path.clone()) {
            return Err(YamlError::invalid(
                &path,
                "id",
                format!("function `{}` is also defined in {}", function.name, other.display()),
            ));
        }
        for domain in &function.domains {
            drafts.insert(keys::domain(domain), encode(&DomainClaim { project: id.clone() }));
            for (i, p) in function.trigger.paths.iter().enumerate() {
                let route = keys::route(domain, &function.trigger.method, p);
                if let Some(other) = routes.insert(route.clone(), path.clone()) {
                    return Err(YamlError::invalid(
                        &path,
                        format!("trigger.paths[{i}]"),
                        format!(
                            "{} {domain}{p} is also served by {}",
                            function.trigger.method,
                            other.display()
                        ),
                    ));
                }
                drafts.insert(
                    route,
                    encode(&Route { project: id.clone(), function: function.name.clone() }),
                );
            }
        }
        drafts.insert(keys::function(&id, &function.name), encode(&function));
    }
    for path in yaml_files(dir, "databases")? {
        let database = check_database(&path, yaml::load(&path)?, &names)?;
        if drafts.insert(keys::database(&id, &database.name), encode(&database)).is_some() {
            return Err(YamlError::invalid(
                &path,
                "id",
                format!("database `{}` is also defined in another file", database.name),
            ));
        }
    }
    for path in yaml_files(dir, "storages")? {
        let storage = check_storage(&path, yaml::load(&path)?, &names)?;
        if drafts.insert(keys::storage(&id, &storage.name), encode(&storage)).is_some() {
            return Err(YamlError::invalid(
                &path,
                "id",
                format!("storage `{}` is also defined in another file", storage.name),
            ));
        }
    }
    let drafts = drafts
        .into_iter()
        .map(|(key, value)| Draft { key, scope: id.clone(), value: Some(value) })
        .collect();
    Ok(Compiled { id, drafts, sources, branches: branches.into_keys().collect() })
}

/// The most branches a project maps to nodes, and regions a branch names.
const MAX_BRANCHES: usize = 16;
const MAX_REGIONS: usize = 64;

/// `config.yaml`'s `branches:`, checked: each a name (so it can be a key's segment) naming one
/// or more regions.
fn check_branches(
    path: &Path,
    config: &ConfigFile,
) -> Result<BTreeMap<String, BranchNodes>, YamlError> {
    if config.branches.len() > MAX_BRANCHES {
        return Err(YamlError::invalid(
            path,
            "branches",
            format!("at most {MAX_BRANCHES} branches may be mapped to nodes"),
        ));
    }
    let mut branches = BTreeMap::new();
    for (name, spec) in &config.branches {
        let field = format!("branches.{name}");
        if !is_name(name) {
            return Err(YamlError::invalid(
                path,
                &field,
                "a mapped branch's name is 1-63 of a-z, 0-9 and -, not starting or ending with -",
            ));
        }
        if spec.regions.is_empty() || spec.regions.len() > MAX_REGIONS {
            return Err(YamlError::invalid(
                path,
                format!("{field}.regions"),
                format!("1 to {MAX_REGIONS} regions are needed"),
            ));
        }
        for (i, region) in spec.regions.iter().enumerate() {
            if region.trim().is_empty() || region.len() > 63 {
                return Err(YamlError::invalid(
                    path,
                    format!("{field}.regions[{i}]"),
                    "a region is 1-63 characters",
                ));
            }
        }
        branches.insert(name.clone(), BranchNodes { regions: spec.regions.clone() });
    }
    Ok(branches)
}

/// The CBOR of a value.
fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    cbor::to_vec(value).expect("plain structs of strings and numbers always encode")
}

/// `functions/*.yaml`, sorted (a project may have none).
fn function_files(dir: &Path) -> Result<Vec<PathBuf>, YamlError> {
    yaml_files(dir, "functions")
}

/// `<folder>/*.yaml`, sorted (a project may have none).
fn yaml_files(dir: &Path, folder: &str) -> Result<Vec<PathBuf>, YamlError> {
    let found = dir.join(folder);
    if !found.exists() {
        return Ok(Vec::new());
    }
    let read_err = |source| YamlError::Read { path: found.display().to_string(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&found).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The checks a database and a storage file share: its id, its functions among the project's
/// (`names`), and its size (at most `max`, named `max_text`); the size in bytes.
fn check_resource(
    path: &Path,
    id: &str,
    functions: &[String],
    size: &str,
    names: &HashMap<String, PathBuf>,
    (max, max_text): (u64, &str),
) -> Result<u64, YamlError> {
    let invalid = |field: &str, message: String| YamlError::invalid(path, field, message);
    if !is_name(id) {
        return Err(invalid("id", "1-63 of a-z, 0-9 and -, not starting or ending with -".into()));
    }
    if functions.is_empty() {
        return Err(invalid("functions", "name the functions that may open it".into()));
    }
    for (i, function) in functions.iter().enumerate() {
        if !names.contains_key(function) {
            return Err(invalid(
                &format!("functions[{i}]"),
                format!("the project has no function `{function}`"),
            ));
        }
    }
    let bytes = size
        .parse::<bytesize::ByteSize>()
        .map_err(|e| invalid("size", format!("`{size}` is not a size (like 64MB): {e}")))?
        .as_u64();
    if bytes == 0 || bytes > max {
        return Err(invalid("size", format!("must be more than 0 and at most {max_text}")));
    }
    Ok(bytes)
}

/// A storage file, its functions among the project's (`names`).
fn check_storage(
    path: &Path,
    spec: StorageFile,
    names: &HashMap<String, PathBuf>,
) -> Result<Storage, YamlError> {
    let limit = (Storage::MAX_BYTES, "64GiB");
    let size = check_resource(path, &spec.id, &spec.functions, &spec.size, names, limit)?;
    Ok(Storage { name: spec.id, functions: spec.functions, max_bytes: size })
}

/// A database file, its functions among the project's (`names`).
fn check_database(
    path: &Path,
    spec: DatabaseFile,
    names: &HashMap<String, PathBuf>,
) -> Result<Database, YamlError> {
    let invalid = |field: &str, message: String| YamlError::invalid(path, field, message);
    let limit = (Database::MAX_BYTES, "1GiB");
    let size = check_resource(path, &spec.id, &spec.functions, &spec.size, names, limit)?;
    let replicas = spec.replicas.unwrap_or(DEFAULT_REPLICAS);
    if !(1..=MAX_REPLICAS).contains(&replicas) {
        return Err(invalid("replicas", format!("must be 1 to {MAX_REPLICAS}, not {replicas}")));
    }
    Ok(Database { name: spec.id, functions: spec.functions, max_bytes: size, replicas })
}

fn check_function(
    resolve: &dyn Fn(&str) -> PathBuf,
    path: &Path,
    spec: FunctionFile,
) -> Result<Function, YamlError> {
    let invalid = |field: &str, message: String| YamlError::invalid(path, field, message);
    if !is_name(&spec.id) {
        return Err(invalid("id", "1-63 of a-z, 0-9 and -, not starting or ending with -".into()));
    }
    let method = spec.trigger.method.to_ascii_uppercase();
    if !METHODS.contains(&method.as_str()) {
        return Err(invalid(
            "trigger.method",
            format!("`{}` is not one of {}", spec.trigger.method, METHODS.join(", ")),
        ));
    }
    if spec.trigger.paths.is_empty() {
        return Err(invalid("trigger.paths", "at least one path is needed".into()));
    }
    for (i, p) in spec.trigger.paths.iter().enumerate() {
        if !p.starts_with('/') || !p.bytes().all(|b| b.is_ascii_graphic()) || p.contains("//") {
            return Err(invalid(
                &format!("trigger.paths[{i}]"),
                format!("`{p}` must start with / and have no spaces"),
            ));
        }
    }
    if spec.domains.is_empty() {
        return Err(invalid("domains", "at least one domain is needed".into()));
    }
    let mut domains = Vec::new();
    for (i, d) in spec.domains.iter().enumerate() {
        if !is_fqdn(d) {
            return Err(invalid(&format!("domains[{i}]"), format!("`{d}` is not a domain name")));
        }
        if keys::is_ip_literal(d) {
            return Err(invalid(
                &format!("domains[{i}]"),
                format!("`{d}` is an IP address: a function answers on domain names only"),
            ));
        }
        domains.push(d.to_ascii_lowercase());
    }
    let timeout = humantime::parse_duration(&spec.execution.timeout).map_err(|e| {
        invalid(
            "execution.timeout",
            format!("`{}` is not a duration (like 10s or 500ms): {e}", spec.execution.timeout),
        )
    })?;
    if timeout.is_zero() || timeout > MAX_TIMEOUT {
        return Err(invalid("execution.timeout", "must be more than 0 and at most 15m".into()));
    }
    let memory = spec
        .execution
        .memory
        .parse::<bytesize::ByteSize>()
        .map_err(|e| {
            invalid(
                "execution.memory",
                format!("`{}` is not a size (like 64MB or 128MiB): {e}", spec.execution.memory),
            )
        })?
        .as_u64();
    if memory == 0 || memory > MAX_MEMORY {
        return Err(invalid("execution.memory", "must be more than 0 and at most 4GiB".into()));
    }
    if spec.source.is_empty() || Path::new(&spec.source).is_absolute() || spec.source.contains("..")
    {
        return Err(invalid(
            "source",
            format!("`{}` must be a path inside the project folder", spec.source),
        ));
    }
    let source_path = resolve(&spec.source);
    if source_path.is_dir() {
        return Err(invalid(
            "source",
            format!("{} is a folder: name the built .wasm file", source_path.display()),
        ));
    }
    let bytes = std::fs::read(&source_path)
        .map_err(|e| invalid("source", format!("cannot read {}: {e}", source_path.display())))?;
    crate::substrate::check_component(&bytes)
        .map_err(|e| invalid("source", format!("{}: {e}", source_path.display())))?;
    if spec.allowed_outbound_hosts.len() > outbound::MAX_HOSTS {
        return Err(invalid(
            "allowed_outbound_hosts",
            format!("at most {} hosts", outbound::MAX_HOSTS),
        ));
    }
    let mut allowed_outbound_hosts = Vec::new();
    for (i, host) in spec.allowed_outbound_hosts.iter().enumerate() {
        let pattern = outbound::HostPattern::parse(host)
            .map_err(|e| invalid(&format!("allowed_outbound_hosts[{i}]"), e))?;
        allowed_outbound_hosts.push(pattern.to_string());
    }
    if spec.variables.len() > Function::MAX_VARIABLES {
        return Err(invalid("variables", format!("at most {} variables", Function::MAX_VARIABLES)));
    }
    for (name, value) in &spec.variables {
        if !Function::is_variable_name(name) {
            return Err(invalid(
                &format!("variables.{name}"),
                "a variable's name is 1-64 of a-z, 0-9 and _, starting with a letter".into(),
            ));
        }
        if value.len() > Function::MAX_VARIABLE_VALUE {
            return Err(invalid(
                &format!("variables.{name}"),
                format!("longer than {} bytes", Function::MAX_VARIABLE_VALUE),
            ));
        }
    }
    Ok(Function {
        name: spec.id,
        description: spec.description,
        trigger: Trigger {
            kind: match spec.trigger.kind {
                TriggerType::Http => TriggerKind::Http,
                TriggerType::Https => TriggerKind::Https,
            },
            method,
            paths: spec.trigger.paths,
        },
        domains,
        source: Source { file: spec.source, cid: BlobId::of(&bytes), size: bytes.len() as u64 },
        execution: Execution {
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            memory_bytes: memory,
            call: spec.execution.call,
        },
        allowed_outbound_hosts,
        variables: spec.variables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid component: the magic bytes and the component layer's version.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    const PING: &str = "id: ping\ntrigger: {type: http, method: get, paths: [/ping]}\n\
                        domains: [ping.example.tau]\nsource: ping.wasm\n\
                        execution: {timeout: 5s, memory: 32MB}\n";

    /// A project folder with `files` (relative path, contents) and a `ping.wasm`.
    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("functions")).unwrap();
        std::fs::write(dir.path().join("ping.wasm"), EMPTY_COMPONENT).unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn compiles_a_project_into_sorted_drafts() {
        let dir =
            folder(&[("config.yaml", "id: shop\nname: Shop\n"), ("functions/ping.yaml", PING)]);
        let compiled = compile(dir.path()).unwrap();
        let keys: Vec<&str> = compiled.drafts.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "/domains/ping.example.tau",
                "/http/ping.example.tau/GET/ping",
                "/projects/shop/config",
                "/projects/shop/functions/ping"
            ]
        );
        assert!(compiled.drafts.iter().all(|d| d.scope == "shop"));
        let function: Function =
            cbor::from_slice(compiled.drafts[3].value.as_ref().unwrap()).unwrap();
        assert_eq!(
            function.execution,
            Execution { timeout_ms: 5_000, memory_bytes: 32_000_000, call: None }
        );
        assert_eq!(function.trigger.method, "GET");
        assert_eq!(function.source.size, 8);
        assert_eq!(function.source.cid, BlobId::of(EMPTY_COMPONENT));
        assert_eq!(compiled.sources, vec![(dir.path().join("ping.wasm"), function.source.cid)]);
        // Compiling again gives the same bytes: pushes compare by value.
        assert_eq!(compile(dir.path()).unwrap().drafts, compiled.drafts);
    }

    /// The error of a broken project: it must name `file` and contain `expected`.
    fn error_of(files: &[(&str, &str)], file: &str, expected: &str) {
        let dir = folder(files);
        let err = compile(dir.path()).expect_err("the project is broken").to_string();
        let path = dir.path().join(file).display().to_string();
        assert!(err.starts_with(&path), "{err}\nshould name {path}");
        assert!(err.contains(expected), "{err}\nshould contain {expected}");
    }

    #[test]
    fn every_kind_of_mistake_names_the_file_and_field() {
        let config = ("config.yaml", "id: shop\n");
        error_of(&[("config.yaml", "id: [\n")], "config.yaml", "");
        error_of(&[("config.yaml", "id: Shop!\n")], "config.yaml", "field `id`");
        error_of(
            &[("config.yaml", "id: shop\nowner: me\n")],
            "config.yaml",
            "unknown field `owner`",
        );
        error_of(
            &[config, ("functions/ping.yaml", "id: ping\ntrigger: [\n")],
            "functions/ping.yaml",
            "",
        );
        let cases = [
            ("type: http", "type: ftp", "field `trigger.type`: unknown variant `ftp`"),
            (
                "timeout: 5s",
                "timeout: 5 parsecs",
                "field `execution.timeout`: `5 parsecs` is not a duration",
            ),
            ("timeout: 5s", "timeout: 0s", "field `execution.timeout`: must be more than 0"),
            ("memory: 32MB", "memory: lots", "field `execution.memory`: `lots` is not a size"),
            ("source: ping.wasm", "source: missing.wasm", "field `source`: cannot read"),
            ("source: ping.wasm", "source: ../ping.wasm", "field `source`"),
            ("method: get", "method: FETCH", "field `trigger.method`"),
            ("paths: [/ping]", "paths: [ping]", "field `trigger.paths[0]`"),
            ("domains: [ping.example.tau]", "domains: [localhost]", "field `domains[0]`"),
            ("id: ping", "id: ping\ncolour: red", "unknown field `colour`"),
            (
                "source: ping.wasm",
                "source: ping.wasm\nallowed_outbound_hosts: [api.example.com]",
                "field `allowed_outbound_hosts[0]`: `api.example.com` must start with",
            ),
            (
                "source: ping.wasm",
                "source: ping.wasm\nvariables: {Greeting: hi}",
                "field `variables.Greeting`",
            ),
        ];
        for (from, to, expected) in cases {
            error_of(
                &[config, ("functions/ping.yaml", &PING.replace(from, to))],
                "functions/ping.yaml",
                expected,
            );
        }
    }

    #[test]
    fn mapped_branches_are_checked_and_a_branch_version_holds_only_functions() {
        let config = "id: shop\nbranches:\n  staging: {regions: [eu-west, lab]}\n";
        let dir = folder(&[("config.yaml", config), ("functions/ping.yaml", PING)]);
        let compiled = compile(dir.path()).unwrap();
        assert_eq!(compiled.branches, ["staging"]);
        let project: ProjectConfig =
            cbor::from_slice(compiled.drafts[2].value.as_ref().unwrap()).unwrap();
        assert_eq!(project.branch_for(Some("lab")), Some("staging"));
        assert_eq!(project.branch_for(Some("us-east")), None);
        assert_eq!(project.branch_for(None), None);
        let staging = compiled.for_branch("staging");
        let keys: Vec<&str> = staging.drafts.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["/projects/shop/branches/staging/functions/ping"]);
        assert_eq!(staging.drafts[0].value, compiled.drafts[3].value);
        assert_eq!(staging.sources, compiled.sources);
        assert!(staging.branches.is_empty());

        let cases = [
            ("  Staging: {regions: [a]}", "field `branches.Staging`"),
            ("  feature/x: {regions: [a]}", "field `branches.feature/x`"),
            ("  staging: {regions: []}", "field `branches.staging.regions`"),
            ("  staging: {regions: [\"\"]}", "field `branches.staging.regions[0]`"),
            ("  staging: {regions: [a], labels: [b]}", "unknown field `labels`"),
        ];
        for (branch, expected) in cases {
            let config = format!("id: shop\nbranches:\n{branch}\n");
            error_of(&[("config.yaml", &config)], "config.yaml", expected);
        }
    }

    #[test]
    fn databases_name_the_projects_functions_and_a_size() {
        let notes = "id: notes\nfunctions: [ping]\nsize: 64MB\n";
        let dir = folder(&[
            ("config.yaml", "id: shop\n"),
            ("functions/ping.yaml", PING),
            ("databases/notes.yaml", notes),
        ]);
        let compiled = compile(dir.path()).unwrap();
        let draft = compiled.drafts.iter().find(|d| d.key == "/projects/shop/databases/notes");
        let database: Database = cbor::from_slice(draft.unwrap().value.as_ref().unwrap()).unwrap();
        assert_eq!(
            database,
            Database {
                name: "notes".into(),
                functions: vec!["ping".into()],
                max_bytes: 64_000_000,
                replicas: 3,
            }
        );
        let cases = [
            ("functions: [ping]", "functions: [pong]", "field `functions[0]`: the project has no"),
            ("functions: [ping]", "functions: []", "field `functions`"),
            ("size: 64MB", "size: 2GiB", "field `size`: must be more than 0 and at most 1GiB"),
            ("size: 64MB", "size: lots", "field `size`: `lots` is not a size"),
            ("id: notes", "id: Notes", "field `id`"),
            ("size: 64MB", "size: 64MB\nreplicas: 17", "field `replicas`: must be 1 to 16"),
            ("size: 64MB", "size: 64MB\ncopies: 2", "unknown field `copies`"),
        ];
        for (from, to, expected) in cases {
            error_of(
                &[
                    ("config.yaml", "id: shop\n"),
                    ("functions/ping.yaml", PING),
                    ("databases/notes.yaml", &notes.replace(from, to)),
                ],
                "databases/notes.yaml",
                expected,
            );
        }
    }

    #[test]
    fn storages_name_the_projects_functions_and_a_size() {
        let files = "id: files\nfunctions: [ping]\nsize: 10GB\n";
        let dir = folder(&[
            ("config.yaml", "id: shop\n"),
            ("functions/ping.yaml", PING),
            ("storages/files.yaml", files),
        ]);
        let compiled = compile(dir.path()).unwrap();
        let draft = compiled.drafts.iter().find(|d| d.key == "/projects/shop/storages/files");
        let storage: Storage = cbor::from_slice(draft.unwrap().value.as_ref().unwrap()).unwrap();
        let functions = vec!["ping".to_string()];
        assert_eq!(storage, Storage { name: "files".into(), functions, max_bytes: 10_000_000_000 });
        let cases = [
            ("functions: [ping]", "functions: [pong]", "field `functions[0]`: the project has no"),
            ("size: 10GB", "size: 65GiB", "field `size`: must be more than 0 and at most 64GiB"),
            ("id: files", "id: Files", "field `id`"),
            ("size: 10GB", "size: 10GB\nreplicas: 2", "unknown field `replicas`"),
        ];
        for (from, to, expected) in cases {
            error_of(
                &[
                    ("config.yaml", "id: shop\n"),
                    ("functions/ping.yaml", PING),
                    ("storages/files.yaml", &files.replace(from, to)),
                ],
                "storages/files.yaml",
                expected,
            );
        }
    }

    #[test]
    fn a_source_that_is_not_a_component_is_refused_at_push() {
        let config = ("config.yaml", "id: shop\n");
        let cases: [(&[u8], &str); 4] = [
            (b"MZ\x90\0 an executable", "does not start with the wasm magic bytes"),
            (b"\0asm\x01\0\0\0", "a core module, not a component: build it for wasm32-wasip2"),
            (b"\0asm\x0d\0\x01\0\x07\x05garbage", "not a valid WebAssembly component"),
            (b"\0asm\x0d\0\x01", "not a valid WebAssembly component"),
        ];
        for (bytes, expected) in cases {
            let dir = folder(&[config, ("functions/ping.yaml", PING)]);
            std::fs::write(dir.path().join("ping.wasm"), bytes).unwrap();
            let e = compile(dir.path()).unwrap_err().to_string();
            assert!(e.contains("functions/ping.yaml") && e.contains("field `source`"), "{e}");
            assert!(e.contains("ping.wasm") && e.contains(expected), "{e}");
        }
    }

    #[test]
    fn two_functions_on_one_route_are_refused() {
        let other = PING.replace("id: ping", "id: pong");
        error_of(
            &[
                ("config.yaml", "id: shop\n"),
                ("functions/ping.yaml", PING),
                ("functions/pong.yaml", &other),
            ],
            "functions/pong.yaml",
            "field `trigger.paths[0]`: GET ping.example.tau/ping is also served by",
        );
        error_of(
            &[
                ("config.yaml", "id: shop\n"),
                ("functions/a.yaml", PING),
                ("functions/b.yaml", PING),
            ],
            "functions/b.yaml",
            "field `id`: function `ping` is also defined in",
        );
    }
}
