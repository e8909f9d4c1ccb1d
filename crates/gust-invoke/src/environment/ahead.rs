//! A start from a runtime started ahead of demand: its sandbox and interpreter are already
//! up, and it receives its function's code, limits and variables when adopted.

use gust_runtime_api::control::{Adoption, Claim, Exec};

use super::*;

impl Environment {
    /// Makes a pre-started runtime this function's environment: the function's code appears
    /// at its task root, its memory limit applies, and the runtime receives the same
    /// variables a fresh start would have had, then initialises the function as usual. Its
    /// Init Duration counts from here.
    pub fn adopt(
        platform: &Platform,
        config: Arc<FunctionConfig>,
        mut standby: Standby,
        claim: MemoryClaim,
    ) -> Result<Self, Box<(Standby, EnvironmentError)>> {
        let code_dir = code_dir(platform, &config);
        let command = function_command(platform, &config, standby.sandbox.as_ref());
        let command = match command {
            Ok(c) => c,
            Err(e) => return Err(Box::new((standby, EnvironmentError::Runtime(e)))),
        };
        // A bootstrap that cannot be exec'd fails at start in a fresh environment, where Gust
        // reports it; leave that case to a fresh start.
        if let Ok(relative) = command.program.strip_prefix(standby.sandbox.task_root()) {
            use std::os::unix::fs::PermissionsExt;
            let executable = std::fs::metadata(code_dir.join(relative))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
            if !executable {
                return Err(Box::new((
                    standby,
                    EnvironmentError::Runtime(CommandError::NoBootstrap {
                        searched: vec![command.program.clone()],
                    }),
                )));
            }
        }
        let log_stream = log_stream(&config, &standby.id);
        let env = variables(
            platform,
            &config,
            standby.sandbox.as_ref(),
            &log_stream,
            Some(&command),
        );
        let adoption = Claim::Adopt(Adoption {
            environment: env.clone(),
            exec: Some(Exec {
                program: command.program.display().to_string(),
                args: command
                    .args
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect(),
            }),
        });
        // Checked before the sandbox is touched: the Runtime API could only refuse to write
        // it to the runtime (a variable's value with a NUL, which no process can be given).
        if let Err(e) = adoption.encode() {
            return Err(Box::new((standby, EnvironmentError::Control(e))));
        }
        if let Err(e) = blocking(|| {
            standby.sandbox.assign(
                &code_dir,
                config.memory_size,
                config.ephemeral_storage,
                standby.runtime_process.pid,
            )
        }) {
            return Err(Box::new((standby, e.into())));
        }
        // What the runtime printed while it started is not this function's.
        logs::lock(&standby.runtime_process.log).take();
        standby.runtime_process.link.claim_standby(adoption);
        let Standby {
            id,
            sandbox,
            runtime_process,
            ..
        } = standby;
        let spec = ProcessSpec {
            program: command.program,
            args: command.args,
            env,
        };
        Ok(Self::initialising(
            id,
            config,
            claim,
            sandbox,
            runtime_process,
            spec,
            Instant::now(),
        ))
    }
}
