//! What starts functions besides a direct Invoke: function URLs and HTTP routes (turned into
//! payload format 2.0 events and back into HTTP responses) and EventBridge schedules (fired as
//! asynchronous invocations, so retries and destinations apply).
//!
//! Triggers call the invoke path; they never reach into pools or sandboxes.

pub mod clock;
pub mod gateway;
pub mod http_event;
pub mod jsonpath;
pub mod route_table;
pub mod routes;
pub mod rules;
pub mod schedule;
pub mod transform;

pub use clock::Clock;
pub use gateway::Gateway;
pub use routes::Routes;
pub use rules::{EventsError, Schedules};
