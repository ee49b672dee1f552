//! Who is calling: JWT verification for chat users (HS256 with a shared secret, or RS256/ES256
//! with a public key) and the operator's admin token. Tokens are never logged.
//!
//! A valid token is signed by a configured key, has `sub` (1 to `max_sub_bytes` bytes) and
//! `exp` in the future, any `nbf` in the past, and — when configured — the expected `iss` and
//! `aud`. No leeway: the edge's clock is the reference.

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use switchyard_schema::token::Claims;

/// HS256 secrets shorter than this are warned about at start (RFC 7518 §3.2: a key of at least
/// the hash size, 256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

/// How chat tokens are verified.
#[derive(Clone)]
pub struct ChatAuthConfig {
    /// HS256 shared secret.
    pub jwt_secret: Option<String>,
    /// PEM public key (RSA or EC) for RS256 / ES256 tokens.
    pub jwt_public_key_pem: Option<Vec<u8>>,
    /// Bearer token that may manage any room.
    pub admin_token: Option<String>,
    /// When set, tokens must carry this `iss`.
    pub issuer: Option<String>,
    /// When set, tokens must carry this `aud` (without it, tokens naming any audience are
    /// refused, as RFC 7519 §4.1.3 asks).
    pub audience: Option<String>,
    /// Longest accepted `sub` (the user id), in bytes.
    pub max_sub_bytes: usize,
}

impl Default for ChatAuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            jwt_public_key_pem: None,
            admin_token: None,
            issuer: None,
            audience: None,
            max_sub_bytes: 128,
        }
    }
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
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("max_sub_bytes", &self.max_sub_bytes)
            .finish()
    }
}

/// A verifier for each accepted algorithm.
pub struct Authenticator {
    verifiers: Vec<(DecodingKey, Validation)>,
    admin_token: Option<String>,
    max_sub_bytes: usize,
}

/// A verified chat user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    /// `exp`, Unix seconds: an open connection is closed then.
    pub expires_at: u64,
}

/// Who made a REST call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    User(String),
    Admin,
}

fn validation(alg: Algorithm, config: &ChatAuthConfig) -> Validation {
    let mut v = Validation::new(alg);
    // `exp` and `nbf` are enforced to the second: no grace.
    v.leeway = 0;
    v.validate_nbf = true;
    let mut required = vec!["exp", "sub"];
    if let Some(iss) = &config.issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    if let Some(aud) = &config.audience {
        v.set_audience(&[aud]);
        required.push("aud");
    }
    v.set_required_spec_claims(&required);
    v
}

/// A secret short enough to brute-force offline from one token.
pub fn weak_secret(config: &ChatAuthConfig) -> bool {
    config
        .jwt_secret
        .as_ref()
        .is_some_and(|s| s.len() < MIN_SECRET_BYTES)
}

impl Authenticator {
    pub fn new(config: &ChatAuthConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(
            config.max_sub_bytes > 0,
            "the longest accepted token subject must be at least 1 byte"
        );
        let mut verifiers = Vec::new();
        if let Some(secret) = &config.jwt_secret {
            if weak_secret(config) {
                tracing::warn!(
                    bytes = secret.len(),
                    "SWITCHYARD_JWT_SECRET is shorter than {MIN_SECRET_BYTES} bytes: anyone \
                     holding one token can guess it offline and forge others; use \
                     {MIN_SECRET_BYTES} or more random bytes"
                );
            }
            verifiers.push((
                DecodingKey::from_secret(secret.as_bytes()),
                validation(Algorithm::HS256, config),
            ));
        }
        if let Some(pem) = &config.jwt_public_key_pem {
            if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
                verifiers.push((key, validation(Algorithm::RS256, config)));
            } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
                verifiers.push((key, validation(Algorithm::ES256, config)));
            } else {
                anyhow::bail!("the JWT public key is neither an RSA nor an EC PEM key");
            }
        }
        Ok(Self {
            verifiers,
            admin_token: config.admin_token.clone().filter(|t| !t.is_empty()),
            max_sub_bytes: config.max_sub_bytes,
        })
    }

    pub fn enabled(&self) -> bool {
        !self.verifiers.is_empty()
    }

    /// The user of a valid token.
    pub fn verify(&self, token: &str) -> Option<Identity> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let claims = self
            .verifiers
            .iter()
            .filter(|(_, v)| v.algorithms.contains(&header.alg))
            .find_map(|(key, v)| jsonwebtoken::decode::<Claims>(token, key, v).ok())?
            .claims;
        if claims.sub.is_empty() || claims.sub.len() > self.max_sub_bytes {
            tracing::debug!(
                bytes = claims.sub.len(),
                "token refused: sub is empty or too long"
            );
            return None;
        }
        Some(Identity {
            user: claims.sub,
            expires_at: claims.exp,
        })
    }

    /// A REST caller from `Authorization: Bearer …`: the admin token or a user's JWT.
    pub fn caller(&self, headers: &HeaderMap) -> Option<Caller> {
        let token = bearer(headers)?;
        if let Some(admin) = &self.admin_token {
            if constant_time_eq(admin.as_bytes(), token.as_bytes()) {
                return Some(Caller::Admin);
            }
        }
        self.verify(token).map(|id| Caller::User(id.user))
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

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use jsonwebtoken::{EncodingKey, Header};
    use switchyard_schema::token::mint_hs256;

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
        assert_eq!(a.verify(&good).map(|id| id.user).as_deref(), Some("alice"));
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
            a.verify(&sign("carol", far, Algorithm::ES256))
                .map(|id| id.user)
                .as_deref(),
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

    fn sign(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap()
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn reports_exp_and_honours_nbf() {
        let a = auth();
        let exp = now() + 600;
        let ok = sign(serde_json::json!({"sub": "ann", "exp": exp, "nbf": now() - 5}));
        assert_eq!(
            a.verify(&ok),
            Some(Identity {
                user: "ann".into(),
                expires_at: exp
            })
        );
        let early = sign(serde_json::json!({"sub": "ann", "exp": exp, "nbf": now() + 60}));
        assert_eq!(a.verify(&early), None, "not valid yet");
    }

    #[test]
    fn caps_the_subject_length() {
        let a = auth();
        let exp = now() + 600;
        let at_cap = "a".repeat(128);
        let ok = sign(serde_json::json!({"sub": at_cap, "exp": exp}));
        assert!(a.verify(&ok).is_some());
        let long = sign(serde_json::json!({"sub": "a".repeat(129), "exp": exp}));
        assert_eq!(a.verify(&long), None);
        let empty = sign(serde_json::json!({"sub": "", "exp": exp}));
        assert_eq!(a.verify(&empty), None);
    }

    #[test]
    fn issuer_and_audience_when_configured() {
        let exp = now() + 600;
        let strict = Authenticator::new(&ChatAuthConfig {
            jwt_secret: Some("s3cret".into()),
            issuer: Some("https://id.example".into()),
            audience: Some("switchyard".into()),
            ..Default::default()
        })
        .unwrap();
        let token = |claims| strict.verify(&sign(claims)).is_some();
        assert!(token(serde_json::json!({
            "sub": "ann", "exp": exp, "iss": "https://id.example", "aud": "switchyard"
        })));
        assert!(!token(serde_json::json!({
            "sub": "ann", "exp": exp, "iss": "https://evil.example", "aud": "switchyard"
        })));
        assert!(!token(serde_json::json!({
            "sub": "ann", "exp": exp, "iss": "https://id.example", "aud": "other"
        })));
        assert!(
            !token(serde_json::json!({"sub": "ann", "exp": exp, "aud": "switchyard"})),
            "iss required once configured"
        );
        assert!(
            !token(serde_json::json!({"sub": "ann", "exp": exp, "iss": "https://id.example"})),
            "aud required once configured"
        );
        // Unconfigured: no iss needed; a token meant for another audience is still refused.
        let lax = auth();
        assert!(lax
            .verify(&sign(
                serde_json::json!({"sub": "ann", "exp": exp, "iss": "anyone"})
            ))
            .is_some());
        assert!(lax
            .verify(&sign(
                serde_json::json!({"sub": "ann", "exp": exp, "aud": "other"})
            ))
            .is_none());
    }

    #[test]
    fn short_secrets_are_flagged() {
        let cfg = |s: &str| ChatAuthConfig {
            jwt_secret: Some(s.into()),
            ..Default::default()
        };
        assert!(weak_secret(&cfg("short")));
        assert!(weak_secret(&cfg(&"x".repeat(31))));
        assert!(!weak_secret(&cfg(&"x".repeat(32))));
        assert!(!weak_secret(&ChatAuthConfig::default()));
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
