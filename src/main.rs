//! The `entrepot` command: parse flags, load the config, set up logging, run.

use std::future::Future;
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
        #[command(flatten)]
        config: ConfigArg,
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
    /// Apply retention now: print what goes and why.
    Gc {
        #[command(flatten)]
        config: ConfigArg,
        /// Only print what would go.
        #[arg(long)]
        dry_run: bool,
    },
    /// Hash every stored blob and manifest again; quarantine what no longer matches its
    /// digest (it is fetched again on the next pull). Exits 1 when it found any.
    Scrub {
        #[command(flatten)]
        config: ConfigArg,
        /// Read at most this many bytes a second ("64MiB", "1GiB"); default: `scrub_rate`.
        #[arg(long)]
        rate: Option<String>,
    },
    /// Explain policy decisions.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Inspect the cache.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Warm the cache with references (or files listing them, one a line).
    Seed {
        #[command(flatten)]
        config: ConfigArg,
        /// References as clients write them (docker.io/library/alpine:3.20, ghcr.io/o/a@sha256:…),
        /// or files listing them.
        #[arg(required = true)]
        references: Vec<String>,
        /// Only these platforms of an index (os/arch[/variant], globs); repeatable. Default: all.
        #[arg(long = "platform")]
        platforms: Vec<String>,
        /// Also fetch referrers (signatures, SBOMs, attestations).
        #[arg(long)]
        referrers: bool,
        /// References fetched at once.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
    },
    /// Write what is cached as an OCI image layout: a tar archive (X.tar, or - for standard
    /// output) or a directory.
    Export {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        out: String,
        /// Only these upstreams (globs).
        #[arg(long)]
        upstream: Option<String>,
        /// Only these repositories (globs, as the upstream names them: library/alpine).
        #[arg(long)]
        repository: Option<String>,
        /// Only these tags (globs).
        #[arg(long)]
        tag: Option<String>,
        /// Only what was cached after this mark, printed by an earlier export.
        #[arg(long)]
        since: Option<u64>,
    },
    /// Load an OCI image layout (a directory, a tar archive, or - for standard input).
    Import {
        #[command(flatten)]
        config: ConfigArg,
        path: String,
        /// The upstream for entries that do not name one.
        #[arg(long)]
        upstream: Option<String>,
        /// The repository for entries that do not name one (a plain tag in ref.name).
        #[arg(long)]
        repository: Option<String>,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// The decision for a reference (and each child of an index), without pulling blobs.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// As clients write it: docker.io/library/alpine:3.20, ghcr.io/org/app@sha256:…
        reference: String,
    },
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Count, bytes and hits per retention class and per upstream.
    Stats {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(clap::Args)]
struct ConfigArg {
    /// The configuration file.
    #[arg(long = "config", id = "config", default_value = "config.toml")]
    file: PathBuf,
}

/// Exit status for a configuration the process cannot run with.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let command = Cli::parse().command;
    let config_path = match &command {
        Command::Serve { config, .. } | Command::Gc { config, .. } | Command::Scrub { config, .. } => &config.file,
        Command::Policy {
            command: PolicyCommand::Check { config, .. },
        } => &config.file,
        Command::Cache {
            command: CacheCommand::Stats { config },
        } => &config.file,
        Command::Seed { config, .. } | Command::Export { config, .. } | Command::Import { config, .. } => &config.file,
    };
    let mut cfg = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("entrepot: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // A server's lines go through the batching writer; a command's are written as they come.
    let _log = entrepot::logging::init(&cfg.log, cfg.log_format, matches!(command, Command::Serve { .. }));
    match command {
        Command::Serve {
            listen,
            data_dir,
            offline,
            ..
        } => {
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            cfg.offline |= offline;
            block_on(serve(cfg))
        }
        Command::Gc { dry_run, .. } => block_on(print(entrepot::ops::gc(cfg, dry_run))),
        Command::Scrub { rate, .. } => {
            let rate = match rate.as_deref().map(|r| entrepot::config::parse_size(r).ok_or(r)) {
                None => None,
                Some(Ok(r)) => Some(r),
                Some(Err(r)) => {
                    eprintln!("entrepot: --rate {r:?} is not a size like \"64MiB\"");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            block_on(scrub(cfg, rate))
        }
        Command::Policy {
            command: PolicyCommand::Check { reference, .. },
        } => block_on(print(entrepot::ops::policy_check(cfg, &reference))),
        Command::Cache {
            command: CacheCommand::Stats { .. },
        } => block_on(print(entrepot::ops::stats(cfg))),
        Command::Seed {
            references,
            platforms,
            referrers,
            parallel,
            ..
        } => {
            let opts = entrepot::seed::Options {
                platforms,
                referrers,
                parallel,
            };
            block_on(async move {
                match entrepot::ops::seed(cfg, &references, opts).await {
                    Ok((summary, all_ok)) => {
                        print!("{summary}");
                        if all_ok {
                            ExitCode::SUCCESS
                        } else {
                            ExitCode::FAILURE
                        }
                    }
                    Err(e) => {
                        eprintln!("entrepot: {e}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
        Command::Export {
            out,
            upstream,
            repository,
            tag,
            since,
            ..
        } => {
            let glob = |g: Option<String>| g.map(entrepot::policy::glob::Globs::One);
            let selection = entrepot::layout::export::Selection {
                upstream: glob(upstream),
                repository: glob(repository),
                tag: glob(tag),
                since,
            };
            // With the archive on standard output, the summary goes to standard error.
            let to_stdout = out == "-";
            block_on(async move {
                match entrepot::ops::export(cfg, selection, &out).await {
                    Ok(summary) if to_stdout => {
                        eprint!("{summary}");
                        ExitCode::SUCCESS
                    }
                    other => print(async { other }).await,
                }
            })
        }
        Command::Import {
            path,
            upstream,
            repository,
            ..
        } => {
            let placement = entrepot::layout::import::Placement { upstream, repository };
            block_on(print(entrepot::ops::import(cfg, &path, placement)))
        }
    }
}

fn block_on(f: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("entrepot: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn print(report: impl Future<Output = entrepot::Result<String>>) -> ExitCode {
    match report.await {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("entrepot: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the scrub's report; exits 1 when it found corrupt content.
async fn scrub(cfg: Config, rate: Option<u64>) -> ExitCode {
    match entrepot::ops::scrub(cfg, rate).await {
        Ok((text, corrupt)) => {
            print!("{text}");
            if corrupt {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("entrepot: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cfg: Config) -> ExitCode {
    let listen = cfg.listen;
    let offline = cfg.offline;
    let app = match App::open(cfg) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("entrepot: {e}");
            return ExitCode::FAILURE;
        }
    };
    entrepot::server::raise_open_files_limit(app.config.max_connections);
    let admin = entrepot::server::bind_admin_socket(&app);
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("entrepot: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let upstreams: Vec<&str> = app.config.upstreams.iter().map(|u| u.name.as_str()).collect();
    tracing::info!(%listen, offline, ?upstreams, data_dir = %app.config.data_dir.display(), "entrepot serving");
    entrepot::server::serve(app, listener, admin, shutdown_signal()).await;
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
