//! The `xgate` command: serve, check, demo, token new, audit verify, tls init.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use xgate::config::{self, Overrides};
use xgate::gateway::Gateway;
use xgate::telemetry::{self, LogFormat};

/// mimalloc: the request path allocates many small, short-lived values (parsed records,
/// headers); glibc's allocator spent ~15% of the gateway's CPU on them in the benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// xgate: a data-exchange gateway between government department systems.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// How log lines look.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default command).
    Serve(ConfigArg),
    /// Load the configuration, schemas and formats; print every problem.
    Check(ConfigArg),
    /// Run the gateway on the example configuration with simulated department backends.
    Demo {
        /// Listen on free ports instead of the example configuration's (each plane that
        /// XGATE_LISTEN or XGATE_ADMIN_LISTEN does not name, and every simulated backend); the
        /// printed calls name them. For a demo beside another one.
        #[arg(long)]
        free_ports: bool,
    },
    /// Bearer tokens for departments.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// TLS certificates.
    Tls {
        #[command(subcommand)]
        command: TlsCommand,
    },
    /// The shared store (`[store] url` or XGATE_STORE_URL).
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Create or upgrade the store's tables (also done by every gateway at start).
    Migrate(ConfigArg),
    /// Copy the embedded deployment of the configuration (its `[registry] dir` schemas and
    /// `[audit] path` trail) into the empty store named by `[store] url` or XGATE_STORE_URL.
    Import(ConfigArg),
}

#[derive(Subcommand)]
enum TlsCommand {
    /// Generate a development CA, the gateway's certificate (localhost, 127.0.0.1) and one
    /// client certificate per department of the configuration (CN = department id).
    Init {
        /// The folder to write the PEM files to.
        dir: PathBuf,
        /// Replace files that exist already.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the whole hash chain: exit 0 when it holds, 1 with the first broken entry, 2 when
    /// the trail cannot be read.
    Verify(ConfigArg),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a fresh random token and the SHA-256 that goes in `token_sha256`.
    New,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// The main configuration file.
    #[arg(long, env = "XGATE_CONFIG", default_value = "config/xgate.toml")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let command = cli.command.unwrap_or_else(|| {
        Command::Serve(ConfigArg {
            config: std::env::var_os("XGATE_CONFIG")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("config/xgate.toml")),
        })
    });
    match command {
        Command::Check(ConfigArg { config }) => check(&config),
        Command::Token {
            command: TokenCommand::New,
        } => {
            let token = xgate::token::new_token();
            println!("token:  {}", token.token);
            println!("sha256: {}", token.sha256);
            println!("Give the token to the department; put only the sha256 in its token_sha256.");
            ExitCode::SUCCESS
        }
        Command::Audit {
            command: AuditCommand::Verify(ConfigArg { config }),
        } => audit_verify(&config),
        Command::Tls {
            command: TlsCommand::Init { dir, force, config },
        } => tls_init(&dir, force, &config.config),
        Command::Store {
            command: StoreCommand::Migrate(ConfigArg { config }),
        } => report(runtime().and_then(|rt| rt.block_on(store_migrate(&config)))),
        Command::Store {
            command: StoreCommand::Import(ConfigArg { config }),
        } => report(runtime().and_then(|rt| rt.block_on(store_import(&config)))),
        Command::Serve(ConfigArg { config }) => {
            let open_files = raise_open_files_limit();
            report(runtime().and_then(|rt| rt.block_on(serve(config, open_files))))
        }
        Command::Demo { free_ports } => {
            raise_open_files_limit();
            report(runtime().and_then(|rt| {
                let ports = if free_ports {
                    xgate::demo::Ports::Free
                } else {
                    xgate::demo::Ports::Configured
                };
                rt.block_on(async { xgate::demo::run(shutdown_signal(None), ports).await })
            }))
        }
    }
}

/// Raises the process's soft limit on open files to its hard limit (the soft default, often
/// 1,024, is far below what a gateway's connections need) and returns the limit in force.
#[cfg(unix)]
#[allow(unsafe_code)] // getrlimit, setrlimit: see the SAFETY comments
fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` only writes the limit into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `setrlimit` only reads the struct it is given. An unlimited hard limit cannot
        // be the soft one for open files (EPERM): the soft limit then stays as it was.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some(raised.rlim_cur);
        }
    }
    Some(limit.rlim_cur)
}

#[cfg(not(unix))]
fn raise_open_files_limit() -> Option<u64> {
    None
}

/// The async runtime: one worker thread per core the process may use (`XGATE_WORKERS`, or
/// tokio's own `TOKIO_WORKER_THREADS`, overrides). With one worker the current-thread scheduler
/// runs everything on the main thread: the same work without cross-thread synchronization,
/// about 8% less CPU per request (bench/README.md).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let workers = match std::env::var("XGATE_WORKERS")
        .or_else(|_| std::env::var("TOKIO_WORKER_THREADS"))
    {
        Ok(text) => text
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|workers| *workers > 0)
            .with_context(|| format!("XGATE_WORKERS must be a positive number, not {text:?}"))?,
        Err(_) => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
    };
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xgate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    let overrides = Overrides::from_env();
    // With a store, the schemas the departments name are the store's: read them from there,
    // and report a store that cannot be reached (SPEC §13; the reason never holds the URL).
    let stored = config::load_main(path, &overrides)
        .ok()
        .and_then(|main| main.store)
        .map(|settings| {
            runtime().and_then(|runtime| {
                runtime.block_on(async {
                    let store = xgate::store::Store::connect(&settings).await?;
                    let mut client = store.client().await?;
                    Ok(xgate::store::registry::read_all(&mut client).await?)
                })
            })
        });
    let config::Inspection {
        config,
        registry,
        mut problems,
    } = match stored {
        None => config::inspect(path, &overrides),
        Some(stored) => config::inspect_with(path, &overrides, |config, problems| match stored {
            Ok(schemas) => Some(xgate_core::registry::Registry::assemble(
                xgate::store::registry::as_folders(&schemas),
                config.registry.default_compatibility,
                problems,
                config::compile_workers(),
            )),
            Err(error) => {
                problems.push(config::Problem {
                    file: config.path.clone(),
                    key: "store.url".to_owned(),
                    reason: format!("the store cannot be reached: {error:#}"),
                });
                None
            }
        }),
    };
    if let Some(config) = &config {
        // The certificates and keys too: readable, parseable, each key matching its
        // certificate. A `[tls]` path already reported missing is not read again.
        let tls_reported = problems
            .iter()
            .any(|problem| problem.file == config.path && problem.key.starts_with("tls."));
        if !tls_reported && let Err(tls) = xgate::tls::TlsMaterial::load(config) {
            problems.extend(tls.0);
        }
    }
    match (config, registry) {
        (Some(config), Some(registry)) if problems.is_empty() => {
            let services: usize = config.departments.iter().map(|d| d.services.len()).sum();
            let versions: usize = registry
                .schemas()
                .map(|(_, entry)| entry.versions.len())
                .sum();
            println!(
                "{}: ok ({} departments, {} services, {} schemas with {} versions)",
                path.display(),
                config.departments.len(),
                services,
                registry.schemas().count(),
                versions
            );
            ExitCode::SUCCESS
        }
        _ => {
            if problems.is_empty() {
                println!("{}: the configuration could not be loaded", path.display());
            }
            for problem in &problems {
                println!("{problem}");
            }
            println!("{} problem(s) found", problems.len().max(1));
            ExitCode::FAILURE
        }
    }
}

/// `xgate tls init`: development certificates for the departments of the configuration.
fn tls_init(dir: &std::path::Path, force: bool, path: &std::path::Path) -> ExitCode {
    let config = match config::load(path, &Overrides::from_env()) {
        Ok((config, _registry)) => config,
        Err(problems) => {
            eprintln!("xgate: the configuration has problems:\n{problems}");
            return ExitCode::FAILURE;
        }
    };
    let departments: Vec<_> = config.departments.iter().map(|d| d.id.clone()).collect();
    match xgate::tls::init::init(dir, &departments, force) {
        Ok(files) => {
            for file in &files {
                println!("wrote {}", file.display());
            }
            println!(
                "Development certificates only. To serve mutual TLS, add to {} (paths relative to its folder):",
                path.display()
            );
            println!("[tls]");
            println!("cert = \"<dir>/gateway.pem\"");
            println!("key = \"<dir>/gateway-key.pem\"");
            println!("client_ca = \"<dir>/ca.pem\"");
            println!(
                "and give each department its departments/<id>.pem and departments/<id>-key.pem."
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("xgate: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `xgate audit verify`: reads the database of `[audit] path` (never creates it) and checks
/// the chain with `[audit] hash`.
fn audit_verify(path: &std::path::Path) -> ExitCode {
    // Only the main file matters here: `[audit]`, and `[store]` when the trail is there.
    let config = match config::load_main(path, &Overrides::from_env()) {
        Ok(config) => config,
        Err(problems) => {
            eprintln!("xgate: the configuration has problems:\n{problems}");
            return ExitCode::FAILURE;
        }
    };
    let (database, verified) = match &config.store {
        None => (
            config.audit.path.display().to_string(),
            xgate_audit::verify_file(&config.audit),
        ),
        Some(settings) => (
            "the store's trail".to_owned(),
            match runtime() {
                Ok(runtime) => runtime.block_on(async {
                    let store = match xgate::store::Store::connect(settings).await {
                        Ok(store) => store,
                        Err(error) => {
                            eprintln!("xgate: cannot reach the store: {error}");
                            return Err(None);
                        }
                    };
                    let mut client = store.client().await.map_err(|error| {
                        eprintln!("xgate: cannot reach the store: {error}");
                        None
                    })?;
                    xgate_audit::postgres::verify_store(&mut client, config.audit.hash)
                        .await
                        .map_err(Some)
                }),
                Err(error) => {
                    eprintln!("xgate: {error:#}");
                    return ExitCode::from(2);
                }
            }
            .map_err(|error| error.unwrap_or(xgate_audit::AuditError::TaskFailed)),
        ),
    };
    match verified {
        Ok(verification) => match verification.broken {
            None => {
                println!(
                    "{database}: ok, {} entries, head {}",
                    verification.count,
                    verification.head.as_deref().unwrap_or("-")
                );
                ExitCode::SUCCESS
            }
            Some(broken) => {
                println!(
                    "{database}: broken at entry {}: {} ({} entries verify before it)",
                    broken.sequence, broken.reason, verification.count
                );
                ExitCode::FAILURE
            }
        },
        Err(error) => {
            eprintln!("xgate: cannot read the audit trail {database}: {error}");
            ExitCode::from(2)
        }
    }
}

/// `xgate store migrate`: brings the store's tables to this build's layout.
async fn store_migrate(path: &std::path::Path) -> anyhow::Result<()> {
    let config = config::load_main(path, &Overrides::from_env())
        .map_err(|problems| anyhow::anyhow!("the configuration has problems:\n{problems}"))?;
    let settings = config
        .store
        .as_ref()
        .context("the configuration names no store: add [store] url, or set XGATE_STORE_URL")?;
    let store = xgate::store::Store::connect(settings)
        .await
        .context("cannot reach the store")?;
    let migrated = xgate::store::migrate::migrate(&store, &config.gateway.instance)
        .await
        .context("cannot migrate the store")?;
    if migrated.from == migrated.to {
        println!("store: layout {} already (nothing to do)", migrated.to);
    } else {
        println!(
            "store: migrated from layout {} to {}",
            migrated.from, migrated.to
        );
    }
    Ok(())
}

/// `xgate store import`: the embedded deployment's schemas (and trail) into an empty store.
async fn store_import(path: &std::path::Path) -> anyhow::Result<()> {
    let overrides = Overrides::from_env();
    // The files, whatever `[store]` says: they are what is copied.
    let (config, registry) = {
        let (path, overrides) = (path.to_owned(), overrides.clone());
        tokio::task::spawn_blocking(move || config::load(&path, &overrides))
            .await?
            .map_err(|problems| anyhow::anyhow!("the configuration has problems:\n{problems}"))?
    };
    let settings = config
        .store
        .as_ref()
        .context("the configuration names no store: add [store] url, or set XGATE_STORE_URL")?;
    let store = xgate::store::Store::connect(settings)
        .await
        .context("cannot reach the store")?;
    xgate::store::migrate::migrate(&store, &config.gateway.instance)
        .await
        .context("cannot migrate the store")?;
    let mut client = store.client().await?;
    let imported = xgate::store::registry::import(&mut client, &registry, &config.gateway.instance)
        .await
        .context("cannot copy the schemas")?
        .context("the store holds schemas already; import copies into an empty store only")?;
    println!(
        "schemas: {} schemas with {} versions copied from {}",
        imported.schemas,
        imported.versions,
        config.registry.dir.display()
    );
    let trail = &config.audit;
    if !trail.path.is_file() {
        println!("trail: none at {} (nothing to copy)", trail.path.display());
        return Ok(());
    }
    let before = {
        let trail = trail.clone();
        tokio::task::spawn_blocking(move || xgate_audit::verify_file(&trail)).await??
    };
    println!(
        "trail: {} verifies before: {} entries, head {}",
        trail.path.display(),
        before.count,
        before.head.as_deref().unwrap_or("-")
    );
    xgate_audit::postgres::open(&client, trail.hash)
        .await
        .context("cannot open the store's trail")?;
    let copied = xgate_audit::postgres::import_sqlite(&trail.path, trail.hash, &mut client)
        .await
        .context("cannot copy the trail")?;
    let after = xgate_audit::postgres::verify_store(&mut client, trail.hash)
        .await
        .context("cannot verify the store's trail")?;
    println!(
        "trail: {copied} entries copied; the store's trail verifies after: {} ({} entries, head {})",
        if after.ok { "ok" } else { "BROKEN" },
        after.count,
        after.head.as_deref().unwrap_or("-")
    );
    anyhow::ensure!(
        after.ok && after.head == before.head,
        "the copied trail does not verify to the same head"
    );
    Ok(())
}

async fn serve(path: PathBuf, open_files: Option<u64>) -> anyhow::Result<()> {
    let loaded = xgate::startup::load(&path, &Overrides::from_env()).await?;
    let needed = xgate::admission::open_files_needed(&loaded.config);
    match open_files {
        Some(limit) if limit < needed => tracing::warn!(
            limit,
            needed,
            "the configured bounds (max_connections on both listeners, the upstream connection \
             caps) need more open files than the process may have; raise its limit \
             (LimitNOFILE=, ulimit -Hn) or lower the bounds, or accepts will fail before the \
             bounds refuse anything"
        ),
        Some(limit) => tracing::debug!(limit, needed, "open files"),
        None => tracing::warn!("cannot read the process's limit on open files"),
    }
    // The audit trail (its hash, its chain head) and the TLS files are checked before any
    // port is bound: a gateway that cannot start never says it is listening.
    let (listen, admin_listen) = (
        loaded.config.gateway.listen,
        loaded.config.gateway.admin_listen,
    );
    let gateway = xgate::startup::start(loaded).await?;
    let data = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (data plane)"))?;
    let admin = TcpListener::bind(admin_listen)
        .await
        .with_context(|| format!("cannot listen on {admin_listen} (admin plane)"))?;
    tracing::info!(data = %listen, admin = %admin_listen, "listening");
    reload_on_hangup(gateway.clone());
    let shutdown = shutdown_signal(Some(gateway.clone()));
    xgate::server::run(gateway, data, admin, shutdown).await
}

/// SIGHUP reloads the configuration, as `POST /admin/reload` does; a refused reload is logged
/// with its problems and the running configuration stays.
#[cfg(unix)]
fn reload_on_hangup(gateway: std::sync::Arc<Gateway>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => hangup,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; reload with POST /admin/reload");
            return;
        }
    };
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            match gateway.reload().await {
                Ok(()) => tracing::info!("reloaded on SIGHUP"),
                Err(problems) => tracing::error!(
                    %problems,
                    "reload on SIGHUP refused; the running configuration stays"
                ),
            }
        }
    });
}

#[cfg(not(unix))]
fn reload_on_hangup(_gateway: std::sync::Arc<Gateway>) {}

/// Completes on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when this is called
/// (inside the runtime), not when the future is first polled, so a signal that arrives while
/// the gateway is starting is not lost.
#[cfg(unix)]
fn shutdown_signal(
    gateway: Option<std::sync::Arc<Gateway>>,
) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        match (interrupt, terminate) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                // A second signal cuts `[gateway] drain_delay_ms` short (an operator's second
                // Ctrl-C); the drain of in-flight requests still runs.
                if let Some(gateway) = gateway {
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = interrupt.recv() => {}
                            _ = terminate.recv() => {}
                        }
                        gateway.cut_drain_delay();
                    });
                }
            }
            // Without signal handlers the process can only be killed; never stop on our own.
            _ => std::future::pending::<()>().await,
        }
    }
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal(
    _gateway: Option<std::sync::Arc<Gateway>>,
) -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
