//! Lambda's quotas, as the reference gives them. Gust enforces the same numbers so that a
//! function that works here also fits on AWS.

/// Largest deployment zip accepted through `Code.ZipFile`.
pub const ZIPPED_CODE_MAX: u64 = 52_428_800;
/// Largest total size of a deployment package once unzipped.
pub const UNZIPPED_CODE_MAX: u64 = 262_144_000;
/// Largest CreateFunction / UpdateFunctionCode request body.
pub const CODE_REQUEST_MAX: u64 = 70_167_211;
/// Largest body of any other control-plane request.
pub const CONTROL_REQUEST_MAX: u64 = 1_048_576;
/// Largest synchronous invoke request payload.
pub const SYNC_PAYLOAD_MAX: u64 = 6_291_456;
/// Largest asynchronous (`Event`) invoke payload.
pub const ASYNC_PAYLOAD_MAX: u64 = 1_048_576;
/// Largest response a runtime may post for one invocation.
pub const RUNTIME_RESPONSE_MAX: u64 = 6_291_556;
/// Largest serialised environment-variable map (compact JSON, in bytes).
pub const ENVIRONMENT_MAX: usize = 4096;
/// Largest decoded `X-Amz-Client-Context` document.
pub const CLIENT_CONTEXT_MAX: usize = 3583;
/// Bytes of log text returned in `X-Amz-Log-Result`.
pub const LOG_TAIL_BYTES: usize = 4096;

pub const MEMORY_MIN_MB: i64 = 128;
pub const MEMORY_MAX_MB: i64 = 10_240;
pub const TIMEOUT_MIN_S: i64 = 1;
pub const TIMEOUT_MAX_S: i64 = 900;
pub const EPHEMERAL_MIN_MB: i64 = 512;
pub const EPHEMERAL_MAX_MB: i64 = 10_240;
pub const DESCRIPTION_MAX: usize = 256;
pub const HANDLER_MAX: usize = 128;
pub const FUNCTION_NAME_MAX: usize = 64;

pub const DEFAULT_TIMEOUT_S: u32 = 3;
pub const DEFAULT_MEMORY_MB: u32 = 128;
pub const DEFAULT_EPHEMERAL_MB: u32 = 512;

/// ListFunctions never returns more than this many items in one page.
pub const LIST_FUNCTIONS_PAGE_MAX: usize = 50;

/// Account-level quotas reported by GetAccountSettings.
pub const TOTAL_CODE_SIZE_LIMIT: u64 = 80_530_636_800;
/// Lambda never lets reservations push unreserved concurrency below this.
pub const UNRESERVED_CONCURRENCY_MIN: u32 = 100;
/// Default account concurrency limit.
pub const DEFAULT_CONCURRENT_EXECUTIONS: u32 = 1000;
