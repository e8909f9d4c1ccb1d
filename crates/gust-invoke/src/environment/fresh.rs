//! A fresh start: a new sandbox whose runtime starts at the first invocation (or when a
//! provisioned environment is prepared), initialising the function from nothing.

use super::*;

impl Environment {
    /// Creates the environment's sandbox and Runtime API; the runtime starts on first use
    /// (or at [`Environment::prewarm`]).
    pub fn create(
        platform: &Platform,
        config: Arc<FunctionConfig>,
        initialization: InitializationType,
        claim: MemoryClaim,
    ) -> Result<Self, EnvironmentError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut sandbox = platform
            .launcher
            .create(&sandbox_spec(platform, &config, &id))?;
        let command = function_command(platform, &config, sandbox.as_ref())
            .map_err(EnvironmentError::Runtime);
        // A missing bootstrap is the function's problem and is reported per invocation; a
        // missing interpreter is the platform's.
        let command = match command {
            Err(EnvironmentError::Runtime(CommandError::NoBootstrap { searched })) => {
                Err(CommandError::NoBootstrap { searched })
            }
            Err(e) => return Err(e),
            Ok(c) => Ok(c),
        };
        let log_stream = log_stream(&config, &id);
        let mut env = variables(
            platform,
            &config,
            sandbox.as_ref(),
            &log_stream,
            command.as_ref().ok(),
        );
        set(
            &mut env,
            "AWS_LAMBDA_INITIALIZATION_TYPE",
            initialization.as_str(),
        );
        let process = match command {
            Ok(c) => ProcessSpec {
                program: c.program,
                args: c.args,
                env,
            },
            Err(CommandError::NoBootstrap { searched }) => ProcessSpec {
                // Recorded so that every invocation reports the same missing entrypoint.
                program: std::path::PathBuf::new(),
                args: searched.into_iter().map(Into::into).collect(),
                env,
            },
            Err(e) => return Err(EnvironmentError::Runtime(e)),
        };
        let (link, server) = serve_runtime_api(sandbox.as_mut())?;
        Ok(Self::unstarted(
            id, config, claim, sandbox, link, server, process,
        ))
    }
}
