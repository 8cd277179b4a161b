//! Data-driven masking fixtures (`tests/fixtures/masking.json`): each case has a record, the
//! masks of one consumer (pointer → kind, applied in pointer order as configuration applies a
//! TOML table's) and the record that consumer receives. The file is read by the gateway's own
//! JSON reader, so numbers keep their exact text as they do on the exchange path.

use serde_json::Value;

use xgate_core::masking::{MaskKind, Masks};
use xgate_core::pointer::FieldPath;

#[test]
fn every_masking_fixture_gives_its_expected_record() {
    let text = include_bytes!("../fixtures/masking.json");
    let Value::Array(cases) = xgate_core::json::parse(text).expect("masking.json is JSON") else {
        panic!("masking.json is an array of cases");
    };
    assert!(cases.len() >= 10, "the fixtures are all read");
    for case in cases {
        let description = case["description"].as_str().expect("a description");
        let rules = case["masks"]
            .as_object()
            .expect("masks: an object of pointer → kind")
            .iter()
            .map(|(pointer, kind)| {
                let kind = kind.as_str().expect("a kind is a string");
                (
                    FieldPath::parse(pointer).unwrap_or_else(|e| panic!("{description}: {e}")),
                    MaskKind::parse(kind).unwrap_or_else(|e| panic!("{description}: {e}")),
                )
            })
            .collect();
        let mut record = case["input"].clone();
        Masks::new(rules).apply(&mut record);
        assert_eq!(record, case["expected"], "{description}");
    }
}
