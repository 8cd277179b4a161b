//! Property tests (proptest) of SPEC §7's round trip: for every value a conversion accepts, and
//! for every record a format accepts, from-shared(to-shared(x)) == x (numbers by value).
//!
//! Per conversion, generated own values in the canonical form must be accepted and come back
//! unchanged; near-miss text (wrong padding, signs, exponents) must either be refused or come
//! back unchanged too. Whole formats: generated business licences in market regulation's layout
//! (arrays, arrays inside arrays, nested objects, absent fields, nulls) under each unmapped
//! policy, with generated unmapped fields that `reject` must list, `drop` must leave out and
//! `keep` must bring back.

use std::collections::BTreeSet;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone};
use proptest::prelude::*;
use proptest::sample::select;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use xgate_core::translate::{Conversion, Direction, ErrorKind, Format};

use crate::translate_fixtures::{decimal, parse_format, same_record};

/// Cases per property: enough to find edge cases, few enough for two cores.
const CASES: u32 = 256;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        ..ProptestConfig::default()
    }
}

fn conversion(text: &str) -> Conversion {
    Conversion::parse(text).unwrap_or_else(|reason| panic!("{text}: {reason}"))
}

/// Any date chrono's `%Y` writes with four digits: 0001-01-01 to 9999-12-31.
fn date() -> impl Strategy<Value = NaiveDate> {
    (1i32..=3_652_059).prop_map(|days| NaiveDate::from_num_days_from_ce_opt(days).unwrap())
}

/// A local date-time between 1000 and 9998, to the second.
fn date_time() -> impl Strategy<Value = NaiveDateTime> {
    (365_000i32..=3_651_000, 0u32..86_400).prop_map(|(days, seconds)| {
        NaiveDate::from_num_days_from_ce_opt(days)
            .unwrap()
            .and_hms_opt(seconds / 3600, seconds / 60 % 60, seconds % 60)
            .unwrap()
    })
}

/// A UTC offset in whole minutes, as `%z` writes them.
fn offset() -> impl Strategy<Value = FixedOffset> {
    (-(23 * 60 + 59)..=(23 * 60 + 59))
        .prop_map(|minutes: i32| FixedOffset::east_opt(minutes * 60).unwrap())
}

/// An exact decimal amount with up to 4 decimal places and at most 15 significant digits.
fn amount() -> impl Strategy<Value = Decimal> {
    (-100_000_000_000i64..100_000_000_000, 0u32..=4)
        .prop_map(|(mantissa, scale)| Decimal::new(mantissa, scale))
}

/// The JSON number a department writes for an amount (`1.50` → 1.5, `100` → 100).
fn amount_json(amount: Decimal) -> Value {
    serde_json::from_str(&amount.to_string()).unwrap()
}

/// The canonical decimal text of an amount: no trailing zeros, `0` for zero.
fn canonical_text(amount: Decimal) -> String {
    if amount.is_zero() {
        "0".to_owned()
    } else {
        amount.normalize().to_string()
    }
}

fn number_value(value: &Value) -> Option<Decimal> {
    value.as_number().and_then(decimal)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn dates_round_trip(
        date in date(),
        pattern in select(vec!["%Y%m%d", "%Y/%m/%d", "%Y年%m月%d日"]),
    ) {
        let conversion = conversion(&format!("date:{pattern}"));
        let own = json!(date.format(pattern).to_string());
        let shared = conversion.to_shared(&own);
        prop_assert_eq!(&shared, &Ok(json!(date.format("%Y-%m-%d").to_string())));
        prop_assert_eq!(conversion.to_own(&shared.unwrap()), Ok(own));
    }

    #[test]
    fn near_miss_dates_are_refused_or_round_trip(
        (pattern, text) in prop_oneof![
            "[0-9+-]{6,9}".prop_map(|text| ("%Y%m%d", text)),
            "[0-9]{1,5}/[0-9]{1,3}/[0-9]{1,3}".prop_map(|text| ("%Y/%m/%d", text)),
            "[0-9]{1,5}年[0-9]{1,3}月[0-9]{1,3}日".prop_map(|text| ("%Y年%m月%d日", text)),
        ],
    ) {
        let conversion = conversion(&format!("date:{pattern}"));
        let own = json!(text);
        if let Ok(shared) = conversion.to_shared(&own) {
            prop_assert_eq!(conversion.to_own(&shared), Ok(own));
        }
    }

    #[test]
    fn date_times_at_a_fixed_offset_round_trip(
        local in date_time(),
        pattern in select(vec!["%Y%m%d%H%M%S", "%Y-%m-%d %H:%M:%S"]),
    ) {
        let conversion = conversion(&format!("datetime:{pattern}@+08:00"));
        let own = json!(local.format(pattern).to_string());
        let shared = conversion.to_shared(&own);
        let beijing = FixedOffset::east_opt(8 * 3600).unwrap();
        let expected = beijing.from_local_datetime(&local).unwrap().to_rfc3339();
        prop_assert_eq!(&shared, &Ok(json!(expected)));
        prop_assert_eq!(conversion.to_own(&shared.unwrap()), Ok(own));
    }

    #[test]
    fn shared_instants_in_any_offset_come_back_as_the_same_instant(
        local in date_time(),
        offset in offset(),
    ) {
        let conversion = conversion("datetime:%Y%m%d%H%M%S@+08:00");
        let instant = offset.from_local_datetime(&local).unwrap();
        let shared = json!(instant.to_rfc3339());
        let own = conversion.to_own(&shared);
        prop_assert!(own.is_ok(), "{shared}: {own:?}");
        let again = conversion.to_shared(&own.unwrap()).unwrap();
        let again = DateTime::parse_from_rfc3339(again.as_str().unwrap()).unwrap();
        prop_assert_eq!(again, instant);
        prop_assert_eq!(again.offset().local_minus_utc(), 8 * 3600);
    }

    #[test]
    fn date_times_with_their_own_offset_round_trip(
        local in date_time(),
        offset in offset(),
        pattern in select(vec!["%Y-%m-%d %H:%M:%S %z", "%Y%m%dT%H%M%S%z"]),
    ) {
        let conversion = conversion(&format!("datetime:{pattern}"));
        let moment = offset.from_local_datetime(&local).unwrap();
        let own = json!(moment.format(pattern).to_string());
        let shared = conversion.to_shared(&own);
        prop_assert_eq!(&shared, &Ok(json!(moment.to_rfc3339())));
        prop_assert_eq!(conversion.to_own(&shared.unwrap()), Ok(own));
    }

    #[test]
    fn scaled_amounts_are_exact_and_round_trip(
        amount in amount(),
        factor in select(vec!["10000", "0.01", "100"]),
    ) {
        let conversion = conversion(&format!("scale:{factor}"));
        let own = amount_json(amount);
        let shared = conversion.to_shared(&own);
        prop_assert!(shared.is_ok(), "{own} × {factor}: {shared:?}");
        let shared = shared.unwrap();
        let exact = amount * factor.parse::<Decimal>().unwrap();
        prop_assert_eq!(number_value(&shared), Some(exact), "{} × {}", own, factor);
        if exact.fract().is_zero() {
            prop_assert!(shared.is_i64() || shared.is_u64(), "integral {shared} is not an integer");
        }
        let back = conversion.to_own(&shared);
        prop_assert!(back.as_ref().is_ok_and(|back| same_record(back, &own)), "{own} → {shared} → {back:?}");
    }

    #[test]
    fn shared_amounts_round_trip_through_the_own_layout(
        amount in amount(),
        factor in select(vec!["10000", "0.01", "100"]),
    ) {
        let conversion = conversion(&format!("scale:{factor}"));
        let shared = amount_json(amount);
        // Dividing an amount of at most 15 digits by these factors is always exact.
        let own = conversion.to_own(&shared);
        prop_assert!(own.is_ok(), "{shared} ÷ {factor}: {own:?}");
        let again = conversion.to_shared(&own.unwrap());
        prop_assert!(again.as_ref().is_ok_and(|again| same_record(again, &shared)), "{shared} → {again:?}");
    }

    #[test]
    fn any_accepted_number_round_trips_through_scale(
        number in prop_oneof![any::<f64>().prop_map(|x| json!(x)), any::<i64>().prop_map(|x| json!(x))],
        factor in select(vec!["10000", "0.01", "100", "3"]),
    ) {
        let conversion = conversion(&format!("scale:{factor}"));
        if let Ok(shared) = conversion.to_shared(&number) {
            let back = conversion.to_own(&shared);
            prop_assert!(back.as_ref().is_ok_and(|back| same_record(back, &number)), "{number} → {shared} → {back:?}");
        }
        if let Ok(own) = conversion.to_own(&number) {
            let again = conversion.to_shared(&own);
            prop_assert!(again.as_ref().is_ok_and(|again| same_record(again, &number)), "{number} → {own} → {again:?}");
        }
    }

    #[test]
    fn number_text_round_trips(amount in amount()) {
        let conversion = conversion("number");
        let own = json!(canonical_text(amount));
        let shared = conversion.to_shared(&own);
        prop_assert!(shared.is_ok(), "{own}: {shared:?}");
        let shared = shared.unwrap();
        prop_assert_eq!(number_value(&shared), Some(amount));
        if amount.fract().is_zero() {
            prop_assert!(shared.is_i64(), "integral {shared} is not an integer");
        }
        prop_assert_eq!(conversion.to_own(&shared), Ok(own));
    }

    #[test]
    fn near_miss_number_text_is_refused_or_round_trips(
        text in "[+-]?[0-9]{0,4}(\\.[0-9]{0,3})?([eE][+-]?[0-9])?",
    ) {
        let conversion = conversion("number");
        let own = json!(text);
        if let Ok(shared) = conversion.to_shared(&own) {
            prop_assert_eq!(conversion.to_own(&shared), Ok(own));
        }
    }

    #[test]
    fn own_numbers_round_trip_through_text(
        own in prop_oneof![
            amount().prop_map(amount_json),
            any::<i64>().prop_map(|x| json!(x)),
            any::<u64>().prop_map(|x| json!(x)),
        ],
    ) {
        let conversion = conversion("string");
        let shared = conversion.to_shared(&own);
        prop_assert!(shared.is_ok(), "{own}: {shared:?}");
        let shared = shared.unwrap();
        prop_assert_eq!(
            shared.as_str().and_then(|text| text.parse::<Decimal>().ok()),
            number_value(&own)
        );
        let back = conversion.to_own(&shared);
        prop_assert!(back.as_ref().is_ok_and(|back| same_record(back, &own)), "{own} → {shared} → {back:?}");
    }

    #[test]
    fn boolean_tokens_round_trip(
        truthy in "[A-Za-z0-9是否有无真假]{1,3}",
        falsy in "[A-Za-z0-9是否有无真假]{1,3}",
        other in "[A-Za-z0-9是否有无真假]{0,3}",
        value in any::<bool>(),
    ) {
        prop_assume!(truthy != falsy);
        let conversion = conversion(&format!("boolean:{truthy}/{falsy}"));
        let own = json!(if value { &truthy } else { &falsy });
        prop_assert_eq!(conversion.to_shared(&own), Ok(json!(value)));
        prop_assert_eq!(conversion.to_own(&json!(value)), Ok(own));
        let accepted = conversion.to_shared(&json!(other)).is_ok();
        prop_assert_eq!(accepted, other == truthy || other == falsy);
    }

    #[test]
    fn code_tables_round_trip(
        table in prop::collection::btree_set("[0-9A-Z]{1,4}", 1..10).prop_flat_map(|own| {
            let size = own.len();
            (Just(own), prop::collection::btree_set("[a-z_]{1,8}|[1-9][0-9]{0,3}", size..=size))
        }),
        unknown in "[0-9A-Z]{1,4}",
    ) {
        let (own, shared) = table;
        // Digits become numeric shared values, letters text: both kinds in one table.
        let table: Vec<(String, Value)> = own
            .into_iter()
            .zip(shared)
            .map(|(own, shared)| {
                let shared = shared.parse::<u32>().map_or(json!(shared), |number| json!(number));
                (own, shared)
            })
            .collect();
        let conversion = Conversion::codes(&table).unwrap();
        for (own, shared) in &table {
            prop_assert_eq!(conversion.to_shared(&json!(own)), Ok(shared.clone()));
            prop_assert_eq!(conversion.to_own(shared), Ok(json!(own)));
            if let Some(number) = shared.as_u64() {
                // Numbers are codes by value: 7.0 is the code 7.
                prop_assert_eq!(conversion.to_own(&json!(number as f64)), Ok(json!(own)));
            }
        }
        let known = table.iter().any(|(own, _)| *own == unknown);
        prop_assert_eq!(conversion.to_shared(&json!(unknown)).is_ok(), known);
    }
}

/// A business licence in market regulation's layout: top-level fields of every conversion, a
/// nested object, an array of records holding an array of codes, an array inside an array.
const LICENCE_RULES: &str = r#"
fields = [
  { own = "/TYSHXYDM", shared = "/uscc" },
  { own = "/QYMC", shared = "/name" },
  { own = "/CLRQ", shared = "/established_on", convert = "date:%Y%m%d" },
  { own = "/HZSJ", shared = "/approved_at", convert = "datetime:%Y%m%d%H%M%S@+08:00" },
  { own = "/ZCZB", shared = "/registered_capital_yuan", convert = "scale:10000" },
  { own = "/DJZT", shared = "/status", codes = { "1" = "active", "2" = "revoked", "3" = "cancelled" } },
  { own = "/SFSS", shared = "/listed", convert = "boolean:是/否" },
  { own = "/FDDBR/XM", shared = "/legal_representative/name" },
  { own = "/FDDBR/ZJHM", shared = "/legal_representative/resident_id" },
  { own = "/GDXX/*/GDMC", shared = "/shareholders/*/name" },
  { own = "/GDXX/*/CZE", shared = "/shareholders/*/contribution_yuan", convert = "scale:10000" },
  { own = "/GDXX/*/CZFS/*", shared = "/shareholders/*/contribution_forms/*", codes = { "1" = "cash", "2" = "in_kind", "3" = "intellectual_property" } },
  { own = "/FZJG/*/MC", shared = "/branches/*/name" },
  { own = "/FZJG/*/JYCS/*/DZ", shared = "/branches/*/premises/*/address" },
  { own = "/FZJG/*/JYCS/*/MJ", shared = "/branches/*/premises/*/area_m2", convert = "number" },
  { own = "/NBXX/*/ND", shared = "/annual_reports/*/year", convert = "string" },
  { own = "/NBXX/*/YYSR", shared = "/annual_reports/*/revenue_yuan", convert = "scale:0.01" },
]
"#;

fn licence_format(unmapped: &str) -> Format {
    parse_format(&format!("unmapped = \"{unmapped}\"\n{LICENCE_RULES}")).unwrap()
}

/// The licence format for a record that is an array of licences: every path under `/*`.
fn licence_list_format(unmapped: &str) -> Format {
    let rules = LICENCE_RULES
        .replace("own = \"/", "own = \"/*/")
        .replace("shared = \"/", "shared = \"/*/");
    parse_format(&format!("unmapped = \"{unmapped}\"\n{rules}")).unwrap()
}

/// A field that is absent (`None`), explicitly `null`, or holds a value.
fn optional(value: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        3 => value.prop_map(Some),
    ]
}

/// An object of the fields that are present; `None` when none is (an empty object on a rule's
/// path is not a record any format accepts without listing it).
fn object(fields: Vec<(&str, Option<Value>)>) -> Option<Value> {
    let object: Map<String, Value> = fields
        .into_iter()
        .filter_map(|(key, value)| value.map(|value| (key.to_owned(), value)))
        .collect();
    (!object.is_empty()).then_some(Value::Object(object))
}

/// An array element: any subset of its fields, `{}` included (arrays keep their elements).
fn element(fields: Vec<(&str, Option<Value>)>) -> Value {
    object(fields).unwrap_or_else(|| json!({}))
}

fn text() -> impl Strategy<Value = Value> {
    "\\PC{0,12}".prop_map(Value::String)
}

fn shareholder() -> impl Strategy<Value = Value> {
    (
        optional(text()),
        optional(amount().prop_map(amount_json)),
        array(prop_oneof![
            3 => select(vec!["1", "2", "3"]).prop_map(|code| json!(code)),
            1 => Just(Value::Null),
        ]),
    )
        .prop_map(|(name, contribution, forms)| {
            element(vec![("GDMC", name), ("CZE", contribution), ("CZFS", forms)])
        })
}

fn branch() -> impl Strategy<Value = Value> {
    let premises = (
        optional(text()),
        optional(amount().prop_map(|area| json!(canonical_text(area)))),
    )
        .prop_map(|(address, area)| element(vec![("DZ", address), ("MJ", area)]));
    (optional(text()), array(premises))
        .prop_map(|(name, premises)| element(vec![("MC", name), ("JYCS", premises)]))
}

fn annual_report() -> impl Strategy<Value = Value> {
    (
        optional((1990i64..2030).prop_map(|year| json!(year))),
        optional(amount().prop_map(amount_json)),
    )
        .prop_map(|(year, revenue)| element(vec![("ND", year), ("YYSR", revenue)]))
}

/// An array of up to 3 elements, or absent. Never `null`: a null where rules go inside is no
/// value a rule names, so `reject` lists it as unmapped (`drop` drops it).
fn array(element: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        3 => prop::collection::vec(element, 0..4).prop_map(|items| Some(Value::Array(items))),
    ]
}

/// A licence every unmapped policy accepts and round-trips.
fn licence() -> impl Strategy<Value = Value> {
    let top = (
        optional("[0-9A-HJ-NPQRTUWXY]{18}".prop_map(Value::String)),
        optional(text()),
        optional(date().prop_map(|date| json!(date.format("%Y%m%d").to_string()))),
        optional(date_time().prop_map(|moment| json!(moment.format("%Y%m%d%H%M%S").to_string()))),
        optional(amount().prop_map(amount_json)),
        optional(select(vec!["1", "2", "3"]).prop_map(|code| json!(code))),
        optional(select(vec!["是", "否"]).prop_map(|token| json!(token))),
    );
    let nested = (
        optional(text()),
        optional("[0-9]{17}[0-9X]".prop_map(Value::String)),
        array(shareholder()),
        array(branch()),
        array(annual_report()),
    );
    (top, nested).prop_map(
        |(
            (uscc, name, established, approved, capital, status, listed),
            (representative, resident_id, shareholders, branches, reports),
        )| {
            let representative = object(vec![("XM", representative), ("ZJHM", resident_id)]);
            element(vec![
                ("TYSHXYDM", uscc),
                ("QYMC", name),
                ("CLRQ", established),
                ("HZSJ", approved),
                ("ZCZB", capital),
                ("DJZT", status),
                ("SFSS", listed),
                ("FDDBR", representative),
                ("GDXX", shareholders),
                ("FZJG", branches),
                ("NBXX", reports),
            ])
        },
    )
}

/// A small JSON value of any shape, for unmapped fields.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|x| json!(x)),
        "\\PC{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..3)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// The objects of a licence where an unmapped field can sit, with the prefix its name gets (so
/// it never names a place a rule reads or writes, on either side).
fn unmapped_places(licence: &Value) -> Vec<(String, &'static str)> {
    let mut places = vec![(String::new(), "BZ_")];
    if licence["FDDBR"].is_object() {
        places.push(("/FDDBR".to_owned(), "XB_"));
    }
    for (index, shareholder) in licence["GDXX"].as_array().into_iter().flatten().enumerate() {
        if shareholder.is_object() {
            places.push((format!("/GDXX/{index}"), "BL_"));
        }
    }
    for (index, branch) in licence["FZJG"].as_array().into_iter().flatten().enumerate() {
        for (inner, premises) in branch["JYCS"].as_array().into_iter().flatten().enumerate() {
            if premises.is_object() {
                places.push((format!("/FZJG/{index}/JYCS/{inner}"), "ZT_"));
            }
        }
    }
    places
}

/// A licence, the same licence with unmapped fields added, and their own pointers.
fn licence_with_unmapped_fields() -> impl Strategy<Value = (Value, Value, BTreeSet<String>)> {
    licence().prop_flat_map(|licence| {
        let places = unmapped_places(&licence);
        let extras =
            prop::collection::vec((select(places), "[A-Z]{1,3}|[甲乙丙]", any_json()), 1..4);
        (Just(licence), extras).prop_map(|(licence, extras)| {
            let mut extended = licence.clone();
            let mut pointers = BTreeSet::new();
            for ((parent, prefix), name, value) in extras {
                let key = format!("{prefix}{name}");
                pointers.insert(format!("{parent}/{key}"));
                extended
                    .pointer_mut(&parent)
                    .and_then(Value::as_object_mut)
                    .expect("an object of the licence")
                    .insert(key, value);
            }
            (licence, extended, pointers)
        })
    })
}

/// Translates to shared and back; the record must be accepted and come back the same.
fn assert_round_trip(format: &Format, own: &Value) -> Result<Value, TestCaseError> {
    let shared = format.translate(own, Direction::ToShared);
    prop_assert!(shared.is_ok(), "to-shared refused {own}: {shared:?}");
    let shared = shared.unwrap();
    let back = format.translate(&shared, Direction::FromShared);
    prop_assert!(back.is_ok(), "from-shared refused {shared}: {back:?}");
    let back = back.unwrap();
    prop_assert!(
        same_record(&back, own),
        "round trip\nown:    {own}\nshared: {shared}\nback:   {back}"
    );
    Ok(shared)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn licences_round_trip_under_every_policy(licence in licence()) {
        let mut shared_records = Vec::new();
        for unmapped in ["reject", "drop", "keep"] {
            shared_records.push(assert_round_trip(&licence_format(unmapped), &licence)?);
        }
        // Without unmapped fields the policy makes no difference.
        prop_assert_eq!(&shared_records[0], &shared_records[1]);
        prop_assert_eq!(&shared_records[0], &shared_records[2]);
    }

    #[test]
    fn reject_lists_every_unmapped_field(
        (licence, extended, pointers) in licence_with_unmapped_fields(),
    ) {
        let errors = licence_format("reject").translate(&extended, Direction::ToShared);
        prop_assert!(errors.is_err(), "accepted {extended}");
        let errors = errors.unwrap_err();
        prop_assert!(errors.iter().all(|error| error.kind == ErrorKind::Unmapped), "{errors:?}");
        let listed: BTreeSet<String> =
            errors.iter().filter_map(|error| error.own_pointer.clone()).collect();
        prop_assert_eq!(listed, pointers);
        prop_assert_eq!(errors.len(), pointers_len(&extended, &licence));
    }

    #[test]
    fn drop_leaves_out_every_unmapped_field(
        (licence, extended, _pointers) in licence_with_unmapped_fields(),
    ) {
        let format = licence_format("drop");
        let shared = format.translate(&extended, Direction::ToShared);
        prop_assert_eq!(shared, format.translate(&licence, Direction::ToShared));
    }

    #[test]
    fn keep_brings_unmapped_fields_back(
        (_licence, extended, _pointers) in licence_with_unmapped_fields(),
    ) {
        assert_round_trip(&licence_format("keep"), &extended)?;
    }

    #[test]
    fn keep_brings_back_odd_shapes_where_rules_expect_records(
        licence in licence(),
        odd_elements in prop::collection::vec(
            prop_oneof![Just(Value::Null), Just(json!("未知")), Just(json!(7)), Just(json!({}))],
            0..3,
        ),
        representative in select(vec![None, Some(Value::Null), Some(json!({}))]),
        empty_object in any::<bool>(),
    ) {
        let mut licence = licence;
        let record = licence.as_object_mut().unwrap();
        if let Some(Value::Array(shareholders)) = record.get_mut("GDXX") {
            shareholders.extend(odd_elements);
        }
        if let Some(representative) = representative {
            record.entry("FDDBR").or_insert(representative);
        }
        if empty_object {
            record.insert("QT".to_owned(), json!({}));
        }
        assert_round_trip(&licence_format("keep"), &licence)?;
    }

    #[test]
    fn lists_of_licences_round_trip(licences in prop::collection::vec(licence(), 0..4)) {
        for unmapped in ["reject", "keep"] {
            assert_round_trip(&licence_list_format(unmapped), &Value::Array(licences.clone()))?;
        }
    }
}

/// How many distinct unmapped fields `extended` has over `licence` (a name added twice to one
/// place counts once).
fn pointers_len(extended: &Value, licence: &Value) -> usize {
    fn count(extended: &Value, licence: &Value) -> usize {
        match (extended, licence) {
            (Value::Object(extended), Value::Object(licence)) => extended
                .iter()
                .map(|(key, value)| match licence.get(key) {
                    Some(original) => count(value, original),
                    None => 1,
                })
                .sum(),
            (Value::Array(extended), Value::Array(licence)) => extended
                .iter()
                .zip(licence)
                .map(|(extended, licence)| count(extended, licence))
                .sum(),
            _ => 0,
        }
    }
    count(extended, licence)
}
