//! Newtypes for the names that cross the gateway's boundaries: parsed once, never wrong after.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Why a raw string is not a valid name of its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {kind}: {rule}")]
pub struct InvalidName {
    /// What the value was meant to be ("department id", "schema name", ...).
    pub kind: &'static str,
    /// The offending value, cut to a bounded length.
    pub value: String,
    /// The rule it breaks.
    pub rule: &'static str,
}

/// The pattern shared by department ids, service names, schema names and certificate types:
/// `^[a-z0-9][a-z0-9-]{0,62}$`. Checked before any use, so a name can never reach the file
/// system as `..` or `/`.
fn check_name(kind: &'static str, value: &str) -> Result<(), InvalidName> {
    let bytes = value.as_bytes();
    let well_formed = !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if well_formed {
        Ok(())
    } else {
        Err(InvalidName {
            kind,
            value: value.chars().take(80).collect(),
            rule: "1 to 63 characters of a-z, 0-9 and '-', not starting with '-'",
        })
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(Box<str>);

        impl $name {
            /// Parses a raw name, checking the shared name pattern.
            pub fn parse(value: &str) -> Result<Self, InvalidName> {
                check_name($kind, value)?;
                Ok(Self(value.into()))
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidName;
            fn from_str(value: &str) -> Result<Self, InvalidName> {
                Self::parse(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// A department's id, e.g. `market-regulation`.
    DepartmentId,
    "department id"
);
name_type!(
    /// A service's name within its provider, e.g. `business-licenses`.
    ServiceName,
    "service name"
);
name_type!(
    /// A shared schema's name, e.g. `business-license`.
    SchemaName,
    "schema name"
);
name_type!(
    /// Whose record a call carries (SPEC §15), e.g. `resident` or `organisation`.
    SubjectKind,
    "subject kind"
);
name_type!(
    /// A certificate type, e.g. `marriage-certificate`.
    CertificateType,
    "certificate type"
);

/// A schema version: a positive integer, 1 being the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SchemaVersion(u32);

impl SchemaVersion {
    /// The first version of every schema.
    pub const FIRST: SchemaVersion = SchemaVersion(1);

    /// Parses a decimal version number without sign, leading zeros or surrounding space.
    pub fn parse(value: &str) -> Result<Self, InvalidName> {
        let invalid = || InvalidName {
            kind: "schema version",
            value: value.chars().take(80).collect(),
            rule: "a positive integer without leading zeros",
        };
        if value.is_empty() || value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(invalid());
        }
        value
            .parse::<u32>()
            .map(SchemaVersion)
            .map_err(|_| invalid())
    }

    /// Wraps a number, refusing 0.
    pub fn new(number: u32) -> Option<Self> {
        (number > 0).then_some(SchemaVersion(number))
    }

    /// The version as a number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A reference to a schema from configuration: `name` follows the latest version, `name@N`
/// pins version N.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SchemaRef {
    /// The schema's name.
    pub name: SchemaName,
    /// The pinned version, or `None` for "latest".
    pub version: Option<SchemaVersion>,
}

impl SchemaRef {
    /// Parses `name` or `name@N`.
    pub fn parse(value: &str) -> Result<Self, InvalidName> {
        match value.split_once('@') {
            Some((name, version)) => Ok(SchemaRef {
                name: SchemaName::parse(name)?,
                version: Some(SchemaVersion::parse(version)?),
            }),
            None => Ok(SchemaRef {
                name: SchemaName::parse(value)?,
                version: None,
            }),
        }
    }
}

impl fmt::Display for SchemaRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(version) => write!(f, "{}@{}", self.name, version),
            None => self.name.fmt(f),
        }
    }
}

/// What a department may do on the admin plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Exchanges records on the data plane; no admin-plane rights.
    Department,
    /// Reads metrics, the audit trail and the schema registry.
    Auditor,
    /// Registers schemas, reloads configuration, flushes caches.
    Admin,
}

impl Role {
    /// The role's name as written in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Department => "department",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

/// How a schema's new versions must relate to earlier ones (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compatibility {
    /// Any change is accepted.
    None,
    /// Every record valid under the previous version is valid under the new one.
    Backward,
    /// Every record valid under the new version is valid under the previous one.
    Forward,
    /// Both backward and forward against the previous version.
    Full,
    /// Backward against every earlier version.
    BackwardTransitive,
    /// Forward against every earlier version.
    ForwardTransitive,
    /// Full against every earlier version.
    FullTransitive,
}

impl Compatibility {
    /// Every mode, in the order the spec lists them.
    pub const ALL: [Compatibility; 7] = [
        Compatibility::None,
        Compatibility::Backward,
        Compatibility::Forward,
        Compatibility::Full,
        Compatibility::BackwardTransitive,
        Compatibility::ForwardTransitive,
        Compatibility::FullTransitive,
    ];

    /// The mode's name as written in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Compatibility::None => "none",
            Compatibility::Backward => "backward",
            Compatibility::Forward => "forward",
            Compatibility::Full => "full",
            Compatibility::BackwardTransitive => "backward_transitive",
            Compatibility::ForwardTransitive => "forward_transitive",
            Compatibility::FullTransitive => "full_transitive",
        }
    }

    /// Parses a mode's name.
    pub fn parse(value: &str) -> Option<Self> {
        Compatibility::ALL
            .into_iter()
            .find(|mode| mode.as_str() == value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_shared_pattern() {
        for good in ["tax", "market-regulation", "a", "0day", &"a".repeat(63)] {
            assert!(DepartmentId::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-tax",
            "Tax",
            "tax_bureau",
            "../schemas",
            "tax/x",
            "税务",
            &"a".repeat(64),
            "tax ",
        ] {
            assert!(DepartmentId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions_are_positive_integers_without_noise() {
        assert_eq!(SchemaVersion::parse("1").map(SchemaVersion::get), Ok(1));
        assert_eq!(SchemaVersion::parse("42").map(SchemaVersion::get), Ok(42));
        for bad in ["", "0", "01", "-1", "+1", "1.0", " 1", "99999999999"] {
            assert!(SchemaVersion::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn schema_refs_pin_or_follow_latest() {
        let latest = SchemaRef::parse("person").unwrap();
        assert_eq!(latest.version, None);
        assert_eq!(latest.to_string(), "person");
        let pinned = SchemaRef::parse("person@2").unwrap();
        assert_eq!(pinned.version.map(SchemaVersion::get), Some(2));
        assert_eq!(pinned.to_string(), "person@2");
        for bad in ["person@", "@1", "person@0", "Person@1", "person@1@2"] {
            assert!(SchemaRef::parse(bad).is_err(), "{bad}");
        }
    }
}
