//! SPEC §12's scale target, measured: a generated deployment of 1,000 departments, 10,000
//! services and 5,000 schema versions ([`generate::Deployment::TARGET`]) loaded from files by
//! `xgate::config::load`, the function a gateway's start and every reload call. The target is
//! under 2 s.
//!
//! `cargo bench --bench scale` writes the deployment to a temporary folder, loads it
//! `XGATE_BENCH_ROUNDS` times (5 by default) and prints the counts it loaded and the minimum and
//! median seconds; then the same for the schemas alone (the same schema folder, no department
//! files), which says how the time divides between compiling the registry and checking the
//! department files. Not a criterion bench: one load takes seconds, and its min and median over
//! a few runs are the number.

use std::path::Path;
use std::time::{Duration, Instant};

use xgate::config::{self, Overrides};

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

/// Loads `main` once, returning what it holds and how long it took.
fn load_once(main: &Path) -> (Loaded, Duration) {
    let started = Instant::now();
    let loaded = config::load(main, &Overrides::default());
    let elapsed = started.elapsed();
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
    (loaded, elapsed)
}

/// Loads `main` `rounds` times and prints the counts and the minimum and median seconds.
fn measure(label: &str, main: &Path, rounds: usize) {
    let mut times = Vec::with_capacity(rounds);
    let mut counts = None;
    for _ in 0..rounds {
        let (loaded, elapsed) = load_once(main);
        times.push(elapsed);
        counts = Some(loaded);
    }
    times.sort();
    let Some(counts) = counts else { return };
    let seconds = |duration: Duration| duration.as_secs_f64();
    println!(
        "{label}: {} departments, {} services, {} schema versions: min {:.3} s, median {:.3} s, max {:.3} s ({} runs)",
        counts.departments,
        counts.services,
        counts.versions,
        seconds(times[0]),
        seconds(times[times.len() / 2]),
        seconds(times[times.len() - 1]),
        times.len(),
    );
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
    measure("config::load (everything)", &written.main, rounds);

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
    measure(
        "config::load (schemas alone)",
        &config_dir.join("xgate.toml"),
        rounds,
    );
}
