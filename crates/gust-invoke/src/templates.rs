//! Runtime templates: Python interpreters (one per CPU for each runtime), loaded with Gust's
//! runtime and waiting, that fork each new environment of that runtime (see `forking.rs`).
//!
//! Starting an interpreter is most of a cold start's CPU (about 10 ms for Python here), and
//! a burst of cold starts of many functions is bound by it. A fork of a loaded interpreter
//! costs about a millisecond; the fork makes its own namespaces, Gust mounts the function's
//! code into them and gives it its cgroup, /tmp and Runtime API, and it confines itself as
//! every sandboxed runtime is confined before it loads the function. It then initialises the
//! function exactly as a fresh start does.
//!
//! What forks of one template share, and what they do not:
//! - The interpreter's memory layout (ASLR) and its `str` hash secret are the template's.
//!   SnapStart on Lambda shares both (and the function's whole initialised state) among the
//!   environments restored from one version's snapshot; a template shares only the runtime's
//!   own state, among the functions of one runtime on one server (and, once Gust has
//!   accounts, of one account). A template forks at most [`MAX_FORKS`] environments and
//!   serves new ones for at most [`MAX_AGE`]; then a new one, with a new layout and secret,
//!   takes over. A function that sets `PYTHONHASHSEED` (or any variable Python reads as it
//!   starts) gets an interpreter of its own instead.
//! - `random` is re-seeded in every fork by CPython itself; `uuid.uuid4`, `secrets` and
//!   `os.urandom` read the kernel's generator; nothing the function makes is shared, because
//!   the function is loaded after the fork.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gust_sandbox::SandboxSpec;

use crate::budget::MemoryClaim;
use crate::forking::{Forker, StartError};
use crate::platform::{Platform, placeholder_command};
use crate::variables::template_variables;

/// Environments one template forks before a new one takes over.
pub const MAX_FORKS: u32 = 512;

/// How long one template forks new environments before a new one takes over.
pub const MAX_AGE: Duration = Duration::from_secs(600);

/// What a template counts for while it loads (MB): about what a loaded Python interpreter
/// holds. It is measured once loaded.
pub const LOADING_CLAIM_MB: u64 = 16;

/// The template's own /tmp (MB).
const TEMPLATE_TMP_MB: u32 = 16;

/// How long a template may take to load.
const START_LIMIT: Duration = Duration::from_secs(30);

/// A runtime's template, loaded and waiting to fork environments.
pub struct Template {
    pub runtime: String,
    pub(crate) forker: Forker,
    /// Forks asked of it (its wear).
    forks: AtomicU32,
    /// Forks asked of it and not yet answered.
    in_flight: AtomicUsize,
    started: Instant,
    /// What it counts for against the memory budget: what its cgroup holds, measured.
    claim: Mutex<MemoryClaim>,
}

impl Template {
    /// Starts the template of Python runtime `runtime` in a sandbox whose task root is
    /// `placeholder` (an empty directory), and waits until it is ready to fork.
    ///
    /// A fork is charged to the template's cgroup for what it allocates before Gust moves it
    /// into its own (its namespaces' kernel memory, the pages it copies as it starts: about
    /// 0.9 MB), until it ends. No function code runs in the template, so its cgroup is limited
    /// only by `memory_limit_mb` (the host's budget), and its claim follows what it holds.
    pub async fn start(
        platform: &Platform,
        runtime: &str,
        placeholder: &std::path::Path,
        memory_limit_mb: u32,
        claim: MemoryClaim,
    ) -> Result<Self, StartError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let spec = SandboxSpec {
            environment_id: id,
            code_dir: placeholder.to_path_buf(),
            runtime_dir: platform.runtimes.runtime_dir().to_path_buf(),
            memory_mb: memory_limit_mb,
            // Nothing writes there: each fork gets a /tmp of its function's size.
            ephemeral_storage_mb: TEMPLATE_TMP_MB,
            read_only_paths: platform
                .runtimes
                .install_prefix(runtime)
                .into_iter()
                .collect(),
            egress: false,
            zygote: true,
        };
        let forker = Forker::spawn(
            platform,
            &spec,
            |sandbox| {
                let memory_mb = gust_model::limits::DEFAULT_MEMORY_MB;
                placeholder_command(platform, runtime, memory_mb, placeholder, sandbox)
            },
            template_variables,
            &format!("template {runtime}"),
        )
        .map_err(StartError::Spawn)?;
        let (forker, output) = forker.ready(START_LIMIT).await;
        if !output.is_empty() {
            tracing::debug!(%runtime, output = %String::from_utf8_lossy(&output), "template loaded");
        }
        let template = Self {
            runtime: runtime.to_string(),
            forker: forker?,
            forks: AtomicU32::new(0),
            in_flight: AtomicUsize::new(0),
            started: Instant::now(),
            claim: Mutex::new(claim),
        };
        template.measure_claim();
        Ok(template)
    }

    /// Counts it at what its cgroup holds now (it grows with the environments forked from
    /// it that live).
    pub(crate) fn measure_claim(&self) {
        if let Some(bytes) = self.forker.sandbox.memory_usage() {
            let mb = bytes.div_ceil(1024 * 1024).max(1);
            self.claim
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .resize(mb);
        }
    }

    /// Counts one more fork, and it as under way until the guard is dropped (cold starts
    /// pick the template with the fewest).
    pub(crate) fn fork_under_way(&self) -> ForkUnderWay<'_> {
        self.forks.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        ForkUnderWay(self)
    }

    /// It has forked its share, or served long enough: a new one takes over.
    fn worn(&self) -> bool {
        self.forks.load(Ordering::Relaxed) >= MAX_FORKS || self.started.elapsed() >= MAX_AGE
    }

    pub fn is_alive(&self) -> bool {
        self.forker.is_alive()
    }
}

/// A fork asked of a template and not yet answered.
pub(crate) struct ForkUnderWay<'a>(&'a Template);

impl Drop for ForkUnderWay<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Slot {
    /// Its templates, oldest first (a worn one stays until a new one takes over).
    current: Vec<Arc<Template>>,
    /// Templates being started for this runtime.
    starting: usize,
    /// The last cold start that wanted this runtime's template.
    wanted: Option<Instant>,
}

/// The current templates of each runtime: one per CPU, since each forks one environment at a
/// time.
pub struct Templates {
    per_runtime: usize,
    slots: Mutex<HashMap<String, Slot>>,
}

impl Templates {
    pub fn new(per_runtime: usize) -> Self {
        Self {
            per_runtime: per_runtime.max(1),
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The template a cold start of `runtime` forks from (the one with the fewest forks under
    /// way), if one is ready; and whether the caller should start another (fewer than wanted
    /// are ready or starting, not counting worn ones).
    pub fn current(&self, runtime: &str) -> (Option<Arc<Template>>, bool) {
        let mut slots = self.lock();
        let slot = slots.entry(runtime.to_string()).or_default();
        slot.wanted = Some(Instant::now());
        slot.current.retain(|t| t.is_alive());
        let fresh = slot.current.iter().filter(|t| !t.worn()).count();
        let start = fresh + slot.starting < self.per_runtime;
        if start {
            slot.starting += 1;
        }
        let least_busy = slot
            .current
            .iter()
            .min_by_key(|t| t.in_flight.load(Ordering::Relaxed))
            .cloned();
        (least_busy, start)
    }

    /// A template started for `runtime` (or `None` when it could not be): it takes over from
    /// a worn one, if there is one.
    pub fn started(&self, runtime: &str, template: Option<Template>) {
        let mut slots = self.lock();
        let slot = slots.entry(runtime.to_string()).or_default();
        slot.starting = slot.starting.saturating_sub(1);
        if let Some(template) = template {
            slot.current.push(Arc::new(template));
            // The ones it replaces live on while environments forked from them do.
            while slot.current.len() > self.per_runtime {
                match slot.current.iter().position(|t| t.worn()) {
                    Some(worn) => drop(slot.current.remove(worn)),
                    None => break,
                }
            }
        }
    }

    /// Takes out templates no cold start has wanted for `keep_alive`, and dead ones. (Each
    /// lives on while environments forked from it do.)
    pub fn expired(&self, keep_alive: Duration) -> Vec<Arc<Template>> {
        let mut out = Vec::new();
        self.lock().retain(|_, slot| {
            let idle = slot.wanted.is_none_or(|w| w.elapsed() > keep_alive);
            let (gone, kept): (Vec<_>, Vec<_>) =
                slot.current.drain(..).partition(|t| idle || !t.is_alive());
            slot.current = kept;
            out.extend(gone);
            !slot.current.is_empty() || slot.starting > 0
        });
        out
    }

    /// Every current template, to measure.
    pub fn live(&self) -> Vec<Arc<Template>> {
        self.lock()
            .values()
            .flat_map(|slot| slot.current.iter().cloned())
            .collect()
    }

    /// Runtimes with a template ready, for status output.
    pub fn ready(&self) -> Vec<String> {
        let mut ready: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, slot)| slot.current.iter().any(|t| t.is_alive()))
            .map(|(runtime, _)| runtime.clone())
            .collect();
        ready.sort();
        ready
    }

    pub fn drain(&self) -> Vec<Arc<Template>> {
        self.lock()
            .values_mut()
            .flat_map(|slot| slot.current.drain(..))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_cold_starts_ask_for_each_template_once() {
        let templates = Templates::new(2);
        let (ready, start) = templates.current("python3.12");
        assert!(ready.is_none() && start);
        let (ready, start) = templates.current("python3.12");
        assert!(ready.is_none() && start, "a second one, for the second CPU");
        let (ready, start) = templates.current("python3.12");
        assert!(ready.is_none() && !start, "two are starting");
        templates.started("python3.12", None);
        templates.started("python3.12", None);
        let (_, start) = templates.current("python3.12");
        assert!(start, "it could not start: the next cold start asks again");
        assert!(templates.ready().is_empty());
    }

    #[test]
    fn unwanted_slots_expire() {
        let templates = Templates::new(1);
        let _ = templates.current("python3.12");
        templates.started("python3.12", None);
        assert!(templates.expired(Duration::ZERO).is_empty());
        assert!(templates.lock().is_empty(), "nothing left to keep");
    }
}
