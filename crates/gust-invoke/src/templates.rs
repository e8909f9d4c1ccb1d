//! Runtime templates: one Python interpreter per runtime, loaded with Gust's runtime and
//! waiting, that forks each new environment of that runtime (see `forking.rs`).
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
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gust_runtimes::Placement;
use gust_sandbox::SandboxSpec;

use crate::budget::MemoryClaim;
use crate::forking::{Forker, StartError};
use crate::platform::{EnvironmentError, Platform};
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
    forks: AtomicU32,
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
                let placement = Placement {
                    host_task_root: placeholder,
                    task_root: sandbox.task_root(),
                    runtime_dir: sandbox.runtime_dir(),
                };
                platform
                    .runtimes
                    .command(runtime, placement, gust_model::limits::DEFAULT_MEMORY_MB)
                    .map_err(EnvironmentError::Runtime)
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

    /// Counts one more fork.
    pub(crate) fn forked(&self) {
        self.forks.fetch_add(1, Ordering::Relaxed);
    }

    /// It has forked its share, or served long enough: a new one takes over.
    fn worn(&self) -> bool {
        self.forks.load(Ordering::Relaxed) >= MAX_FORKS || self.started.elapsed() >= MAX_AGE
    }

    pub fn is_alive(&self) -> bool {
        self.forker.is_alive()
    }
}

#[derive(Default)]
struct Slot {
    current: Option<Arc<Template>>,
    /// A template is being started for this runtime.
    starting: bool,
    /// The last cold start that wanted this runtime's template.
    wanted: Option<Instant>,
}

/// The current template of each runtime.
#[derive(Default)]
pub struct Templates {
    slots: Mutex<HashMap<String, Slot>>,
}

impl Templates {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The template a cold start of `runtime` forks from, if one is ready; and whether the
    /// caller should start one (none is ready or starting, or the current one is worn).
    pub fn current(&self, runtime: &str) -> (Option<Arc<Template>>, bool) {
        let mut slots = self.lock();
        let slot = slots.entry(runtime.to_string()).or_default();
        slot.wanted = Some(Instant::now());
        if slot.current.as_ref().is_some_and(|t| !t.is_alive()) {
            slot.current = None;
        }
        let start = !slot.starting && slot.current.as_ref().is_none_or(|t| t.worn());
        if start {
            slot.starting = true;
        }
        (slot.current.clone(), start)
    }

    /// A template started for `runtime` (or `None` when it could not be): it takes over.
    pub fn started(&self, runtime: &str, template: Option<Template>) {
        let mut slots = self.lock();
        let slot = slots.entry(runtime.to_string()).or_default();
        slot.starting = false;
        if let Some(template) = template {
            // The one it replaces lives on while environments forked from it do.
            slot.current = Some(Arc::new(template));
        }
    }

    /// Takes out templates no cold start has wanted for `keep_alive`, and dead ones. (Each
    /// lives on while environments forked from it do.)
    pub fn expired(&self, keep_alive: Duration) -> Vec<Arc<Template>> {
        let mut out = Vec::new();
        self.lock().retain(|_, slot| {
            let idle = slot.wanted.is_none_or(|w| w.elapsed() > keep_alive);
            if let Some(template) = slot.current.take_if(|t| idle || !t.is_alive()) {
                out.push(template);
            }
            slot.current.is_some() || slot.starting
        });
        out
    }

    /// Every current template, to measure.
    pub fn live(&self) -> Vec<Arc<Template>> {
        self.lock()
            .values()
            .filter_map(|slot| slot.current.clone())
            .collect()
    }

    /// Runtimes with a template ready, for status output.
    pub fn ready(&self) -> Vec<String> {
        let mut ready: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, slot)| slot.current.as_ref().is_some_and(|t| t.is_alive()))
            .map(|(runtime, _)| runtime.clone())
            .collect();
        ready.sort();
        ready
    }

    pub fn drain(&self) -> Vec<Arc<Template>> {
        self.lock()
            .values_mut()
            .filter_map(|slot| slot.current.take())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_cold_start_asks_for_a_template_once() {
        let templates = Templates::default();
        let (ready, start) = templates.current("python3.12");
        assert!(ready.is_none() && start);
        let (ready, start) = templates.current("python3.12");
        assert!(ready.is_none() && !start, "one is starting");
        templates.started("python3.12", None);
        let (_, start) = templates.current("python3.12");
        assert!(start, "it could not start: the next cold start asks again");
        assert!(templates.ready().is_empty());
    }

    #[test]
    fn unwanted_slots_expire() {
        let templates = Templates::default();
        let _ = templates.current("python3.12");
        templates.started("python3.12", None);
        assert!(templates.expired(Duration::ZERO).is_empty());
        assert!(templates.lock().is_empty(), "nothing left to keep");
    }
}
