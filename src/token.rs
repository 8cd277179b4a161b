//! Bearer tokens: generating new ones for departments.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A fresh token and the SHA-256 digest that goes in the department's `token_sha256`.
pub struct NewToken {
    /// The secret: give it to the department, never store it in the gateway's configuration.
    pub token: String,
    /// Lowercase hex SHA-256 of the token.
    pub sha256: String,
}

/// 32 random bytes from a cryptographically secure generator seeded by the operating system, hex-encoded with an `xg_` prefix
/// (so secret scanners and people recognise it).
pub fn new_token() -> NewToken {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("xg_{}", hex::encode(bytes));
    let sha256 = hex::encode(Sha256::digest(token.as_bytes()));
    NewToken { token, sha256 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_and_hashes_match() {
        let first = new_token();
        let second = new_token();
        assert_ne!(first.token, second.token);
        assert_eq!(first.token.len(), 3 + 64);
        assert_eq!(
            first.sha256,
            hex::encode(Sha256::digest(first.token.as_bytes()))
        );
    }
}
