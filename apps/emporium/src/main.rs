//! `emporium serve` (default), `emporium migrate`, `emporium users grant`, `emporium keys
//! rotate`, `emporium asyncapi`.

use std::io::IsTerminal;

use clap::{Parser, Subcommand};
use emporium::Config;

#[derive(Parser)]
#[command(name = "emporium", version, about = "A modular-monolith shop API")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
    /// `json` or `pretty` (default: pretty on a terminal, else json).
    #[arg(long, env = "LOG_FORMAT", global = true)]
    log_format: Option<LogFormat>,
    /// Also log a line when each span closes (a module call, a request), with its busy
    /// and idle time (LOG_SPANS: 1, true, yes or on).
    #[arg(long, env = "LOG_SPANS", global = true,
        value_parser = clap::builder::BoolishValueParser::new())]
    log_spans: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations, then serve (the default).
    Serve,
    /// Apply pending migrations and exit.
    Migrate {
        /// Only this schema (users, products, orders, orders_read, payments). `--module`
        /// is the old spelling of the same flag.
        #[arg(long, alias = "module")]
        schema: Option<String>,
    },
    /// Manage users on the database directly.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Manage the token signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print the event catalog (AsyncAPI 3, as `GET /asyncapi.json` serves it) and exit.
    Asyncapi,
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Add staff roles (catalog, fulfilment, support, admin) to the user with this email.
    Grant {
        email: String,
        #[arg(required = true)]
        roles: Vec<kernel::Role>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new signing key; the old one keeps verifying until its tokens have expired.
    Rotate,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Json,
    Pretty,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Asyncapi) = cli.command {
        // The document is the command's whole output: answered before logging (to stdout)
        // starts.
        use std::io::Write;
        std::io::stdout().write_all(emporium::asyncapi::text().as_bytes())?;
        return Ok(());
    }
    // Held to the end of `main`: dropping it writes out the lines still queued.
    let _logs = init_logs(cli.log_format, cli.log_spans);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate { schema } => emporium::migrate(&cli.config, schema.as_deref()).await,
        Command::Serve => serve(&cli.config).await,
        Command::Users {
            command: UsersCommand::Grant { email, roles },
        } => emporium::grant(&cli.config, &email, &roles).await,
        Command::Keys {
            command: KeysCommand::Rotate,
        } => {
            let kid = emporium::rotate_key(&cli.config).await?;
            tracing::info!(kid, "new signing key");
            Ok(())
        }
        Command::Asyncapi => unreachable!("answered before logging starts"),
    }
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    let running = emporium::start(config).await?;
    tracing::info!(
        url = format!("http://{}", running.address),
        "emporium is listening"
    );
    let handle = running.handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing requests in flight");
        handle.stop(true).await;
    });
    running.wait().await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Lines go to stdout from a thread of their own ([`kernel::logs::batched`]): a request's
/// worker formats its line and appends it to a buffer, and the writer thread writes what
/// has gathered every 20 ms with one `write`, instead of a system call (or a wake-up of
/// another thread) per line. Never lossy: a worker waits rather than drop a line. The
/// returned guard writes out what waits when it drops.
fn init_logs(format: Option<LogFormat>, spans: bool) -> kernel::logs::LinesGuard {
    let (writer, guard) = kernel::logs::batched(
        std::io::stdout(),
        "logs",
        std::time::Duration::from_millis(20),
    )
    .expect("start the log writer thread");
    // tokio-postgres logs every statement's parameters at debug (password hashes, token
    // hashes): held at info whatever RUST_LOG says.
    let quiet = "tokio_postgres=info".parse().expect("a static directive");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        .add_directive(quiet);
    let json = match format {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Pretty) => false,
        None => !std::io::stdout().is_terminal(),
    };
    // `LOG_SPANS`: a line when each span closes, with its time, so a search by request id
    // shows every module call the request made, not only the ones that logged something.
    // Off by default: they were most of the lines.
    let span_events = if spans {
        tracing_subscriber::fmt::format::FmtSpan::CLOSE
    } else {
        tracing_subscriber::fmt::format::FmtSpan::NONE
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(span_events)
        .with_writer(writer);
    if json {
        builder
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(kernel::logs::FlatJson)
            .init()
    } else {
        builder.init()
    }
    guard
}
