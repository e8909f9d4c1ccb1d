//! Lambda's vocabulary, shared by every Gust layer.
//!
//! The types here mirror what AWS Lambda exposes on the wire, because Gust's promise is that
//! unmodified Lambda clients and functions work against it.

pub mod alias;
pub mod closed_set;
pub mod code_signing;
pub mod concurrency;
pub mod error;
pub mod events;
pub mod function;
pub mod limits;
pub mod names;
pub mod timefmt;
pub mod url;

pub use alias::{Alias, EventInvokeConfig, Policy};
pub use concurrency::ProvisionedConfig;
pub use error::{ErrorCode, LambdaError};
pub use function::{FunctionConfig, LATEST, NETWORK_VARIABLE, Network};
pub use names::{Arns, FunctionRef};
pub use url::{Cors, FunctionUrlConfig};
