//! Chat tokens: the claims the edge requires of a JWT, and the one HS256 minter (the `token`
//! command, the bench and tests use it; the edge verifies what it makes).

use std::time::{SystemTime, SystemTimeError, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

/// The claims a chat token carries: the user, and when the token expires (Unix seconds).
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("the system clock is before 1970")]
    Clock(#[source] SystemTimeError),
    #[error("encoding the token")]
    Encode(#[source] jsonwebtoken::errors::Error),
}

/// An HS256 token for `sub`, valid for `ttl_secs` from now.
pub fn mint_hs256(secret: &str, sub: &str, ttl_secs: u64) -> Result<String, MintError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(MintError::Clock)?
        .as_secs();
    let claims = Claims {
        sub: sub.to_owned(),
        exp: now + ttl_secs,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(MintError::Encode)
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;

    #[test]
    fn a_minted_token_verifies_with_its_secret_and_carries_sub_and_exp() {
        let token = mint_hs256("s3cret", "bench-1", 60).unwrap();
        let mut v = Validation::new(Algorithm::HS256);
        v.set_required_spec_claims(&["exp", "sub"]);
        let claims =
            jsonwebtoken::decode::<Claims>(&token, &DecodingKey::from_secret(b"s3cret"), &v)
                .unwrap()
                .claims;
        assert_eq!(claims.sub, "bench-1");
        let foreign = DecodingKey::from_secret(b"other");
        assert!(jsonwebtoken::decode::<Claims>(&token, &foreign, &v).is_err());
    }
}
