//! Micro-benchmarks of the exchange path's phases (issue 4, point 3) on the benchmark's ~1 KB
//! business licence: the bench configuration (`bench/config/`), its consumer's and provider's
//! formats, and the records `bench/run.sh` sends and its upstream answers (`bench/data/`).
//!
//! Each phase is measured alone, through the library's public API only, and `pipeline` runs
//! every in-process step of the full path (both directions) one after the other, so the sum
//! of the phases can be checked against the whole. Run with
//! `cargo bench --bench phases -- --warm-up-time 1 --measurement-time 3`; `-- masks` runs the
//! masks' two alone (SPEC §15: `Masks::apply` on a ten-member household, and an exchange
//! without masks).

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, header};
use serde_json::Value;
use xgate::config::{Department, Overrides};
use xgate::snapshot::Snapshot;
use xgate_core::domain::DepartmentId;
use xgate_core::i18n::Lang;
use xgate_core::masking::{MaskKind, Masks};
use xgate_core::pointer::FieldPath;
use xgate_core::projection::Projection;
use xgate_core::registry::CompiledSchema;
use xgate_core::translate::{Direction, Format};

/// The gateway's allocator (`src/main.rs`), so allocation costs are the ones it pays.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Everything the phases read, loaded once from the bench configuration.
struct Bench {
    snapshot: Snapshot,
    /// The consumer's format (market regulation's layout).
    consumer_format: Arc<Format>,
    /// The provider's format (the tax bureau's layout).
    provider_format: Arc<Format>,
    schema: Arc<CompiledSchema>,
    /// The shared fields the consumer receives from the `full` service.
    projection: Projection,
    /// What the consumer sends, in its own layout.
    request_bytes: Vec<u8>,
    /// What the provider answers, in its own layout.
    response_bytes: Vec<u8>,
}

impl Bench {
    fn load() -> Bench {
        let (config, registry) =
            xgate::config::load(Path::new("bench/config/xgate.toml"), &Overrides::default())
                .unwrap_or_else(|problems| panic!("bench configuration: {problems}"));
        let snapshot = Snapshot::new(config, registry);
        let department = |id: &str| -> &Department {
            snapshot
                .department(id)
                .unwrap_or_else(|| panic!("no department {id}"))
        };
        let format = |id: &str| -> Arc<Format> {
            department(id)
                .formats
                .get("business-license")
                .cloned()
                .unwrap_or_else(|| panic!("{id} has no business-license format"))
        };
        let consumer_format = format("bench-consumer");
        let provider_format = format("bench-provider");
        let projection = snapshot
            .route("bench-provider", "full")
            .and_then(|route| route.projections.values().next())
            .cloned()
            .expect("the full service lists the consumer's fields");
        let schema = snapshot
            .registry
            .get("business-license", None)
            .expect("the business-license schema");
        let read = |path: &str| std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        Bench {
            consumer_format,
            provider_format,
            schema,
            projection,
            request_bytes: read("bench/data/request.json"),
            response_bytes: read("bench/data/response.json"),
            snapshot,
        }
    }
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("a bench record is JSON")
}

fn translate(format: &Format, record: &Value, direction: Direction) -> Value {
    format
        .translate(record, direction)
        .unwrap_or_else(|errors| panic!("bench record does not translate: {errors:?}"))
}

/// Parse → consumer to-shared → validate → provider from-shared → serialize, then the answer:
/// parse → provider to-shared → validate → project → consumer from-shared → serialize.
fn pipeline(bench: &Bench) -> (Vec<u8>, Vec<u8>) {
    let request = parse(&bench.request_bytes);
    let shared = translate(&bench.consumer_format, &request, Direction::ToShared);
    assert!(bench.schema.validate(&shared, Lang::En).is_empty());
    let provider = translate(&bench.provider_format, &shared, Direction::FromShared);
    let forwarded = serde_json::to_vec(&provider).expect("serializable");

    let response = parse(&bench.response_bytes);
    let shared = translate(&bench.provider_format, &response, Direction::ToShared);
    assert!(bench.schema.validate(&shared, Lang::En).is_empty());
    let projected = bench.projection.apply(shared);
    let consumer = translate(&bench.consumer_format, &projected, Direction::FromShared);
    let answered = serde_json::to_vec(&consumer).expect("serializable");
    (forwarded, answered)
}

fn phases(c: &mut Criterion) {
    let bench = Bench::load();
    let request = parse(&bench.request_bytes);
    let shared = translate(&bench.consumer_format, &request, Direction::ToShared);
    let violations = bench.schema.validate(&shared, Lang::En);
    assert!(violations.is_empty(), "{violations:?}");
    let provider = translate(&bench.provider_format, &shared, Direction::FromShared);

    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer bench-consumer"),
    );
    c.bench_function("identify", |b| {
        b.iter(|| {
            xgate::identity::identify_department(&bench.snapshot, black_box(&headers), None)
                .map(|department| department.id.as_str().len())
                .expect("the bench token identifies the consumer")
        })
    });
    c.bench_function("parse", |b| {
        b.iter(|| parse(black_box(&bench.request_bytes)))
    });
    c.bench_function("to-shared", |b| {
        b.iter(|| {
            translate(
                &bench.consumer_format,
                black_box(&request),
                Direction::ToShared,
            )
        })
    });
    c.bench_function("validate", |b| {
        b.iter(|| bench.schema.validate(black_box(&shared), Lang::En))
    });
    c.bench_function("from-shared", |b| {
        b.iter(|| {
            translate(
                &bench.provider_format,
                black_box(&shared),
                Direction::FromShared,
            )
        })
    });
    c.bench_function("projection", |b| {
        b.iter_batched(
            || shared.clone(),
            |shared| bench.projection.apply(black_box(shared)),
            criterion::BatchSize::SmallInput,
        )
    });
    c.bench_function("serialize", |b| {
        b.iter(|| serde_json::to_vec(black_box(&provider)).expect("serializable"))
    });
    c.bench_function("pipeline", |b| b.iter(|| pipeline(black_box(&bench))));
    // The trail's digests of one exchange on the full path (path, request and response
    // bodies): plain SHA-256, as before SPEC §15, against HMAC-SHA-256 under the audit key.
    let path = b"/exchange/tax/full";
    c.bench_function("digests/sha256", |b| {
        b.iter(|| {
            [
                xgate_audit::sha256_hex(black_box(path)),
                xgate_audit::sha256_hex(black_box(&bench.request_bytes)),
                xgate_audit::sha256_hex(black_box(&bench.response_bytes)),
            ]
        })
    });
    let key = xgate_audit::AuditKey::new(
        &[7; 32],
        xgate_audit::AuditHash::Sha256,
        Path::new("bench.key"),
    );
    c.bench_function("digests/keyed", |b| {
        b.iter(|| {
            [
                key.digest(black_box(path)),
                key.digest(black_box(&bench.request_bytes)),
                key.digest(black_box(&bench.response_bytes)),
            ]
        })
    });
}

/// The consumer's record grown to about `bytes` by repeating its shareholders: what a large
/// record costs in the CPU phases (the measurement behind `cpu::LARGE_RECORD_BYTES`). Past 500
/// shareholders the record breaks the schema's `maxItems`; validation still walks every one.
fn grown_request(bench: &Bench, bytes: usize) -> Value {
    let mut record = parse(&bench.request_bytes);
    let shareholders = record["GDXX"].as_array().cloned().unwrap_or_default();
    let mut grown = Vec::new();
    while serde_json::to_vec(&grown).map_or(0, |text| text.len()) < bytes {
        grown.extend(shareholders.iter().cloned());
    }
    record["GDXX"] = Value::Array(grown);
    record
}

/// Parse, to shared, validate and from shared of a 10 KB, 100 KB and 1 MB record (issue 15,
/// point 9): the work a large record puts on whichever thread runs its phases.
fn large_records(c: &mut Criterion) {
    let bench = Bench::load();
    let mut group = c.benchmark_group("large-record");
    for bytes in [10_000, 100_000, 1_000_000] {
        let record = grown_request(&bench, bytes);
        let text = serde_json::to_vec(&record).expect("serializable");
        group.bench_function(format!("parse/{bytes}"), |b| {
            b.iter(|| parse(black_box(&text)))
        });
        group.bench_function(format!("cpu-phases/{bytes}"), |b| {
            b.iter(|| {
                let shared = translate(
                    &bench.consumer_format,
                    black_box(&record),
                    Direction::ToShared,
                );
                let violations = bench.schema.validate(&shared, Lang::En);
                let provider = translate(&bench.provider_format, &shared, Direction::FromShared);
                (violations.len(), provider)
            })
        });
    }
    group.finish();
}

/// A household of a head and ten members, each with a resident id, a name and a phone: the
/// record a consumer with masks on every person's id and name receives (SPEC §15).
fn household() -> Value {
    const NAMES: [&str; 5] = ["张三", "李四", "王五", "欧阳娜娜", "赵六"];
    let members: Vec<Value> = (0..10)
        .map(|index| {
            serde_json::json!({
                "resident_id": format!("1101051949123100{index:02}"),
                "name": NAMES[index % 5],
                "phone": format!("1381234{index:04}"),
                "relation": "child"
            })
        })
        .collect();
    serde_json::json!({
        "resident_id": "11010519491231002X", "name": "欧阳娜娜", "phone": "13812345678",
        "address": "福州市鼓楼区五四路 100 号", "members": members
    })
}

/// The masks' cost: `Masks::apply` on [`household`] (22 masked values), and what an exchange
/// without masks pays (a lookup in an empty map).
fn masking(c: &mut Criterion) {
    let rule = |pointer: &str, kind: &str| {
        (
            FieldPath::parse(pointer).expect("a pointer"),
            MaskKind::parse(kind).expect("a kind"),
        )
    };
    let masks = Masks::new(vec![
        rule("/address", "redact"),
        rule("/members/*/name", "name"),
        rule("/members/*/resident_id", "resident-id"),
        rule("/name", "name"),
        rule("/phone", "keep:3-4"),
        rule("/resident_id", "resident-id"),
    ]);
    let record = household();
    c.bench_function("masks/household-10", |b| {
        b.iter_batched_ref(
            || record.clone(),
            |record| masks.apply(black_box(record)),
            BatchSize::SmallInput,
        )
    });
    let consumer = DepartmentId::parse("civil-affairs").expect("an id");
    let none: HashMap<DepartmentId, Masks> = HashMap::new();
    c.bench_function("masks/none", |b| {
        b.iter(|| black_box(&none).get(black_box(&consumer)).is_some())
    });
}

/// The purpose phase's work per exchange (SPEC §15): the header's code looked up in a
/// vocabulary of a few codes (`Config::purpose_code`: a `BTreeMap` of codes), and the
/// `xgate_purpose_uses_total` series found by its three labels and incremented.
fn purposes(c: &mut Criterion) {
    let vocabulary: std::collections::BTreeMap<String, String> = [
        ("benefit-review", "社保待遇审核"),
        ("household-registration", "户籍业务办理"),
        ("tax-assessment", "税务核定"),
    ]
    .into_iter()
    .map(|(code, label)| (code.to_owned(), label.to_owned()))
    .collect();
    let header = HeaderValue::from_static("tax-assessment");
    c.bench_function("purpose/code", |b| {
        b.iter(|| {
            std::str::from_utf8(black_box(&header).as_bytes())
                .ok()
                .and_then(|text| vocabulary.get_key_value(text))
                .is_some()
        })
    });
    let counter = prometheus::IntCounterVec::new(
        prometheus::Opts::new("xgate_purpose_uses_total", "bench"),
        &["consumer", "service", "purpose"],
    )
    .expect("a counter");
    c.bench_function("purpose/metric", |b| {
        b.iter(|| {
            counter
                .with_label_values(&[
                    black_box("human-resources"),
                    black_box("residents"),
                    black_box("tax-assessment"),
                ])
                .inc()
        })
    });
}

criterion_group!(benches, phases, large_records, masking, purposes);
criterion_main!(benches);
