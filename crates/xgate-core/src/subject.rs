//! Subjects (SPEC §15): whose record an exchange or a certificate lookup concerned, so that the
//! trail can answer "who looked at my records, and why". A service names its subject by a kind
//! and a pointer into the shared request or response; a certificate type's id is its subject.
//! The trail keeps only the subject's keyed digest; this module finds the id and checks it.

use std::borrow::Cow;

use serde_json::Value;

use crate::domain::{CertificateType, SubjectKind};
use crate::identifiers;

/// The kind of a person's subject: ids are `cn-resident-id`.
pub const RESIDENT: &str = "resident";
/// The kind of an organisation's subject: ids are `cn-uscc`.
pub const ORGANISATION: &str = "organisation";

/// The longest subject id looked up, in bytes (every id format in use is far shorter).
pub const MAX_ID_BYTES: usize = 256;

/// The identifier format (`crate::identifiers::FORMATS`) ids of `kind` must have, when it has
/// one: `resident` → `cn-resident-id`, `organisation` → `cn-uscc`.
pub fn id_format(kind: &SubjectKind) -> Option<&'static str> {
    match kind.as_str() {
        RESIDENT => Some("cn-resident-id"),
        ORGANISATION => Some("cn-uscc"),
        _ => None,
    }
}

/// The subject kind of a certificate type's ids: the kind whose format is its `id_format`,
/// otherwise the type's own name.
pub fn of_certificate_type(certificate_type: &CertificateType, id_format: &str) -> SubjectKind {
    let kind = match id_format {
        "cn-resident-id" => RESIDENT,
        "cn-uscc" => ORGANISATION,
        _ => certificate_type.as_str(),
    };
    match SubjectKind::parse(kind) {
        Ok(kind) => kind,
        Err(_) => unreachable!("both words and every certificate type follow the name pattern"),
    }
}

/// Whether `id` may be a subject of `kind`: not empty, at most [`MAX_ID_BYTES`], and of the
/// kind's identifier format when it has one.
pub fn accepts(kind: &SubjectKind, id: &str) -> bool {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return false;
    }
    match id_format(kind) {
        None => true,
        Some(format) => identifiers::FORMATS
            .iter()
            .find(|(name, _)| *name == format)
            .is_some_and(|(_, check)| check(id)),
    }
}

/// A service's subject: the kind and where, in the shared request or response, its id is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectPointer {
    /// Whose record.
    pub kind: SubjectKind,
    /// An RFC 6901 JSON pointer into the shared layout (no wildcard: one subject per call).
    pub pointer: String,
}

impl SubjectPointer {
    /// The id at the pointer in a shared record: a string as it is, a number as its exact
    /// text; nothing for other values, an absent member, an empty or overlong text.
    pub fn find<'v>(&self, record: &'v Value) -> Option<Cow<'v, str>> {
        let id = match record.pointer(&self.pointer)? {
            Value::String(text) => Cow::Borrowed(text.as_str()),
            Value::Number(number) => Cow::Owned(number.to_string()),
            _ => return None,
        };
        (!id.is_empty() && id.len() <= MAX_ID_BYTES).then_some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> SubjectKind {
        SubjectKind::parse(text).unwrap()
    }

    #[test]
    fn kinds_with_a_format_check_their_ids_and_others_only_bound_them() {
        assert!(accepts(&kind("resident"), "11010519491231002X"));
        assert!(!accepts(&kind("resident"), "11010519491231002Y"));
        assert!(!accepts(&kind("resident"), "../../etc/passwd"));
        assert!(accepts(&kind("organisation"), "91350100M000100Y43"));
        assert!(!accepts(&kind("organisation"), "91350100M000100Y44"));
        assert!(accepts(&kind("vehicle"), "京A12345"));
        assert!(!accepts(&kind("vehicle"), ""));
        assert!(!accepts(&kind("vehicle"), &"x".repeat(MAX_ID_BYTES + 1)));
    }

    #[test]
    fn a_certificate_type_s_kind_follows_its_id_format() {
        let license = CertificateType::parse("business-license").unwrap();
        assert_eq!(
            of_certificate_type(&license, "cn-uscc").as_str(),
            "organisation"
        );
        assert_eq!(
            of_certificate_type(&license, "cn-resident-id").as_str(),
            "resident"
        );
        assert_eq!(
            of_certificate_type(&license, "cn-elicense-id").as_str(),
            "business-license"
        );
    }

    #[test]
    fn the_id_is_found_as_a_string_or_an_exact_number_and_nothing_else() {
        let subject = SubjectPointer {
            kind: kind("resident"),
            pointer: "/person/id".to_owned(),
        };
        let record = |id: Value| serde_json::json!({"person": {"id": id}});
        assert_eq!(
            subject
                .find(&record("11010519491231002X".into()))
                .as_deref(),
            Some("11010519491231002X")
        );
        let big: Value = serde_json::from_str(r#"{"person": {"id": 110105194912310021}}"#).unwrap();
        assert_eq!(subject.find(&big).as_deref(), Some("110105194912310021"));
        assert_eq!(subject.find(&record(Value::Null)), None);
        assert_eq!(subject.find(&record(serde_json::json!(["x"]))), None);
        assert_eq!(subject.find(&record("".into())), None);
        assert_eq!(subject.find(&serde_json::json!({"person": {}})), None);
    }
}
