//! The request path's JSON cost on the records departments send in bulk (issue 15, points 3 and
//! 12): parse, validate, translate and serialize arrays of records of 10 KB and 100 KB, one fixture
//! string-heavy (shared business licences, built from the benchmark's record, translated record
//! by record into the bench consumer's own layout) and one
//! number-heavy (ledger rows: integers, amounts with decimals, rates, under `minimum`,
//! `maximum`, `multipleOf` and `type: integer`).
//!
//! `cargo bench --bench records` measures wall time with criterion. For numbers that do not
//! depend on the machine's load, run one phase of one fixture in a loop under callgrind, counting
//! the loop alone: `XGATE_BENCH_PHASE=parse XGATE_BENCH_FIXTURE=ledger-100k valgrind
//! --tool=callgrind --collect-atstart=no --toggle-collect='records::measured_rounds*'
//! target/release/deps/records-*` (phases: `parse`, `validate`, `translate` (licences only),
//! `serialize`, `all`; the loop
//! runs `XGATE_BENCH_ROUNDS` times, 20 by default), and divide the count by the rounds.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput};
use serde_json::{Value, json};
use xgate::config::Overrides;
use xgate::snapshot::Snapshot;
use xgate_core::domain::{SchemaName, SchemaVersion};
use xgate_core::i18n::Lang;
use xgate_core::registry::CompiledSchema;
use xgate_core::translate::{Direction, Format};

/// The gateway's allocator (`src/main.rs`), so allocation costs are the ones it pays.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One array of records, as bytes, with the schema it is valid under.
struct Fixture {
    name: String,
    bytes: Vec<u8>,
    schema: CompiledSchema,
    /// The format its records translate to own with (shared → own), when it has one.
    format: Option<Arc<Format>>,
}

/// A ledger row: what a tax or social-insurance department sends by the thousand.
fn ledger_row(index: usize) -> Value {
    let amount = format!("{}.{:02}", 1000 + index * 37, index % 100);
    let rate = format!("0.{:04}", (index * 7919) % 10_000);
    let text = format!(
        r#"{{"id":{},"period":"2024-{:02}","amount_yuan":{amount},"tax_yuan":{}.{:02},"rate":{rate},"count":{},"payer":"纳税人{index:06}","note":"季度申报 quarterly return {index}"}}"#,
        index + 1,
        index % 12 + 1,
        index * 3,
        index % 100,
        index % 500,
    );
    serde_json::from_str(&text).expect("a ledger row is JSON")
}

const LEDGER_SCHEMA: &str = r#"{
  "type": "array",
  "items": {
    "type": "object",
    "required": ["id", "period", "amount_yuan", "tax_yuan", "rate", "count", "payer"],
    "additionalProperties": false,
    "properties": {
      "id": {"type": "integer", "minimum": 1},
      "period": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"},
      "amount_yuan": {"type": "number", "minimum": 0, "multipleOf": 0.01},
      "tax_yuan": {"type": "number", "minimum": 0, "maximum": 1000000000, "multipleOf": 0.01},
      "rate": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
      "count": {"type": "integer", "minimum": 0, "multipleOf": 1},
      "payer": {"type": "string", "maxLength": 100},
      "note": {"type": "string", "maxLength": 200}
    }
  }
}"#;

/// Records appended until the array's text reaches `target_bytes`.
fn array_of(target_bytes: usize, record: impl Fn(usize) -> Value) -> Vec<u8> {
    let mut records = Vec::new();
    let mut length = 2;
    while length < target_bytes {
        let next = record(records.len());
        length += serde_json::to_vec(&next).expect("serializable").len() + 1;
        records.push(next);
    }
    serde_json::to_vec(&Value::Array(records)).expect("serializable")
}

fn compile(snapshot: &Snapshot, name: &str, document: Value) -> CompiledSchema {
    let documents: HashMap<String, Arc<Value>> = (**snapshot.registry.documents()).clone();
    xgate_core::registry::compile_version(
        &SchemaName::parse(name).expect("a schema name"),
        SchemaVersion::new(1).expect("version 1"),
        document,
        &documents,
        Lang::En,
    )
    .unwrap_or_else(|violations| panic!("{name}: {violations:?}"))
}

fn fixtures() -> Vec<Fixture> {
    let (config, registry) =
        xgate::config::load(Path::new("bench/config/xgate.toml"), &Overrides::default())
            .unwrap_or_else(|problems| panic!("bench configuration: {problems}"));
    let snapshot = Snapshot::new(config, registry);
    let consumer_format = snapshot
        .department("bench-consumer")
        .and_then(|department| department.formats.get("business-license"))
        .cloned()
        .expect("the bench consumer's business-license format");
    let own: Value = serde_json::from_slice(
        &std::fs::read("bench/data/request.json").expect("bench/data/request.json"),
    )
    .expect("the bench record is JSON");
    let licence = consumer_format
        .translate(&own, Direction::ToShared)
        .expect("the bench record translates");
    let licence_at = |index: usize| {
        let mut record = licence.clone();
        // Every record its own amounts, so no two numbers' texts are the same.
        record["registered_capital_yuan"] =
            serde_json::from_str(&format!("{}.{}", 10_000 + index, index % 10)).expect("number");
        record
    };
    let licences_schema = json!({
        "type": "array",
        "items": {"$ref": "urn:xgate:schema:business-license:1"}
    });
    let ledger_schema: Value = serde_json::from_str(LEDGER_SCHEMA).expect("the ledger schema");
    let mut fixtures = Vec::new();
    for (size, label) in [(10 * 1024, "10k"), (100 * 1024, "100k")] {
        fixtures.push(Fixture {
            name: format!("licences-{label}"),
            bytes: array_of(size, licence_at),
            schema: compile(&snapshot, "bench-licences", licences_schema.clone()),
            format: Some(consumer_format.clone()),
        });
        fixtures.push(Fixture {
            name: format!("ledger-{label}"),
            bytes: array_of(size, ledger_row),
            schema: compile(&snapshot, "bench-ledger", ledger_schema.clone()),
            format: None,
        });
    }
    for fixture in &fixtures {
        let record = parse(&fixture.bytes);
        let violations = fixture.schema.validate(&record, Lang::En);
        assert!(violations.is_empty(), "{}: {violations:?}", fixture.name);
        if let Some(format) = fixture.format.as_deref() {
            let records = record.as_array().map_or(0, Vec::len);
            assert_eq!(translate(format, &record), records, "{}", fixture.name);
        }
    }
    fixtures
}

/// The request path's parse: the gateway's own JSON reader.
fn parse(bytes: &[u8]) -> Value {
    xgate::body::parse_json(bytes).expect("a bench record is JSON")
}

fn validate(schema: &CompiledSchema, record: &Value) -> bool {
    schema.validate(record, Lang::En).is_empty()
}

/// Every record of the array into the consumer's own layout; the number translated.
fn translate(format: &Format, records: &Value) -> usize {
    records.as_array().map_or(0, |records| {
        records
            .iter()
            .filter(|record| format.translate(record, Direction::FromShared).is_ok())
            .count()
    })
}

fn serialize(record: &Value) -> Vec<u8> {
    serde_json::to_vec(record).expect("serializable")
}

fn all(fixture: &Fixture) -> usize {
    let record = parse(&fixture.bytes);
    assert!(validate(&fixture.schema, &record));
    serialize(&record).len()
}

/// The measured loop, kept out of line so that callgrind can count it alone:
/// `--collect-atstart=no --toggle-collect='records::measured_rounds*'`.
#[inline(never)]
fn measured_rounds(phase: &str, fixture: &Fixture, record: &Value, rounds: usize) -> usize {
    let mut total = 0usize;
    for _ in 0..rounds {
        total += match phase {
            "parse" => usize::from(parse(black_box(&fixture.bytes)).is_array()),
            "validate" => usize::from(validate(&fixture.schema, black_box(record))),
            "translate" => fixture
                .format
                .as_deref()
                .map_or(0, |format| translate(format, black_box(record))),
            "serialize" => serialize(black_box(record)).len(),
            "all" => all(black_box(fixture)),
            other => panic!("unknown phase {other}"),
        };
    }
    total
}

/// One phase of one fixture in a loop, for callgrind (see the module's documentation).
fn run_once(phase: &str, fixture_name: &str, rounds: usize) {
    let fixtures = fixtures();
    let fixture = fixtures
        .iter()
        .find(|fixture| fixture.name == fixture_name)
        .unwrap_or_else(|| panic!("no fixture {fixture_name}"));
    let record = parse(&fixture.bytes);
    let total = measured_rounds(phase, fixture, &record, rounds);
    println!(
        "{phase} {fixture_name} ({} bytes) x{rounds}: {total}",
        fixture.bytes.len()
    );
}

fn main() {
    if let Ok(phase) = std::env::var("XGATE_BENCH_PHASE") {
        let fixture = std::env::var("XGATE_BENCH_FIXTURE").unwrap_or_else(|_| "ledger-100k".into());
        let rounds = std::env::var("XGATE_BENCH_ROUNDS")
            .ok()
            .and_then(|rounds| rounds.parse().ok())
            .unwrap_or(20);
        run_once(&phase, &fixture, rounds);
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    for fixture in fixtures() {
        let record = parse(&fixture.bytes);
        let mut group = criterion.benchmark_group(&fixture.name);
        group.throughput(Throughput::Bytes(fixture.bytes.len() as u64));
        group.bench_function("parse", |b| b.iter(|| parse(black_box(&fixture.bytes))));
        group.bench_function("validate", |b| {
            b.iter(|| validate(&fixture.schema, black_box(&record)))
        });
        if let Some(format) = fixture.format.as_deref() {
            group.bench_function("translate", |b| {
                b.iter(|| translate(format, black_box(&record)))
            });
        }
        group.bench_function("serialize", |b| b.iter(|| serialize(black_box(&record))));
        group.bench_function("all", |b| b.iter(|| all(black_box(&fixture))));
        group.finish();
    }
    criterion.final_summary();
}
