//! Logging setup for every subcommand: the `log:` section (or `PAIRDB_LOG`) to stderr, as text
//! or JSON, coloured only on a terminal.

use anyhow::Context as _;
use pairdb::config::{LogConfig, LogFormat};

/// Logs to stderr in `log.format`, filtered by `PAIRDB_LOG` when set, else by `log.level`.
///
/// Text is coloured only when stderr is a terminal (and `NO_COLOR` is unset or empty): a log
/// redirected to a file, a pipe or a container runtime's collector stays plain text, with no ANSI
/// escapes. JSON is never coloured.
pub fn init_logging(log: &LogConfig) -> anyhow::Result<()> {
    let filter = match std::env::var("PAIRDB_LOG") {
        Ok(directive) => tracing_subscriber::EnvFilter::try_new(&directive)
            .with_context(|| format!("PAIRDB_LOG={directive:?} is not a log filter"))?,
        Err(_) => tracing_subscriber::EnvFilter::try_new(&log.level)
            .with_context(|| format!("log.level {:?} is not a log filter", log.level))?,
    };
    let logger = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = match log.format {
        LogFormat::Json => logger.json().with_ansi(false).try_init(),
        LogFormat::Text => logger.with_ansi(colour_stderr()).try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
}

/// Whether text logs on stderr get ANSI colours: only on a terminal, and not under `NO_COLOR`
/// (<https://no-color.org>).
fn colour_stderr() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
