//! Chinese identifier formats asserted in JSON Schemas: citizen identity numbers, unified social credit codes and e-licence identifiers.
//!
//! Every function here is pure and total: no I/O, no clock, and any `&str` (empty, non-ASCII,
//! padded) gets an answer instead of a panic. All checks work on bytes; a non-ASCII byte is never
//! an ASCII digit or letter, so multi-byte characters are rejected without slicing inside them.
//!
//! # `cn-resident-id` (GB 11643)
//!
//! Exactly 18 characters: 17 ASCII digits then a check character.
//!
//! | positions (1-based) | content                                                              |
//! |---------------------|----------------------------------------------------------------------|
//! | 1-2                 | province-level code: 11-15, 21-23, 31-37, 41-46, 50-54, 61-65, 71, 81, 82, 83, 91 |
//! | 3-6                 | rest of the administrative division code (any digits)               |
//! | 7-14                | date of birth `YYYYMMDD`, a real calendar date, year 1800-2999       |
//! | 15-17               | sequence code (any digits)                                           |
//! | 18                  | ISO 7064 MOD 11-2 check: `"10X98765432"[Σ dᵢ·wᵢ mod 11]`             |
//!
//! The weights are 7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2. Only uppercase `X` is
//! accepted as the check character: the shared layout is canonical, and translating a lowercase
//! `x` is a job for a format translation, not for validation. There is no "born in the future"
//! check because this module has no clock.
//!
//! # `cn-uscc` (GB 32100)
//!
//! Exactly 18 characters from the 31-character alphabet `0123456789ABCDEFGHJKLMNPQRTUWXY`
//! (a character's value is its index; `I`, `O`, `S`, `V`, `Z` and lowercase letters are absent).
//! Positions 3-8 are the administrative region code and must be digits. Position 18 is the check
//! character: with weights `3^(i-1) mod 31` for positions 1-17, check value = `31 - (Σ vᵢ·wᵢ mod 31)`,
//! and 31 becomes 0.
//!
//! # `cn-elicense-id` (e-licence identifier)
//!
//! The identifier of an e-licence (电子证照) of the national integrated government-service
//! platform (全国一体化政务服务平台 电子证照 standards, Annex A.2):
//!
//! ```text
//! 1.2.156.3005.2.<type>.<issuer>.<serial>.<version>.<check>
//! ```
//!
//! - `1.2.156.3005.2.` is the literal OID prefix of e-licences;
//! - `<type>`: 1-32 characters of `[0-9A-Z]`, the licence type code (in published identifiers
//!   the USCC of the body that defined the type followed by a three-digit number, e.g.
//!   `11100000000013338W011`);
//! - `<issuer>`: the issuing authority, either a valid `cn-uscc` (18 characters, check character
//!   included) or a six-digit administrative division code whose first two digits are a
//!   province-level code (the table of `cn-resident-id` above), e.g. `340100`;
//! - `<serial>`: 1-32 characters of `[0-9A-Z]`, the licence's number within its type and issuer;
//! - `<version>`: 1-8 ASCII digits;
//! - `<check>`: one character of `[0-9A-Z]`, the ISO 7064 hybrid MOD 37,36 check character
//!   computed over `<type><issuer><serial><version>`, that is the four parts with their dots
//!   removed and **without** the `1.2.156.3005.2.` prefix (digits are worth 0-9, `A`-`Z` 10-35).
//!   Starting from p = 36, each value v gives s = (p + v) mod 36 (0 becomes 36) and then
//!   p = 2s mod 37; the check character c is the one with (p + c) mod 36 = 1.
//!
//! Published identifiers that pass, with their check characters:
//! `1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.002.S`,
//! `1.2.156.3005.2.11100000000013338W009.11330105002500287C.2025052201.002.0` (more, and the
//! cases that must fail, in `tests/fixtures/identifiers.json`).
//!
//! No other characters, no empty parts, no extra parts and no surrounding whitespace.

/// Weights of the first 17 digits of a resident id (ISO 7064 MOD 11-2, 2^(18-i) mod 11).
const RESIDENT_ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];

/// The resident id check character, indexed by the weighted sum modulo 11.
const RESIDENT_ID_CHECK_CHARACTERS: &[u8; 11] = b"10X98765432";

/// Province-level codes that open an administrative division code (and so a resident id), as
/// inclusive ranges.
const PROVINCE_LEVEL_CODES: [(u32, u32); 11] = [
    (11, 15),
    (21, 23),
    (31, 37),
    (41, 46),
    (50, 54),
    (61, 65),
    (71, 71),
    (81, 81),
    (82, 82),
    (83, 83),
    (91, 91),
];

/// The USCC alphabet; a character's value is its index.
const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// Weights of the first 17 USCC characters: 3^(i-1) mod 31.
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// The literal opening of every e-licence id, dots included.
const ELICENSE_PREFIX: &str = "1.2.156.3005.2.";

/// The longest `<type>` and `<serial>` parts of an e-licence id, in characters.
const ELICENSE_TYPE_AND_SERIAL_MAX_CHARACTERS: usize = 32;

/// The length of an administrative division code naming an e-licence's issuer.
const DIVISION_CODE_CHARACTERS: usize = 6;

/// The longest `<version>` part of an e-licence id, in characters.
const ELICENSE_VERSION_MAX_CHARACTERS: usize = 8;

/// The characters of the MOD 37,36 check, indexed by value.
const MOD_37_36_ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// The names under which these formats are registered with the JSON Schema validator, paired with their checks.
// The pair spelled out reads better at the registration site than an alias would.
#[expect(
    clippy::type_complexity,
    reason = "a (name, check) pair is the clearest form"
)]
pub const FORMATS: [(&str, fn(&str) -> bool); 3] = [
    ("cn-resident-id", is_resident_id),
    ("cn-uscc", is_uscc),
    ("cn-elicense-id", is_elicense_id),
];

/// Whether `value` is a well-formed GB 11643 citizen identity number (see the module doc).
pub fn is_resident_id(value: &str) -> bool {
    let bytes = value.as_bytes();
    match bytes.split_last() {
        Some((&check, first17)) => resident_id_check_character(first17) == Some(check),
        None => false,
    }
}

/// Appends the check character to 17 leading characters (None when they are not well formed).
///
/// Well formed means 17 ASCII digits with a real province code and a real date of birth.
pub fn resident_id_with_check(first17: &str) -> Option<String> {
    let check = resident_id_check_character(first17.as_bytes())?;
    let mut resident_id = String::with_capacity(18);
    resident_id.push_str(first17);
    resident_id.push(char::from(check));
    Some(resident_id)
}

/// Whether `value` is a well-formed GB 32100 unified social credit code (see the module doc).
pub fn is_uscc(value: &str) -> bool {
    let bytes = value.as_bytes();
    match bytes.split_last() {
        Some((&check, first17)) => uscc_check_character(first17) == Some(check),
        None => false,
    }
}

/// Appends the check character to the 17 leading characters of a unified social credit code
/// (None when they are not well formed: wrong length, a character outside the alphabet, or a
/// region code that is not six digits).
pub fn uscc_with_check(first17: &str) -> Option<String> {
    let check = uscc_check_character(first17.as_bytes())?;
    let mut uscc = String::with_capacity(18);
    uscc.push_str(first17);
    uscc.push(char::from(check));
    Some(uscc)
}

/// Whether `value` is a well-formed e-licence identifier (layout in the module doc).
pub fn is_elicense_id(value: &str) -> bool {
    let Some(rest) = value.strip_prefix(ELICENSE_PREFIX) else {
        return false;
    };
    let mut parts = rest.split('.');
    let (Some(license_type), Some(issuer), Some(serial), Some(version), Some(check), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    match (
        elicense_check_character(license_type, issuer, serial, version),
        check.as_bytes(),
    ) {
        (Some(expected), [actual]) => expected == *actual,
        _ => false,
    }
}

/// Builds a full e-licence id from its parts, computing the check character (None when a part
/// is not well formed). `issuer` is a USCC or a six-digit administrative division code.
pub fn elicense_id(
    license_type: &str,
    issuer: &str,
    serial: &str,
    version: &str,
) -> Option<String> {
    let check = elicense_check_character(license_type, issuer, serial, version)?;
    Some(format!(
        "{ELICENSE_PREFIX}{license_type}.{issuer}.{serial}.{version}.{}",
        char::from(check)
    ))
}

/// The check character owed by the first 17 bytes of a resident id, or None when they are not
/// 17 digits with a real province code and date of birth.
fn resident_id_check_character(first17: &[u8]) -> Option<u8> {
    if first17.len() != 17 || !first17.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let province_is_known = is_province_code(decimal_value(&first17[0..2]));
    let year = decimal_value(&first17[6..10]);
    let month = decimal_value(&first17[10..12]);
    let day = decimal_value(&first17[12..14]);
    if !province_is_known || !(1800..=2999).contains(&year) || !is_calendar_date(year, month, day) {
        return None;
    }
    let weighted_sum: u32 = first17
        .iter()
        .zip(RESIDENT_ID_WEIGHTS)
        .map(|(&digit, weight)| u32::from(digit - b'0') * weight)
        .sum();
    RESIDENT_ID_CHECK_CHARACTERS
        .get(usize::try_from(weighted_sum % 11).ok()?)
        .copied()
}

/// The check character owed by the first 17 bytes of a USCC, or None when they are not 17
/// alphabet characters with a six-digit region code at positions 3-8.
fn uscc_check_character(first17: &[u8]) -> Option<u8> {
    if first17.len() != 17 || !first17[2..8].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut weighted_sum: u32 = 0;
    for (&character, weight) in first17.iter().zip(USCC_WEIGHTS) {
        weighted_sum += uscc_character_value(character)? * weight;
    }
    // 31 - (sum mod 31) lies in 1..=31; the standard maps 31 to 0, which the outer mod does.
    let check_value = (31 - weighted_sum % 31) % 31;
    USCC_ALPHABET
        .get(usize::try_from(check_value).ok()?)
        .copied()
}

/// The value of a USCC character (its index in the alphabet), or None when it is not in it.
fn uscc_character_value(character: u8) -> Option<u32> {
    let index = USCC_ALPHABET.iter().position(|&c| c == character)?;
    u32::try_from(index).ok()
}

/// The MOD 37,36 check character owed by the parts of an e-licence id, or None when a part is
/// not well formed.
fn elicense_check_character(
    license_type: &str,
    issuer: &str,
    serial: &str,
    version: &str,
) -> Option<u8> {
    let is_code = |part: &str| {
        (1..=ELICENSE_TYPE_AND_SERIAL_MAX_CHARACTERS).contains(&part.len())
            && part
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    };
    let version_is_well_formed = (1..=ELICENSE_VERSION_MAX_CHARACTERS).contains(&version.len())
        && version.bytes().all(|b| b.is_ascii_digit());
    if !is_code(license_type)
        || !is_elicense_issuer(issuer)
        || !is_code(serial)
        || !version_is_well_formed
    {
        return None;
    }
    // Annex A.2: the check covers the four parts with the dots dropped, not the OID prefix.
    let checked_bytes = [license_type, issuer, serial, version]
        .into_iter()
        .flat_map(str::bytes);
    mod_37_36_check_character(checked_bytes)
}

/// Whether an e-licence's issuer part is a USCC or a six-digit administrative division code
/// opening with a province-level code.
fn is_elicense_issuer(issuer: &str) -> bool {
    let bytes = issuer.as_bytes();
    if bytes.len() == DIVISION_CODE_CHARACTERS && bytes.iter().all(u8::is_ascii_digit) {
        is_province_code(decimal_value(&bytes[0..2]))
    } else {
        is_uscc(issuer)
    }
}

/// Whether `code` is one of the province-level codes that open an administrative division code.
fn is_province_code(code: u32) -> bool {
    PROVINCE_LEVEL_CODES
        .iter()
        .any(|&(first, last)| (first..=last).contains(&code))
}

/// The ISO 7064 hybrid MOD 37,36 check character of `characters` (`[0-9A-Z]`), or None when one
/// of them is outside that set.
fn mod_37_36_check_character(characters: impl Iterator<Item = u8>) -> Option<u8> {
    let mut product: u32 = 36;
    for character in characters {
        let value = mod_37_36_character_value(character)?;
        let sum = match (product + value) % 36 {
            0 => 36,
            sum => sum,
        };
        product = (sum * 2) % 37;
    }
    // The product is below 37, so 73 - product is positive and its residue is the c with
    // (product + c) mod 36 == 1.
    let check_value = (73 - product) % 36;
    MOD_37_36_ALPHABET
        .get(usize::try_from(check_value).ok()?)
        .copied()
}

/// The value of a MOD 37,36 character: digits 0-9, `A`-`Z` 10-35, None otherwise.
fn mod_37_36_character_value(character: u8) -> Option<u32> {
    match character {
        b'0'..=b'9' => Some(u32::from(character - b'0')),
        b'A'..=b'Z' => Some(u32::from(character - b'A') + 10),
        _ => None,
    }
}

/// The number written by a run of ASCII digits (callers check that they are digits and short).
fn decimal_value(digits: &[u8]) -> u32 {
    digits
        .iter()
        .fold(0, |value, &digit| value * 10 + u32::from(digit - b'0'))
}

/// Whether `year-month-day` is a day of the proleptic Gregorian calendar.
fn is_calendar_date(year: u32, month: u32, day: u32) -> bool {
    let is_leap_year =
        (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days_in_month).contains(&day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row of `tests/fixtures/identifiers.json`.
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct IdentifierCase {
        format: String,
        value: String,
        valid: bool,
        why: String,
    }

    fn identifier_cases() -> Vec<IdentifierCase> {
        serde_json::from_str(include_str!("../tests/fixtures/identifiers.json"))
            .expect("tests/fixtures/identifiers.json is a JSON array of identifier cases")
    }

    fn check_for_format(format: &str) -> fn(&str) -> bool {
        FORMATS
            .iter()
            .find(|(name, _)| *name == format)
            .map(|&(_, check)| check)
            .unwrap_or_else(|| panic!("fixture names an unknown format {format:?}"))
    }

    /// Characters to try in place of a check character: all printable ASCII plus look-alikes.
    fn replacement_characters() -> impl Iterator<Item = char> {
        (' '..='~').chain(['x', 'é', '０', '９', 'Ｘ', '\0', '\n'])
    }

    #[test]
    fn fixture_cases_are_judged_as_expected() {
        let identifier_cases = identifier_cases();
        let mut failures = Vec::new();
        for case in &identifier_cases {
            let check = check_for_format(&case.format);
            if check(&case.value) != case.valid {
                failures.push(format!(
                    "{} {:?} should be {} ({})",
                    case.format,
                    case.value,
                    if case.valid { "valid" } else { "invalid" },
                    case.why
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "failing cases:\n{}",
            failures.join("\n")
        );
    }

    #[test]
    fn fixture_covers_every_format_with_enough_cases() {
        let identifier_cases = identifier_cases();
        for (format, _) in FORMATS {
            let valid_count = identifier_cases
                .iter()
                .filter(|case| case.format == format && case.valid)
                .count();
            let invalid_count = identifier_cases
                .iter()
                .filter(|case| case.format == format && !case.valid)
                .count();
            assert!(valid_count >= 3, "{format}: only {valid_count} valid cases");
            assert!(
                valid_count + invalid_count >= 15,
                "{format}: only {} cases",
                valid_count + invalid_count
            );
        }
    }

    #[test]
    fn changing_the_check_character_of_a_valid_value_is_rejected() {
        for case in identifier_cases().iter().filter(|case| case.valid) {
            let check = check_for_format(&case.format);
            let mut body = case.value.clone();
            let original = body.pop().expect("a valid value is not empty");
            for replacement in replacement_characters().filter(|&c| c != original) {
                let changed = format!("{body}{replacement}");
                assert!(
                    !check(&changed),
                    "{} {changed:?} accepted after changing the check of {:?} ({})",
                    case.format,
                    case.value,
                    case.why
                );
            }
        }
    }

    #[test]
    fn resident_id_builder_round_trips() {
        for first17 in [
            "11010519491231002",
            "44052418800101001",
            "11010120000229001",
            "91000018000101123",
            "65010129991231456",
        ] {
            let resident_id = resident_id_with_check(first17).expect("well-formed first 17");
            assert!(resident_id.starts_with(first17));
            assert_eq!(resident_id.len(), 18);
            assert!(is_resident_id(&resident_id), "{resident_id} rejected");
        }
        assert_eq!(
            resident_id_with_check("11010519491231002").as_deref(),
            Some("11010519491231002X")
        );
        assert_eq!(
            resident_id_with_check("44052418800101001").as_deref(),
            Some("440524188001010014")
        );
    }

    #[test]
    fn resident_id_builder_refuses_malformed_input() {
        for first17 in [
            "",
            "1101051949123100",
            "110105194912310021",
            "16010519491231002",
            "11010519490230002",
            "11010519000229002",
            "1101051949123100A",
            "1101051949123100é",
            " 1101051949123100",
        ] {
            assert_eq!(resident_id_with_check(first17), None, "{first17:?}");
        }
    }

    #[test]
    fn uscc_builder_round_trips() {
        for first17 in [
            "91350100M000100Y4",
            "91110000600037341",
            "Y1440300MA5DXXXXX",
        ] {
            let uscc = uscc_with_check(first17).expect("well-formed first 17");
            assert!(uscc.starts_with(first17));
            assert!(is_uscc(&uscc), "{uscc} rejected");
        }
        assert_eq!(
            uscc_with_check("91350100M000100Y4").as_deref(),
            Some("91350100M000100Y43")
        );
    }

    #[test]
    fn uscc_builder_refuses_malformed_input() {
        for first17 in [
            "",
            "91350100M000100Y",
            "91350100M000100Y43",
            "91350100I000100Y4",
            "913A0100M000100Y4",
            "91350100m000100Y4",
            "91350100M000100é",
        ] {
            assert_eq!(uscc_with_check(first17), None, "{first17:?}");
        }
    }

    #[test]
    fn elicense_builder_round_trips() {
        let elicense =
            elicense_id("A1", "91350100M000100Y43", "123456", "1").expect("well-formed parts");
        assert_eq!(elicense, "1.2.156.3005.2.A1.91350100M000100Y43.123456.1.T");
        assert!(is_elicense_id(&elicense));
        let published = elicense_id(
            "11100000000013338W011",
            "11430000006122244L",
            "20230000403",
            "002",
        );
        assert_eq!(
            published.as_deref(),
            Some("1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.002.S")
        );
        let by_division = elicense_id("A1", "340100", "2023A01", "1").expect("well-formed parts");
        assert!(is_elicense_id(&by_division), "{by_division} rejected");
        let longest = elicense_id(
            &"Z".repeat(32),
            "91110000600037341L",
            &"9".repeat(32),
            "99999999",
        )
        .expect("well-formed parts");
        assert!(is_elicense_id(&longest), "{longest} rejected");
    }

    #[test]
    fn elicense_builder_refuses_malformed_parts() {
        let issuer = "91350100M000100Y43";
        for (license_type, issuer, serial, version) in [
            ("", issuer, "1", "1"),
            ("a1", issuer, "1", "1"),
            ("A.1", issuer, "1", "1"),
            ("A1", "91350100M000100Y44", "1", "1"),
            ("A1", "990100", "1", "1"),
            ("A1", "34010", "1", "1"),
            ("A1", issuer, "", "1"),
            ("A1", issuer, "1.2", "1"),
            ("A1", issuer, "12a", "1"),
            ("A1", issuer, "1", ""),
            ("A1", issuer, "1", "123456789"),
        ] {
            assert_eq!(
                elicense_id(license_type, issuer, serial, version),
                None,
                "{license_type:?} {issuer:?} {serial:?} {version:?}"
            );
        }
    }

    #[test]
    fn every_prefix_of_a_fixture_value_gets_an_answer() {
        // Truncations land on awkward lengths and mid-part; the checks must answer, not panic.
        for case in identifier_cases() {
            let check = check_for_format(&case.format);
            for (end, _) in case.value.char_indices() {
                let _ = check(&case.value[..end]);
                let _ = resident_id_with_check(&case.value[..end]);
                let _ = uscc_with_check(&case.value[..end]);
            }
        }
    }
}
