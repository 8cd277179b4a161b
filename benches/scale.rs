//! SPEC §12's scale target, measured: a generated deployment of 1,000 departments, 10,000
//! services and 5,000 schema versions ([`generate::Deployment::TARGET`]) loaded from files by
//! `xgate::config::load`, the function a gateway's start and every reload call. The target is
//! under 2 s.
//!
//! `cargo bench --bench scale` writes the deployment to a temporary folder, loads it
//! `XGATE_BENCH_ROUNDS` times (5 by default) and prints the counts it loaded, the first load's
//! seconds (a gateway's start: the process's first load, which takes fresh memory from the
//! kernel), and the minimum and median seconds (on the clock, and in CPU time, which a busy machine does not lengthen); then the same for the schemas alone (the same schema folder, no department
//! files), which says how the time divides between compiling the registry and checking the
//! department files. Not a criterion bench: one load takes seconds, and its min and median over
//! a few runs are the number.
//!
//! Then the same deployment from the shared store (SPEC §13): a fresh database on the
//! PostgreSQL server of `XGATE_BENCH_PG_URL` (by default
//! `postgres://postgres@127.0.0.1:5432/postgres`), migrated, the generated schema folder
//! imported into it (as `xgate store import` does), and `xgate::startup::load` timed with the
//! store's URL as the override: what a gateway on the store pays at start (connect, migrate,
//! read the registry in one snapshot, compile it with the department files). The CPU time is
//! this process's, not the database server's. Skipped, saying so, when no server answers; the
//! database is dropped afterwards. `XGATE_BENCH_STORE_ONLY=1` times the store's loads alone (so
//! that the first of them is the process's first load, as at a gateway's start).

use std::path::Path;
use std::time::{Duration, Instant};

use xgate::config::{self, Config, Overrides};
use xgate_core::registry::Registry;

#[path = "scale/generate.rs"]
mod generate;

use generate::Deployment;

/// The gateway's allocator (`src/main.rs`), so allocation costs are the ones it pays.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What one load found.
struct Loaded {
    departments: usize,
    services: usize,
    versions: usize,
}

/// The CPU time this process has used so far, all threads, user and system: fields 14 and 15
/// of `/proc/self/stat`, in clock ticks of 1/100 s (Linux's `USER_HZ`); zero where it cannot be
/// read.
fn cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // The command name (field 2) is in parentheses and may hold spaces.
            let after_name = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = after_name.split_whitespace().collect();
            // `after_name` starts at field 3.
            let user: u64 = fields.get(14 - 3)?.parse().ok()?;
            let system: u64 = fields.get(15 - 3)?.parse().ok()?;
            Some(user + system)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// How long one load took: on the clock, and in CPU time (which other work on a shared
/// machine does not lengthen).
#[derive(Clone, Copy)]
struct Took {
    wall: Duration,
    cpu: Duration,
}

/// Runs `load` once, returning what it loaded and how long it took.
fn load_once(load: &mut dyn FnMut() -> Result<(Config, Registry), String>) -> (Loaded, Took) {
    let cpu_before = cpu_time();
    let started = Instant::now();
    let loaded = load();
    let took = Took {
        wall: started.elapsed(),
        cpu: cpu_time().saturating_sub(cpu_before),
    };
    let (config, registry) = match loaded {
        Ok(loaded) => loaded,
        Err(problems) => {
            eprintln!("the generated deployment has problems:\n{problems}");
            std::process::exit(1);
        }
    };
    let loaded = Loaded {
        departments: config.departments.len(),
        services: config.departments.iter().map(|d| d.services.len()).sum(),
        versions: registry
            .schemas()
            .map(|(_, entry)| entry.versions.len())
            .sum(),
    };
    drop((config, registry));
    (loaded, took)
}

/// `config::load` of `main`, from files.
fn from_files(main: &Path) -> impl FnMut() -> Result<(Config, Registry), String> + '_ {
    move || config::load(main, &Overrides::default()).map_err(|problems| problems.to_string())
}

/// Runs `load` `rounds` times and prints the counts and the minimum and median seconds, on
/// the clock and in CPU time.
fn measure(
    label: &str,
    mut load: impl FnMut() -> Result<(Config, Registry), String>,
    rounds: usize,
) {
    let mut walls = Vec::with_capacity(rounds);
    let mut cpus = Vec::with_capacity(rounds);
    let mut counts = None;
    for _ in 0..rounds {
        let (loaded, took) = load_once(&mut load);
        walls.push(took.wall);
        cpus.push(took.cpu);
        counts = Some(loaded);
    }
    let Some(counts) = counts else { return };
    println!(
        "{label}: {} departments, {} services, {} schema versions ({} runs)",
        counts.departments, counts.services, counts.versions, rounds,
    );
    // The first load of a process takes fresh memory from the kernel (a gateway's start);
    // later ones reuse what the allocator kept (a reload).
    println!(
        "  first: wall {:.3} s, cpu {:.3} s",
        walls[0].as_secs_f64(),
        cpus[0].as_secs_f64()
    );
    for (what, mut times) in [("wall", walls), ("cpu ", cpus)] {
        times.sort();
        println!(
            "  {what}: min {:.3} s, median {:.3} s, max {:.3} s",
            times[0].as_secs_f64(),
            times[times.len() / 2].as_secs_f64(),
            times[times.len() - 1].as_secs_f64(),
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that is not this bench's name skips it.
    let filter = std::env::args()
        .skip(1)
        .find(|argument| !argument.starts_with("--"));
    if filter.is_some_and(|filter| !"scale".contains(filter.as_str())) {
        return;
    }
    let rounds = std::env::var("XGATE_BENCH_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .filter(|&rounds| rounds > 0)
        .unwrap_or(5);
    let deployment = Deployment::TARGET;
    let root = tempfile::tempdir().expect("a temporary folder");
    let started = Instant::now();
    let written = generate::write(root.path(), &deployment).expect("the generated deployment");
    println!(
        "generated {} departments, {} services, {} schemas x {} versions ({:.1} MB of files) in {:.2} s",
        deployment.departments,
        deployment.services,
        deployment.schemas,
        deployment.versions_per_schema,
        written.bytes as f64 / 1e6,
        started.elapsed().as_secs_f64(),
    );
    // `XGATE_BENCH_STORE_ONLY=1`: the store's loads alone, so that its first is the process's.
    if std::env::var_os("XGATE_BENCH_STORE_ONLY").is_some_and(|only| only == "1") {
        measure_store(&written.main, rounds);
        return;
    }
    measure(
        "config::load (everything)",
        from_files(&written.main),
        rounds,
    );

    // The same schemas without a department file: the registry's share of the load.
    let schemas_only = tempfile::tempdir().expect("a temporary folder");
    let config_dir = schemas_only.path().join("config");
    std::fs::create_dir_all(config_dir.join("departments")).expect("a departments folder");
    std::fs::write(config_dir.join("xgate.toml"), generate::main_file()).expect("a main file");
    std::os::unix::fs::symlink(
        root.path().join("schemas"),
        schemas_only.path().join("schemas"),
    )
    .expect("a link to the schemas");
    let schemas_main = config_dir.join("xgate.toml");
    measure(
        "config::load (schemas alone)",
        from_files(&schemas_main),
        rounds,
    );

    measure_store(&written.main, rounds);
}

/// The server `measure_store` makes its database on.
const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// `server` (a URL) with its database replaced by `name`.
fn database_url(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server, None),
    };
    let scheme_end = base.find("://").map_or(0, |at| at + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// A connection to `url`, its connection task spawned on the current runtime.
async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// The deployment of `main` from the store: a fresh database with the generated schemas
/// imported, then `startup::load` timed `rounds` times; the database dropped at the end.
fn measure_store(main: &Path, rounds: usize) {
    let server = std::env::var("XGATE_BENCH_PG_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let admin = runtime.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(5), connect(&server)).await
    });
    let admin = match admin {
        Ok(Ok(admin)) => admin,
        Ok(Err(error)) => {
            println!(
                "startup::load from the store: skipped, no PostgreSQL server answers at XGATE_BENCH_PG_URL (default {DEFAULT_SERVER}): {error}"
            );
            return;
        }
        Err(_) => {
            println!(
                "startup::load from the store: skipped, no PostgreSQL server answers at XGATE_BENCH_PG_URL (default {DEFAULT_SERVER}) within 5 s"
            );
            return;
        }
    };
    let name = format!("xgate_bench_{}", uuid::Uuid::new_v4().simple());
    runtime
        .block_on(admin.batch_execute(&format!("CREATE DATABASE {name}")))
        .expect("a database for the bench");
    let url = database_url(&server, &name);
    let overrides = Overrides {
        store_url: Some(url),
        ..Overrides::default()
    };

    let started = Instant::now();
    let imported = runtime.block_on(async {
        let (config, registry) =
            config::load(main, &Overrides::default()).map_err(|problems| problems.to_string())?;
        let main_file =
            config::load_main(main, &overrides).map_err(|problems| problems.to_string())?;
        let settings = main_file.store.ok_or("no [store] with the override")?;
        let store = xgate::store::Store::connect(&settings)
            .await
            .map_err(|error| error.to_string())?;
        xgate::store::migrate::migrate(&store, &config.gateway.instance)
            .await
            .map_err(|error| error.to_string())?;
        let mut client = store.client().await.map_err(|error| error.to_string())?;
        xgate::store::registry::import(&mut client, &registry, &config.gateway.instance)
            .await
            .map_err(|error| error.to_string())?
            .ok_or_else(|| "the fresh store holds schemas".to_owned())
    });
    match imported {
        Ok(imported) => {
            println!(
                "imported {} schemas with {} versions into a fresh store in {:.2} s",
                imported.schemas,
                imported.versions,
                started.elapsed().as_secs_f64()
            );
            measure(
                "startup::load from the store (everything)",
                || {
                    runtime
                        .block_on(xgate::startup::load(main, &overrides))
                        .map(|loaded| (loaded.config, loaded.registry))
                        .map_err(|error| format!("{error:#}"))
                },
                rounds,
            );
        }
        Err(error) => eprintln!("cannot import the deployment into the store: {error}"),
    }
    let dropped = runtime
        .block_on(admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")));
    if let Err(error) = dropped {
        eprintln!("cannot drop the bench's database {name}: {error}");
    }
}
