//! The purpose phase shared by exchanges and certificate lookups (SPEC §15): what a call's
//! `Xgate-Purpose` states against the deployment's vocabulary (`[purposes]`), and whether the
//! service or certificate type it calls accepts it.
//!
//! A value is a vocabulary code when its bytes are exactly a code's; anything else (UTF-8 text
//! included) is free text, which the trail keeps only as a digest.

use http::HeaderMap;

use crate::config::Config;
use crate::headers::XGATE_PURPOSE;
use crate::problem::ExchangeError;
use xgate_core::domain::PurposeCode;

/// The longest `Xgate-Purpose` the gateway takes (bytes): past it a call is refused (431) and
/// neither the text nor its digest is recorded.
pub(crate) const MAX_PURPOSE_BYTES: usize = 1024;

/// What a call's `Xgate-Purpose` states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stated<'c> {
    /// No header, or a blank one.
    Absent,
    /// One of the vocabulary's codes, byte for byte.
    Code(&'c PurposeCode),
    /// Free text: recorded only as a digest.
    Text,
    /// Longer than [`MAX_PURPOSE_BYTES`]: refused, not recorded.
    TooLong,
}

impl<'c> Stated<'c> {
    /// Reads `Xgate-Purpose` against the vocabulary of `config`.
    pub(crate) fn of(config: &'c Config, headers: &HeaderMap) -> Stated<'c> {
        let Some(value) = headers.get(XGATE_PURPOSE).map(|value| value.as_bytes()) else {
            return Stated::Absent;
        };
        if value.len() > MAX_PURPOSE_BYTES {
            Stated::TooLong
        } else if value.trim_ascii().is_empty() {
            Stated::Absent
        } else if let Some(code) = config.purpose_code(value) {
            Stated::Code(code)
        } else {
            Stated::Text
        }
    }

    /// The code, when it is one (recorded in clear).
    pub(crate) fn code(self) -> Option<&'c PurposeCode> {
        match self {
            Stated::Code(code) => Some(code),
            _ => None,
        }
    }

    /// The `purpose` label of `xgate_purpose_uses_total`: the code, `none`, or `other` (free
    /// text, or a value too long to take).
    pub(crate) fn label(self) -> &'c str {
        match self {
            Stated::Code(code) => code.as_str(),
            Stated::Absent => "none",
            Stated::Text | Stated::TooLong => "other",
        }
    }

    /// The purpose phase: a value too long is refused (431) whatever the call; when `listed`
    /// names purposes, the call must state one of them (400 `purpose-required` without one,
    /// 403 `purpose-not-allowed` with another).
    pub(crate) fn check(self, listed: &[PurposeCode]) -> Result<(), ExchangeError> {
        match self {
            Stated::TooLong => Err(ExchangeError::HeaderTooLarge),
            _ if listed.is_empty() => Ok(()),
            Stated::Absent => Err(ExchangeError::PurposeRequired),
            Stated::Code(code) if listed.contains(code) => Ok(()),
            Stated::Code(_) | Stated::Text => Err(ExchangeError::PurposeNotAllowed),
        }
    }
}
