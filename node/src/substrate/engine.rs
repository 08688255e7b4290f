//! The wasmtime facade: the one place in the node that configures and calls wasmtime.
//!
//! - One [`Engine`] per node, with two compilers: Winch (baseline, compiles several times faster)
//!   for a component's first requests, and Cranelift (optimizing) for good. Each has the pooling
//!   allocator sized by `substrate.max_instances`; one ticker thread drives both epochs.
//! - [`Engine::load_cached`], [`Engine::compile_baseline`] and [`Engine::compile`] turn a
//!   function's `.wasm` into a pre-linked [`Ready`] component. Cranelift's artifacts are cached on
//!   disk (keyed by the component's CID and the engine's compatibility hash, written only by this
//!   node, checked by hash before they are loaded).
//! - [`Engine::invoke`] runs one request in a fresh instance, with the function's memory limit
//!   and deadline, and reports what it cost.
//!
//! Every component is linked with the whole of WASI 0.2 and `wasi:http`, so components written
//! for other `wasi:http` hosts run unchanged; but the context grants nothing: no preopened
//! folders, no environment, no sockets, no name lookups, and outgoing HTTP requests are refused.

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tau_proto::hoarder::BlobId;
use tokio::sync::oneshot;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine as WasmEngine, InstanceAllocationStrategy, PoolingAllocationConfig,
    ResourceLimiter, Store, Strategy, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// How often the epoch ticks: the granularity of deadlines, and how often a busy guest yields.
const TICK: Duration = Duration::from_millis(2);
/// The largest memory a function may ask for (functions are capped at 4 GiB when pushed).
const MAX_MEMORY: u64 = 4 << 30;
/// Table elements one instance may have.
const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Memory (per linear memory, table and stack) reset with memset rather than given back to the
/// kernel when an instance ends. With the kernel's PAGEMAP_SCAN (Linux 6.7+) only the pages an
/// instance touched are reset, so the bound can be generous; without it the lowest bytes are
/// reset whether touched or not, so it stays small.
fn keep_resident() -> usize {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok());
    let version: (u32, u32) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    if version >= (6, 7) { 2 << 20 } else { 64 << 10 }
}
/// Freed slots whose pages are given back together, in one batch.
const DECOMMIT_BATCH: usize = 32;
/// The header of a cached artifact: its BLAKE3 hash, checked before wasmtime sees it.
const HASH_LEN: usize = 32;

/// Why a component could not be made ready.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a valid WebAssembly component.
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    /// The component needs something the `wasi:http/proxy` host does not give.
    #[error("the component cannot be linked: {0}")]
    Link(String),
    /// The cache folder failed.
    #[error("{0}")]
    Io(String),
}

/// Why a cached artifact is not loaded (it is recompiled instead).
#[derive(Debug, thiserror::Error)]
enum ArtifactError {
    #[error("too short")]
    Short,
    #[error("its hash does not match (a torn or altered file)")]
    Hash,
    #[error("wasmtime refused it: {0}")]
    Refused(String),
}

/// Why an invocation could not start (the request could not be handed to the guest).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvokeError(String);

/// How one invocation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// It ran past its deadline.
    Timeout(Duration),
    /// It asked for more memory than its limit.
    OutOfMemory(u64),
    /// It trapped (a panic, an unreachable, a bad memory access).
    Trap(String),
    /// It returned without setting a response.
    NoResponse,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Timeout(limit) => {
                write!(
                    f,
                    "the function ran past its timeout of {}",
                    humantime::format_duration(*limit)
                )
            }
            Self::OutOfMemory(limit) => write!(
                f,
                "the function needed more than its memory limit of {}",
                bytesize::ByteSize::b(*limit).display().si()
            ),
            Self::Trap(reason) => write!(f, "the function failed: {reason}"),
            Self::NoResponse => write!(f, "the function returned without a response"),
        }
    }
}

/// What one invocation cost and how it ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Why it failed, if it did.
    pub failure: Option<Failure>,
    /// From instantiation to the end of the handler.
    pub wall: Duration,
    /// CPU time of the task that ran it.
    pub cpu: Duration,
    /// The largest linear memory it had, bytes.
    pub peak_memory: u64,
    /// What it did with key-value stores.
    pub kv: super::keyvalue::KvUse,
    /// Its outgoing HTTP: requests started, bytes sent, bytes received (on the wire).
    pub outbound: (u64, u64, u64),
    /// Bytes it read from blobs.
    pub blob_bytes: u64,
    /// Bytes it put into storages.
    pub stored_bytes: u64,
}

/// A function's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Its deadline.
    pub timeout: Duration,
    /// Its memory limit, bytes.
    pub memory: u64,
}

/// What a function's instances are given besides its limits: its variables (`wasi:config`)
/// and the outgoing requests it may make.
#[derive(Default)]
pub struct Capabilities {
    /// Its variables.
    pub variables: WasiConfigVariables,
    /// Where it may send HTTP requests.
    pub outbound: Arc<super::outbound::Allowed>,
    /// The key-value stores it may open.
    pub stores: super::keyvalue::Stores,
    /// The storages it may open.
    pub storages: super::storage::Storages,
    /// Where it reads blobs by CID from (and spools storage puts).
    pub blobs: Option<super::blobs::BlobSource>,
}

/// A compiled, pre-linked component, ready to instantiate per request.
pub struct Ready {
    pre: ProxyPre<State>,
    /// Which compiler made it.
    pub compiler: Compiler,
    /// Whether the compiled artifact came from this node's disk cache.
    pub from_cache: bool,
}

/// A running invocation: the response (when the guest sets one) and the end of the task.
pub struct Invocation {
    /// The guest's response, or an error code it gave instead; closed if it never set one.
    pub response: oneshot::Receiver<Result<hyper::Response<HyperOutgoingBody>, ErrorCode>>,
    /// How the invocation ended.
    pub done: tokio::task::JoinHandle<Outcome>,
}

/// One compiler's engine and the linker over it.
struct Tier {
    engine: WasmEngine,
    linker: Linker<State>,
}

impl Tier {
    fn new(strategy: Strategy, max_instances: u32) -> Result<Self, LoadError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(max_instances)
            .total_core_instances(max_instances * 4)
            .total_memories(max_instances * 2)
            .total_tables(max_instances * 4)
            .total_stacks(max_instances)
            .max_memory_size(MAX_MEMORY as usize)
            .table_elements(MAX_TABLE_ELEMENTS)
            // Reset a freed instance's pages with memset (only the pages it touched, where the
            // kernel can say which) instead of madvise, which costs a TLB shootdown now and page
            // faults on the next request; batch the madvise calls that remain.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(keep_resident())
            .table_keep_resident(keep_resident())
            .async_stack_keep_resident(keep_resident())
            .decommit_batch_size(DECOMMIT_BATCH);
        let mut config = Config::new();
        config
            .strategy(strategy)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = WasmEngine::new(&config).map_err(|e| LoadError::Io(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .and_then(|()| {
                wasmtime_wasi_config::add_to_linker(&mut linker, |state: &mut State| {
                    WasiConfig::from(&state.capabilities.variables)
                })
            })
            .and_then(|()| super::keyvalue::add_to_linker(&mut linker, State::kv))
            .and_then(|()| super::blobs::add_to_linker(&mut linker, State::blobs))
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        Ok(Self { engine, linker })
    }

    fn prepare(&self, component: &Component) -> Result<ProxyPre<State>, LoadError> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        ProxyPre::new(pre).map_err(|e| {
            LoadError::Link(format!("it does not export wasi:http/incoming-handler: {e:#}"))
        })
    }
}

/// Which compiler made a [`Ready`] component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compiler {
    /// Winch, the baseline compiler: compiles several times faster, runs slower. A component's
    /// first requests on a node run on it while Cranelift works.
    Baseline,
    /// Cranelift, the optimizing compiler: what a component runs on for good, and what is cached
    /// on disk.
    Optimized,
}

/// The node's wasmtime engines: Cranelift for good, Winch for first requests.
pub struct Engine {
    optimized: Tier,
    baseline: Tier,
    cache_dir: PathBuf,
    compat: String,
    ticker: Ticker,
}

/// The epoch ticker: a thread that ticks every [`TICK`] while a guest runs, and sleeps while
/// none does (an idle node's engine costs nothing).
#[derive(Clone)]
struct Ticker {
    running: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: std::thread::Thread,
}

/// One guest counted as running, until dropped.
struct Running(Ticker);

impl Ticker {
    fn start(engines: [WasmEngine; 2]) -> Result<Self, LoadError> {
        let running = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (busy, stopped) = (running.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    if busy.load(Ordering::Acquire) == 0 {
                        // Woken by the next guest (or the engine's drop).
                        std::thread::park();
                        continue;
                    }
                    std::thread::sleep(TICK);
                    for engine in &engines {
                        engine.increment_epoch();
                    }
                }
            })
            .map_err(|e| LoadError::Io(format!("cannot start the epoch ticker: {e}")))?
            .thread()
            .clone();
        Ok(Self { running, stop, thread })
    }

    /// Counts a guest as running until the returned guard drops.
    fn run(&self) -> Running {
        if self.running.fetch_add(1, Ordering::AcqRel) == 0 {
            self.thread.unpark();
        }
        Running(self.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.ticker.stop.store(true, Ordering::Relaxed);
        self.ticker.thread.unpark();
    }
}

impl Engine {
    /// Builds the engines, their linkers and the epoch ticker; compiled artifacts go to
    /// `cache_dir`.
    pub fn new(cache_dir: &Path, max_instances: u32) -> Result<Self, LoadError> {
        let optimized = Tier::new(Strategy::Cranelift, max_instances)?;
        let baseline = Tier::new(Strategy::Winch, max_instances)?;
        std::fs::create_dir_all(cache_dir)
            .map_err(|e| LoadError::Io(format!("cannot create {}: {e}", cache_dir.display())))?;
        let ticker = Ticker::start([optimized.engine.clone(), baseline.engine.clone()])?;
        let compat = compat_hash(&optimized.engine);
        Ok(Self { optimized, baseline, cache_dir: cache_dir.to_path_buf(), compat, ticker })
    }

    /// Where the compiled artifact of `cid` is cached.
    fn artifact_path(&self, cid: &BlobId) -> PathBuf {
        self.cache_dir.join(format!("{cid}-{}.cwasm", self.compat))
    }

    /// The component `cid` from this node's compiled cache, if it is there and intact.
    pub fn load_cached(&self, cid: &BlobId) -> Option<Ready> {
        let path = self.artifact_path(cid);
        let bytes = std::fs::read(&path).ok()?;
        let component = match self.deserialize(&bytes) {
            Ok(component) => component,
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "discarding a cached artifact");
                let _ = std::fs::remove_file(&path);
                return None;
            }
        };
        let pre = self.optimized.prepare(&component).ok()?;
        Some(Ready { pre, compiler: Compiler::Optimized, from_cache: true })
    }

    /// Checks the artifact's hash, then hands it to wasmtime.
    fn deserialize(&self, bytes: &[u8]) -> Result<Component, ArtifactError> {
        if bytes.len() < HASH_LEN {
            return Err(ArtifactError::Short);
        }
        let (hash, artifact) = bytes.split_at(HASH_LEN);
        if blake3::hash(artifact).as_bytes() != hash {
            return Err(ArtifactError::Hash);
        }
        deserialize_own_artifact(&self.optimized.engine, artifact)
    }

    /// Compiles `wasm` with the baseline compiler, for the first requests. Slow enough to call
    /// from a blocking task.
    pub fn compile_baseline(&self, wasm: &[u8]) -> Result<Ready, LoadError> {
        looks_like_component(wasm)?;
        let component = Component::new(&self.baseline.engine, wasm)
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        let pre = self.baseline.prepare(&component)?;
        Ok(Ready { pre, compiler: Compiler::Baseline, from_cache: false })
    }

    /// Compiles `wasm` (the blob `cid`) with the optimizing compiler, links it, and caches the
    /// artifact on disk. Slow: call it from a blocking task.
    pub fn compile(&self, cid: &BlobId, wasm: &[u8]) -> Result<Ready, LoadError> {
        looks_like_component(wasm)?;
        let component = Component::new(&self.optimized.engine, wasm)
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        let pre = self.optimized.prepare(&component)?;
        match component.serialize() {
            Ok(artifact) => {
                if let Err(e) = self.write_artifact(cid, &artifact) {
                    tracing::warn!(%cid, error = %e, "compiled artifact not cached");
                }
            }
            Err(e) => tracing::warn!(%cid, error = %e, "compiled artifact not serialized"),
        }
        Ok(Ready { pre, compiler: Compiler::Optimized, from_cache: false })
    }

    /// Writes `hash || artifact` to a temporary file, syncs it and renames it into place, so a
    /// crash leaves either no artifact or a whole one.
    fn write_artifact(&self, cid: &BlobId, artifact: &[u8]) -> std::io::Result<()> {
        let path = self.artifact_path(cid);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let written = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(blake3::hash(artifact).as_bytes())?;
            file.write_all(artifact)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if written.is_err() {
            // A full disk keeps no half-written artifact.
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Starts one invocation of `ready` for `request` in a fresh instance. `finished` is called
    /// with the outcome when the guest's handler ends (after its response body, if it streams).
    pub fn invoke<B>(
        &self,
        ready: &Ready,
        limits: Limits,
        capabilities: Arc<Capabilities>,
        stdio: Option<super::output::Stdio>,
        request: hyper::Request<B>,
        finished: impl FnOnce(&Outcome) + Send + 'static,
    ) -> Result<Invocation, InvokeError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let started = Instant::now();
        let deadline = started + limits.timeout;
        let state = State::new(limits.memory, capabilities, stdio, deadline);
        let mut store = Store::new(ready.pre.engine(), state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut context| {
            if Instant::now() >= deadline {
                context.data_mut().timed_out = true;
                return Err(wasmtime::Error::msg("deadline reached"));
            }
            Ok(UpdateDeadline::Yield(1))
        });
        let (sender, response) = oneshot::channel();
        let (request, out) = {
            let mut http = store.data_mut().http();
            let request = http.new_incoming_request(Scheme::Http, request);
            let out = http.new_response_outparam(sender);
            match (request, out) {
                (Ok(request), Ok(out)) => (request, out),
                (Err(e), _) | (_, Err(e)) => return Err(InvokeError(format!("{e:#}"))),
            }
        };
        let pre = ready.pre.clone();
        let timeout = limits.timeout;
        let memory = limits.memory;
        let ticking = self.ticker.run();
        let run = async move {
            let _ticking = ticking;
            let result = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy.wasi_http_incoming_handler().call_handle(&mut store, request, out).await
            };
            // A guest blocked in the host (waiting for a body that never comes) does not see
            // epochs; the same deadline applies to it here.
            let result = tokio::time::timeout_at(deadline.into(), result).await;
            let state = store.data();
            let failure = match result {
                Err(_) => Some(Failure::Timeout(timeout)),
                Ok(Ok(())) => None,
                Ok(Err(_)) if state.timed_out => Some(Failure::Timeout(timeout)),
                Ok(Err(_)) if state.limiter.denied => Some(Failure::OutOfMemory(memory)),
                Ok(Err(e)) => Some(Failure::Trap(trap_reason(&e))),
            };
            let used = (state.kv_used, state.hooks.used(), (state.blob_bytes, state.stored_bytes));
            (failure, state.limiter.peak as u64, used)
        };
        let done = tokio::spawn(async move {
            let (result, cpu) = CpuTimed::new(run).await;
            let (failure, peak_memory, (kv, outbound, (blob_bytes, stored_bytes))) = result;
            let wall = started.elapsed();
            let outcome =
                Outcome { failure, wall, cpu, peak_memory, kv, outbound, blob_bytes, stored_bytes };
            finished(&outcome);
            outcome
        });
        Ok(Invocation { response, done })
    }
}

/// Turns the bytes of an artifact this node compiled and wrote itself into a component.
///
/// This is the one `unsafe` call of the node: wasmtime runs artifacts as native code without
/// checking them. It is sound here because the bytes come only from [`Engine::write_artifact`]
/// on this node's own data folder (never from the network or another node), and their BLAKE3
/// hash was checked first, so a torn or altered file is recompiled instead.
#[allow(unsafe_code)]
fn deserialize_own_artifact(
    engine: &WasmEngine,
    artifact: &[u8],
) -> Result<Component, ArtifactError> {
    // SAFETY: see above: the artifact is this node's own output of `Component::serialize`
    // with the same engine configuration (the compatibility hash is in the file name, and
    // wasmtime checks it again), verified against its hash.
    unsafe { Component::deserialize(engine, artifact) }
        .map_err(|e| ArtifactError::Refused(format!("{e:#}")))
}

/// Refuses anything but a valid WebAssembly component, with a reason a function author can act
/// on (`project push` runs it on every function's file).
pub fn check_component(wasm: &[u8]) -> Result<(), LoadError> {
    looks_like_component(wasm)?;
    let mut validator = wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all());
    validator.validate_all(wasm).map_err(|e| LoadError::Invalid(e.to_string()))?;
    Ok(())
}

/// The quick part of [`check_component`], before a compiler sees the bytes (which it validates
/// itself).
fn looks_like_component(wasm: &[u8]) -> Result<(), LoadError> {
    if !wasm.starts_with(b"\0asm") {
        return Err(LoadError::Invalid("the file does not start with the wasm magic bytes".into()));
    }
    if !wasmparser::Parser::is_component(wasm) {
        return Err(LoadError::Invalid(
            "this is a core module, not a component: build it for wasm32-wasip2 \
             (or wrap it with `wasm-tools component new`)"
                .into(),
        ));
    }
    Ok(())
}

/// A short reason for a trap: the trap code when wasmtime gives one, else the first line.
fn trap_reason(error: &wasmtime::Error) -> String {
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        return trap.to_string();
    }
    let text = format!("{error}");
    text.lines().next().unwrap_or("trap").chars().take(200).collect()
}

/// The engine's compatibility hash as 16 hex digits, for artifact file names.
fn compat_hash(engine: &WasmEngine) -> String {
    use std::hash::{Hash, Hasher};
    struct Blake3Hasher(blake3::Hasher);
    impl Hasher for Blake3Hasher {
        fn finish(&self) -> u64 {
            let hash = self.0.finalize();
            u64::from_le_bytes(hash.as_bytes()[..8].try_into().unwrap_or([0; 8]))
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Blake3Hasher(blake3::Hasher::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// The per-request store data.
pub struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: super::outbound::Outbound,
    capabilities: Arc<Capabilities>,
    limiter: Limiter,
    timed_out: bool,
    kv_used: super::keyvalue::KvUse,
    blobs_open: usize,
    blob_bytes: u64,
    stored_bytes: u64,
}

impl State {
    fn new(
        memory: u64,
        capabilities: Arc<Capabilities>,
        stdio: Option<super::output::Stdio>,
        deadline: Instant,
    ) -> Self {
        let mut wasi = WasiCtx::builder();
        wasi.allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
        if let Some(stdio) = stdio {
            wasi.stdout(stdio.stdout).stderr(stdio.stderr);
        }
        Self {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: super::outbound::Outbound::new(capabilities.outbound.clone(), deadline),
            capabilities,
            limiter: Limiter { limit: memory as usize, peak: 0, denied: false },
            timed_out: false,
            kv_used: super::keyvalue::KvUse::default(),
            blobs_open: 0,
            blob_bytes: 0,
            stored_bytes: 0,
        }
    }

    fn blobs(&mut self) -> super::blobs::BlobsView<'_> {
        super::blobs::BlobsView {
            source: self.capabilities.blobs.as_ref(),
            table: &mut self.table,
            open: &mut self.blobs_open,
            read: &mut self.blob_bytes,
            storages: &self.capabilities.storages,
            written: &mut self.stored_bytes,
        }
    }

    fn kv(&mut self) -> super::keyvalue::KvView<'_> {
        super::keyvalue::KvView {
            stores: &self.capabilities.stores,
            table: &mut self.table,
            used: &mut self.kv_used,
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

/// Enforces the memory limit and remembers the peak.
struct Limiter {
    limit: usize,
    peak: usize,
    denied: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.denied = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// A future with the CPU time its polls took on their threads.
struct CpuTimed<F> {
    inner: Pin<Box<F>>,
    cpu: Duration,
}

impl<F: Future> CpuTimed<F> {
    fn new(inner: F) -> Self {
        Self { inner: Box::pin(inner), cpu: Duration::ZERO }
    }
}

impl<F: Future> Future for CpuTimed<F> {
    type Output = (F::Output, Duration);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let before = thread_cpu_time();
        let poll = self.inner.as_mut().poll(cx);
        let spent = thread_cpu_time().saturating_sub(before);
        self.cpu += spent;
        match poll {
            Poll::Ready(output) => Poll::Ready((output, self.cpu)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full};

    use super::*;

    /// The `faulty` fixture, built by `scripts/build-examples` (which `scripts/test` runs first).
    fn faulty() -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/functions/target/wasm32-wasip2/release/faulty.wasm");
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run scripts/build-examples)", path.display()))
    }

    /// Runs `GET /<path>` on `ready`; the status (or the failure) and the outcome.
    async fn call(engine: &Engine, ready: &Ready, path: &str) -> (Result<u16, Failure>, Outcome) {
        let limits = Limits { timeout: Duration::from_millis(300), memory: 16 << 20 };
        let request = hyper::Request::get(format!("http://fixture.test/{path}"))
            .body(
                Full::new(Bytes::new())
                    .map_err(|never| -> wasmtime_wasi_http::Error { match never {} }),
            )
            .unwrap();
        let invocation =
            engine.invoke(ready, limits, Arc::default(), None, request, |_| {}).unwrap();
        let answer = invocation.response.await;
        let outcome = invocation.done.await.unwrap();
        let status = match answer {
            Ok(Ok(response)) => Ok(response.status().as_u16()),
            _ => Err(outcome.failure.clone().unwrap_or(Failure::NoResponse)),
        };
        (status, outcome)
    }

    #[tokio::test]
    async fn both_compilers_keep_a_function_within_its_limits() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(dir.path(), 8).unwrap();
        let wasm = faulty();
        let cid = BlobId::of(&wasm);
        let tiers = [engine.compile_baseline(&wasm).unwrap(), engine.compile(&cid, &wasm).unwrap()];
        for ready in &tiers {
            let tier = ready.compiler;
            let (status, outcome) = call(&engine, ready, "ok").await;
            assert_eq!(status, Ok(200), "{tier:?}");
            assert!(outcome.failure.is_none() && outcome.peak_memory > 0, "{tier:?}: {outcome:?}");
            // A spin that is never cut off would hang the test: 30 s is a guard, not a timing.
            let spin = tokio::time::timeout(Duration::from_secs(30), call(&engine, ready, "spin"));
            let (status, spun) = spin.await.expect("the endless loop is cut off");
            assert_eq!(status, Err(Failure::Timeout(Duration::from_millis(300))), "{tier:?}");
            let (status, slept) = call(&engine, ready, "sleep").await;
            assert_eq!(status, Err(Failure::Timeout(Duration::from_millis(300))), "{tier:?}");
            // Spinning is CPU time and sleeping is not (how much CPU the spin got in its 300 ms
            // depends on what else the machine runs).
            assert!(
                spun.cpu > slept.cpu * 10 && spun.cpu > Duration::from_millis(10),
                "{tier:?}: spin {:?}, sleep {:?}",
                spun.cpu,
                slept.cpu
            );
            let (status, outcome) = call(&engine, ready, "hog").await;
            assert_eq!(status, Err(Failure::OutOfMemory(16 << 20)), "{tier:?}");
            assert!(outcome.peak_memory <= 16 << 20, "{tier:?}: {outcome:?}");
            assert!(
                matches!(call(&engine, ready, "crash").await.0, Err(Failure::Trap(_))),
                "{tier:?}"
            );
            assert_eq!(
                call(&engine, ready, "silent").await.0,
                Err(Failure::NoResponse),
                "{tier:?}"
            );
        }
    }

    #[test]
    fn the_compiled_cache_is_used_and_a_damaged_artifact_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(dir.path(), 8).unwrap();
        let wasm = faulty();
        let cid = BlobId::of(&wasm);
        assert!(engine.load_cached(&cid).is_none(), "nothing is cached yet");
        engine.compile(&cid, &wasm).unwrap();
        let cached = engine.load_cached(&cid).expect("the artifact was cached");
        assert!(cached.from_cache && cached.compiler == Compiler::Optimized);
        let path = engine.artifact_path(&cid);
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert!(engine.load_cached(&cid).is_none(), "a damaged artifact is not loaded");
        assert!(!path.exists(), "and it is deleted, to be compiled again");
        std::fs::write(&path, &bytes[..HASH_LEN - 1]).unwrap();
        assert!(engine.load_cached(&cid).is_none(), "nor a torn one");
    }

    #[test]
    fn a_module_or_garbage_is_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(dir.path(), 8).unwrap();
        let cid = BlobId::of(b"x");
        let module = b"\0asm\x01\0\0\0";
        let e = engine.compile(&cid, module).err().unwrap().to_string();
        assert!(e.contains("core module, not a component"), "{e}");
        let e = engine.compile_baseline(b"hello").err().unwrap().to_string();
        assert!(e.contains("magic bytes"), "{e}");
        let empty = b"\0asm\x0d\0\x01\0";
        let e = engine.compile(&cid, empty).err().unwrap().to_string();
        assert!(e.contains("wasi:http/incoming-handler"), "{e}");
    }
}
