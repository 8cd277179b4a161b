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

/// Loads `main` once, returning what it holds and how long it took.
fn load_once(main: &Path) -> (Loaded, Took) {
    let cpu_before = cpu_time();
    let started = Instant::now();
    let loaded = config::load(main, &Overrides::default());
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

/// Loads `main` `rounds` times and prints the counts and the minimum and median seconds, on
/// the clock and in CPU time.
fn measure(label: &str, main: &Path, rounds: usize) {
    let mut walls = Vec::with_capacity(rounds);
    let mut cpus = Vec::with_capacity(rounds);
    let mut counts = None;
    for _ in 0..rounds {
        let (loaded, took) = load_once(main);
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
