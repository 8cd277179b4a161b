//! How an exchange or a certificate lookup ended: SPEC §9's closed set of outcome words, and
//! the gateway's own few. The one list of them: the trail stores the word, the metrics label
//! with it, the problems map to it, the auditor routes filter by it and the summary (and so the
//! dashboard) counts failures by it.

use std::fmt;

/// How a call ended. [`Outcome::as_str`] is the word the trail, the metrics and the auditor
/// routes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Served.
    Ok,
    /// No or unknown credentials (401).
    Unauthenticated,
    /// Not a consumer of the service, or a method it does not allow (403, 405).
    Forbidden,
    /// No such service, path or certificate (404).
    NotFound,
    /// A request that is not what the service takes: malformed, invalid against its schema,
    /// missing its purpose (400, 415, 422).
    InvalidRequest,
    /// A record that does not translate between a department's layout and the shared one.
    TranslationError,
    /// A body, head or target over its bound (413, 414, 431).
    TooLarge,
    /// The provider could not be reached, or the gateway failed (502, 500).
    UpstreamError,
    /// The provider did not answer in time (504).
    UpstreamTimeout,
    /// The provider's answer broke its schema (502).
    InvalidResponse,
    /// Over a bound on calls in flight or a rate limit (429, 503).
    RateLimited,
    /// The gateway's own: the caller hung up before its call was forwarded (it was not).
    Cancelled,
    /// The gateway's own: refused because the trail could not commit (503).
    StoreUnavailable,
    /// A certificate lookup answered from the cache.
    Hit,
    /// A certificate lookup answered by the issuer, then cached.
    Miss,
    /// A certificate lookup answered from an expired entry while its issuer fails.
    Stale,
}

impl Outcome {
    /// Every outcome, in the order of SPEC §9, then the gateway's own, then the lookups' answers.
    pub const ALL: [Outcome; 16] = [
        Outcome::Ok,
        Outcome::Unauthenticated,
        Outcome::Forbidden,
        Outcome::NotFound,
        Outcome::InvalidRequest,
        Outcome::TranslationError,
        Outcome::TooLarge,
        Outcome::UpstreamError,
        Outcome::UpstreamTimeout,
        Outcome::InvalidResponse,
        Outcome::RateLimited,
        Outcome::Cancelled,
        Outcome::StoreUnavailable,
        Outcome::Hit,
        Outcome::Miss,
        Outcome::Stale,
    ];

    /// The outcome's word.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::Forbidden => "forbidden",
            Outcome::NotFound => "not_found",
            Outcome::InvalidRequest => "invalid_request",
            Outcome::TranslationError => "translation_error",
            Outcome::TooLarge => "too_large",
            Outcome::UpstreamError => "upstream_error",
            Outcome::UpstreamTimeout => "upstream_timeout",
            Outcome::InvalidResponse => "invalid_response",
            Outcome::RateLimited => "rate_limited",
            Outcome::Cancelled => "cancelled",
            Outcome::StoreUnavailable => "store_unavailable",
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Stale => "stale",
        }
    }

    /// The outcome a word names, if any.
    pub fn parse(word: &str) -> Option<Outcome> {
        Outcome::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == word)
    }

    /// Whether a certificate lookup with this outcome was answered rather than refused: the
    /// cache's answers, and `not_found`, which is the issuer's answer.
    pub const fn is_lookup_answer(self) -> bool {
        matches!(
            self,
            Outcome::Hit | Outcome::Miss | Outcome::Stale | Outcome::NotFound
        )
    }

    /// Whether a lookup was served from or into the cache (the hit ratio's denominator).
    pub const fn is_cache_answer(self) -> bool {
        matches!(self, Outcome::Hit | Outcome::Miss | Outcome::Stale)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_parses_back_to_its_outcome_and_no_other_word_does() {
        for outcome in Outcome::ALL {
            assert_eq!(Outcome::parse(outcome.as_str()), Some(outcome));
        }
        let words: std::collections::HashSet<_> = Outcome::ALL.map(Outcome::as_str).into();
        assert_eq!(words.len(), Outcome::ALL.len(), "one word per outcome");
        for other in ["", "OK", "Ok", "ok ", "refused", "not-found"] {
            assert_eq!(Outcome::parse(other), None, "{other:?}");
        }
    }

    #[test]
    fn the_spec_words_come_first_in_its_order() {
        let spec = [
            "ok",
            "unauthenticated",
            "forbidden",
            "not_found",
            "invalid_request",
            "translation_error",
            "too_large",
            "upstream_error",
            "upstream_timeout",
            "invalid_response",
            "rate_limited",
        ];
        let words: Vec<_> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(&words[..spec.len()], spec);
    }
}
