//! What the triggers need of the invoke path, as a trait: a seam of its own, so that the
//! translation of HTTP requests and schedules into events is tested without sandboxes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use gust_model::LambdaError;

use crate::{InvokeRequest, InvokeResponse, Invoker};

/// The answer of [`Invoke::invoke`], boxed so that the trait can be used as `dyn Invoke`.
pub type InvokeFuture<'a> =
    Pin<Box<dyn Future<Output = Result<InvokeResponse, LambdaError>> + Send + 'a>>;

/// Runs a synchronous invocation: admitted or throttled at once, then run to its end.
pub trait Invoke: Send + Sync {
    fn invoke(&self, request: InvokeRequest) -> InvokeFuture<'_>;
}

impl Invoke for Arc<Invoker> {
    fn invoke(&self, request: InvokeRequest) -> InvokeFuture<'_> {
        Box::pin(Invoker::invoke(self, request))
    }
}
