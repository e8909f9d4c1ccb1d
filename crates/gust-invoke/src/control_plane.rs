//! What the engine needs of the control plane, as a trait: a seam of its own, so that the
//! engine runs in tests with a control plane made up for them.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use gust_control::Control;
use gust_model::{Arns, FunctionConfig, LambdaError, ProvisionedConfig};
use tokio::sync::broadcast;

use crate::admission::ConcurrencyLimits;

/// The answer of [`ControlPlane::collect_garbage`], boxed so that the trait can be used as
/// `dyn ControlPlane`.
pub type CollectFuture<'a> = Pin<Box<dyn Future<Output = Result<usize, LambdaError>> + Send + 'a>>;

/// The functions, their versions and limits, as the engine asks about them.
pub trait ControlPlane: ConcurrencyLimits {
    /// Names of functions as they change (a lagging receiver means "any may have").
    fn subscribe(&self) -> broadcast::Receiver<String>;
    /// Whether `config` is still what its version is (environments of an older revision
    /// retire).
    fn is_current(&self, config: &FunctionConfig) -> bool;
    /// The newest published version of `function`.
    fn newest_version(&self, function: &str) -> Option<Arc<FunctionConfig>>;
    /// Every provisioned concurrency configuration with the version it serves now.
    fn provisioned_targets(&self) -> Vec<(Arc<ProvisionedConfig>, Arc<FunctionConfig>)>;
    /// The version `function:qualifier`'s provisioned configuration serves now.
    fn provisioned_version(&self, function: &str, qualifier: &str) -> Option<Arc<FunctionConfig>>;
    /// Removes code packages neither a function nor `in_use` needs.
    fn collect_garbage(&self, in_use: HashSet<String>) -> CollectFuture<'_>;
    /// How ARNs are made (the invoked function ARN every event carries).
    fn arns(&self) -> &Arns;
}

impl ControlPlane for Control {
    fn subscribe(&self) -> broadcast::Receiver<String> {
        Control::subscribe(self)
    }

    fn is_current(&self, config: &FunctionConfig) -> bool {
        Control::is_current(self, config)
    }

    fn newest_version(&self, function: &str) -> Option<Arc<FunctionConfig>> {
        Control::newest_version(self, function)
    }

    fn provisioned_targets(&self) -> Vec<(Arc<ProvisionedConfig>, Arc<FunctionConfig>)> {
        Control::provisioned_targets(self)
    }

    fn provisioned_version(&self, function: &str, qualifier: &str) -> Option<Arc<FunctionConfig>> {
        Control::provisioned_version(self, function, qualifier)
    }

    fn collect_garbage(&self, in_use: HashSet<String>) -> CollectFuture<'_> {
        Box::pin(Control::collect_garbage(self, in_use))
    }

    fn arns(&self) -> &Arns {
        Control::arns(self)
    }
}
