//! The `entrepot` command: parse flags, load the config, set up logging, serve.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use entrepot::{App, Config};

#[derive(Parser)]
#[command(
    name = "entrepot",
    version,
    about = "A caching pull-through proxy for OCI registries"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the registry pull API, fetching misses from the configured upstreams.
    Serve {
        /// The configuration file.
        #[arg(long, default_value = "config.toml")]
        config: PathBuf,
        /// Listen on this address instead of the config's `listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Keep the cache here instead of the config's `data_dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Never contact an upstream: serve what is cached.
        #[arg(long)]
        offline: bool,
    },
}

/// Exit status for a configuration the process cannot run with.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let Command::Serve {
        config,
        listen,
        data_dir,
        offline,
    } = Cli::parse().command;
    let mut cfg = match Config::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("entrepot: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(l) = listen {
        cfg.listen = l;
    }
    if let Some(d) = data_dir {
        cfg.data_dir = d;
    }
    cfg.offline |= offline;
    init_tracing(&cfg.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("entrepot: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cfg))
}

fn init_tracing(config_level: &str) {
    // RUST_LOG, when set, wins over the config file.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(config_level));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cfg: Config) -> ExitCode {
    let listen = cfg.listen;
    let offline = cfg.offline;
    let app = match App::build(cfg) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("entrepot: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("entrepot: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let upstreams: Vec<&str> = app.config.upstreams.iter().map(|u| u.name.as_str()).collect();
    tracing::info!(%listen, offline, ?upstreams, data_dir = %app.config.data_dir.display(), "entrepot serving");
    entrepot::server::serve(app, listener, shutdown_signal()).await;
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
