//! The operator's commands that look at (or break) the destination: run
//! with a deadline, their output captured and bounded.

use std::time::Duration;

/// Longest a verifier, lookup, break or repair command may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Output kept from a command (a record lookup may print a large record).
const MAX_OUTPUT_BYTES: usize = 4 * 1024 * 1024;

/// Why a command did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// It could not be started.
    #[error("`{program}` could not be started: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// It ran past [`COMMAND_TIMEOUT`].
    #[error("`{program}` did not finish within {} s", COMMAND_TIMEOUT.as_secs())]
    Timeout {
        /// The program.
        program: String,
    },
    /// It exited non-zero.
    #[error("`{program}` exited with {status}: {stderr}")]
    Failed {
        /// The program.
        program: String,
        /// Its exit status.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
    /// A verifier did not print a count.
    #[error(
        "`{program}` printed {printed:?}; a verifier must print a record count as its last line"
    )]
    NotACount {
        /// The program.
        program: String,
        /// Its last line.
        printed: String,
    },
}

/// Runs `argv` with `env` added; its standard output on success.
pub async fn run(argv: &[String], env: &[(&str, String)]) -> Result<String, CommandError> {
    let program = argv.first().cloned().unwrap_or_default();
    let mut command = tokio::process::Command::new(&program);
    command
        .args(argv.iter().skip(1))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = match tokio::time::timeout(COMMAND_TIMEOUT, command.output()).await {
        Err(_) => return Err(CommandError::Timeout { program }),
        Ok(Err(source)) => return Err(CommandError::Spawn { program, source }),
        Ok(Ok(output)) => output,
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr
            .trim()
            .chars()
            .rev()
            .take(300)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(CommandError::Failed {
            program,
            status: output.status.to_string(),
            stderr: tail,
        });
    }
    let mut stdout = output.stdout;
    stdout.truncate(MAX_OUTPUT_BYTES);
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// Runs a verifier: the count on the last non-empty line of its output.
pub async fn count(argv: &[String], env: &[(&str, String)]) -> Result<u64, CommandError> {
    let output = run(argv, env).await?;
    let last = output
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("");
    last.parse::<u64>().map_err(|_| CommandError::NotACount {
        program: argv.first().cloned().unwrap_or_default(),
        printed: last.chars().take(80).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn a_verifier_prints_a_count_on_its_last_line() {
        assert_eq!(
            count(&argv("echo counting; echo '  42 '"), &[])
                .await
                .expect("count"),
            42
        );
        let env = [("SINKHOST_CERTIFY_STREAM", "S1".to_string())];
        assert_eq!(
            run(&argv("printf %s \"$SINKHOST_CERTIFY_STREAM\""), &env)
                .await
                .expect("run"),
            "S1"
        );
        assert!(matches!(
            count(&argv("echo many"), &[]).await,
            Err(CommandError::NotACount { .. })
        ));
        assert!(matches!(
            count(&argv("echo oops >&2; exit 3"), &[]).await,
            Err(CommandError::Failed { .. })
        ));
        assert!(matches!(
            count(&["/nonexistent/verifier".to_string()], &[]).await,
            Err(CommandError::Spawn { .. })
        ));
    }
}
