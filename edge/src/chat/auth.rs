//! Who is calling: JWT verification for chat users (HS256 with a shared secret, or RS256/ES256
//! with a public key) and the operator's admin token. Tokens are never logged.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// How chat tokens are verified.
#[derive(Clone, Default)]
pub struct ChatAuthConfig {
    /// HS256 shared secret.
    pub jwt_secret: Option<String>,
    /// PEM public key (RSA or EC) for RS256 / ES256 tokens.
    pub jwt_public_key_pem: Option<Vec<u8>>,
    /// Bearer token that may manage any room.
    pub admin_token: Option<String>,
}

impl std::fmt::Debug for ChatAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatAuthConfig")
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<set>"))
            .field(
                "jwt_public_key",
                &self.jwt_public_key_pem.as_ref().map(|_| "<set>"),
            )
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// A verifier for each accepted algorithm.
pub struct Authenticator {
    verifiers: Vec<(DecodingKey, Validation)>,
    admin_token: Option<String>,
}

/// Who made a REST call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    User(String),
    Admin,
}

fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    // `exp` is enforced to the second: an expired token is refused, no grace.
    v.leeway = 0;
    v.set_required_spec_claims(&["exp", "sub"]);
    v
}

impl Authenticator {
    pub fn new(config: &ChatAuthConfig) -> anyhow::Result<Self> {
        let mut verifiers = Vec::new();
        if let Some(secret) = &config.jwt_secret {
            verifiers.push((
                DecodingKey::from_secret(secret.as_bytes()),
                validation(Algorithm::HS256),
            ));
        }
        if let Some(pem) = &config.jwt_public_key_pem {
            if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
                verifiers.push((key, validation(Algorithm::RS256)));
            } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
                verifiers.push((key, validation(Algorithm::ES256)));
            } else {
                anyhow::bail!("the JWT public key is neither an RSA nor an EC PEM key");
            }
        }
        Ok(Self {
            verifiers,
            admin_token: config.admin_token.clone().filter(|t| !t.is_empty()),
        })
    }

    pub fn enabled(&self) -> bool {
        !self.verifiers.is_empty()
    }

    /// The user id (`sub`) of a valid token.
    pub fn verify(&self, token: &str) -> Option<String> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        self.verifiers
            .iter()
            .filter(|(_, v)| v.algorithms.contains(&header.alg))
            .find_map(|(key, v)| jsonwebtoken::decode::<Claims>(token, key, v).ok())
            .map(|data| data.claims.sub)
            .filter(|sub| !sub.is_empty())
    }

    /// A REST caller from `Authorization: Bearer …`: the admin token or a user's JWT.
    pub fn caller(&self, headers: &HeaderMap) -> Option<Caller> {
        let token = bearer(headers)?;
        if let Some(admin) = &self.admin_token {
            if constant_time_eq(admin.as_bytes(), token.as_bytes()) {
                return Some(Caller::Admin);
            }
        }
        self.verify(token).map(Caller::User)
    }
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Mints an HS256 token for `sub` valid for `ttl_secs` (development and tests).
pub fn mint_hs256(secret: &str, sub: &str, ttl_secs: u64) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = Claims {
        sub: sub.to_owned(),
        exp: now + ttl_secs,
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(&ChatAuthConfig {
            jwt_secret: Some("s3cret".into()),
            admin_token: Some("root-token".into()),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn accepts_its_own_tokens_only() {
        let a = auth();
        let good = mint_hs256("s3cret", "alice", 60).unwrap();
        assert_eq!(a.verify(&good).as_deref(), Some("alice"));
        let foreign = mint_hs256("other", "alice", 60).unwrap();
        assert_eq!(a.verify(&foreign), None, "wrong secret");
        assert_eq!(a.verify("garbage"), None);
        assert_eq!(a.verify(""), None);
    }

    #[test]
    fn refuses_expired_and_unsigned_tokens() {
        let a = auth();
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "alice".into(),
                exp: 1,
            },
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert_eq!(a.verify(&expired), None);
        // alg "none": header {"alg":"none","typ":"JWT"}, no signature.
        let none =
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert_eq!(a.verify(none), None);
    }

    #[test]
    fn es256_tokens_verify_with_the_public_key() {
        // A throwaway key pair made for this test only.
        let private = include_bytes!("../../tests/fixtures/es256-test-private.pem");
        let public = include_bytes!("../../tests/fixtures/es256-test-public.pem");
        let a = Authenticator::new(&ChatAuthConfig {
            jwt_public_key_pem: Some(public.to_vec()),
            ..Default::default()
        })
        .unwrap();
        let sign = |sub: &str, exp: u64, alg| {
            jsonwebtoken::encode(
                &Header::new(alg),
                &Claims {
                    sub: sub.into(),
                    exp,
                },
                &EncodingKey::from_ec_pem(private).unwrap(),
            )
            .unwrap()
        };
        let far = 4_000_000_000;
        assert_eq!(
            a.verify(&sign("carol", far, Algorithm::ES256)).as_deref(),
            Some("carol")
        );
        assert_eq!(
            a.verify(&sign("carol", 1, Algorithm::ES256)),
            None,
            "expired"
        );
        // An HS256 token "signed" with the public key text must not pass (key confusion).
        let confused = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "mallory".into(),
                exp: far,
            },
            &EncodingKey::from_secret(public),
        )
        .unwrap();
        assert_eq!(a.verify(&confused), None);
        assert!(Authenticator::new(&ChatAuthConfig {
            jwt_public_key_pem: Some(b"not a key".to_vec()),
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn admin_and_users_from_bearer_headers() {
        let a = auth();
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer root-token".parse().unwrap());
        assert_eq!(a.caller(&h), Some(Caller::Admin));
        let user = mint_hs256("s3cret", "bob", 60).unwrap();
        h.insert("authorization", format!("bearer {user}").parse().unwrap());
        assert_eq!(a.caller(&h), Some(Caller::User("bob".into())));
        h.insert("authorization", "Bearer root-tokenX".parse().unwrap());
        assert_eq!(a.caller(&h), None);
    }
}
