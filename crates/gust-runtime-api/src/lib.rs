//! The Lambda Runtime API (`/2018-06-01/runtime/...`) for one execution environment.
//!
//! Each environment gets its own listener and its own [`Link`], so a request id can only ever
//! refer to that environment's invocation, and the listener can later move into the
//! environment's network namespace without changing the protocol side.
//!
//! Gust's own bootstraps also speak [`control`], Gust's protocol for adopting a runtime
//! started ahead and forking one from a SnapStart snapshot, on the same listener.

pub mod control;
pub mod link;
pub mod server;

pub use link::{Delivery, Invocation, Link, Outcome, Pending};
pub use server::spawn;
