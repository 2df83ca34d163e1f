//! Connection tokens: JWTs signed with HS256, RS256 or ES256, and what
//! their claims allow.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Token verification keys and the anonymous policy.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// HS256 secret.
    pub hmac_secret: Option<String>,
    /// RS256 public key (PEM).
    pub rsa_public_key: Option<Vec<u8>>,
    /// ES256 public key (PEM).
    pub ecdsa_public_key: Option<Vec<u8>>,
    /// Clients may connect without a token.
    pub allow_anonymous: bool,
}

/// The claims a token carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Claims {
    /// The user id (`""`: anonymous).
    pub sub: String,
    /// Expiry (seconds since the Unix epoch), checked when present.
    #[serde(default)]
    pub exp: Option<u64>,
    /// Channel patterns the user may use beyond its namespaces' defaults.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Channels the server subscribes the connection to (server-side
    /// subscriptions).
    #[serde(default)]
    pub subs: Vec<String>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError(pub String);

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Verifies tokens with the configured keys.
pub struct Authenticator {
    keys: Vec<(Algorithm, DecodingKey)>,
    allow_anonymous: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algorithms: Vec<Algorithm> = self.keys.iter().map(|(a, _)| *a).collect();
        f.debug_struct("Authenticator").field("algorithms", &algorithms).finish()
    }
}

impl Authenticator {
    /// Loads the keys of `config` (a PEM that does not parse is an error).
    pub fn new(config: &AuthConfig) -> Result<Self, String> {
        let mut keys = Vec::new();
        if let Some(secret) = &config.hmac_secret {
            keys.push((Algorithm::HS256, DecodingKey::from_secret(secret.as_bytes())));
        }
        if let Some(pem) = &config.rsa_public_key {
            let key = DecodingKey::from_rsa_pem(pem).map_err(|e| format!("RSA public key: {e}"))?;
            keys.push((Algorithm::RS256, key));
        }
        if let Some(pem) = &config.ecdsa_public_key {
            let key = DecodingKey::from_ec_pem(pem).map_err(|e| format!("ECDSA public key: {e}"))?;
            keys.push((Algorithm::ES256, key));
        }
        Ok(Self { keys, allow_anonymous: config.allow_anonymous })
    }

    /// Who a client is: its token's claims, or anonymous claims (`sub`
    /// `""`) when it has no token and anonymous clients are allowed.
    pub fn identify(&self, token: Option<&str>) -> Result<Claims, AuthError> {
        match token {
            Some(token) => self.verify(token),
            None if self.allow_anonymous => Ok(Claims::default()),
            None => Err(AuthError("a token is required".into())),
        }
    }

    /// Checks a token's signature (with the key of its algorithm; other
    /// algorithms, `none` included, are refused) and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError(format!("malformed token: {e}")))?;
        let (algorithm, key) = self
            .keys
            .iter()
            .find(|(algorithm, _)| *algorithm == header.alg)
            .ok_or_else(|| AuthError(format!("tokens signed with {:?} are not accepted", header.alg)))?;
        let mut validation = Validation::new(*algorithm);
        validation.required_spec_claims = ["sub".to_owned()].into_iter().collect();
        validation.validate_exp = true;
        validation.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| AuthError(format!("invalid token: {e}")))?;
        Ok(data.claims)
    }
}

/// Whether a token's channel patterns grant `channel`: an exact name, or
/// a pattern ending with `*` that matches any suffix.
pub fn grants(patterns: &[String], channel: &str) -> bool {
    patterns.iter().any(|pattern| match pattern.strip_suffix('*') {
        Some(prefix) => channel.starts_with(prefix),
        None => pattern == channel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    fn hs256(secret: &str, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
            .unwrap()
    }

    fn authenticator() -> Authenticator {
        Authenticator::new(&AuthConfig { hmac_secret: Some("s3cret".into()), ..AuthConfig::default() }).unwrap()
    }

    #[test]
    fn a_good_token_gives_its_claims() {
        let token = hs256("s3cret", json!({"sub": "al", "exp": now() + 60, "channels": ["chat:*"], "name": "Al"}));
        let claims = authenticator().verify(&token).unwrap();
        assert_eq!(claims.sub, "al");
        assert_eq!(claims.name.as_deref(), Some("Al"));
        assert!(grants(&claims.channels, "chat:x"));
        assert!(!grants(&claims.channels, "news"));
    }

    #[test]
    fn forged_expired_and_unsigned_tokens_are_refused() {
        let auth = authenticator();
        let forged = hs256("guess", json!({"sub": "al"}));
        assert!(auth.verify(&forged).unwrap_err().0.contains("invalid"));
        let expired = hs256("s3cret", json!({"sub": "al", "exp": now() - 3600}));
        assert!(auth.verify(&expired).unwrap_err().0.contains("invalid"));
        let no_sub = hs256("s3cret", json!({"exp": now() + 60}));
        assert!(auth.verify(&no_sub).is_err());
        // alg "none": header {"alg":"none"}, claims {"sub":"al"}, no signature.
        let none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbCJ9.";
        assert!(auth.verify(none).is_err());
        assert!(auth.verify("garbage").unwrap_err().0.contains("malformed"));
    }

    #[test]
    fn no_token_is_anonymous_only_where_allowed() {
        assert_eq!(authenticator().identify(None).unwrap_err().0, "a token is required");
        let open = Authenticator::new(&AuthConfig { allow_anonymous: true, ..AuthConfig::default() }).unwrap();
        assert_eq!(open.identify(None).unwrap(), Claims::default());
        assert!(open.identify(Some("garbage")).is_err(), "a bad token is not taken for no token");
    }

    #[test]
    fn exact_patterns_match_exactly() {
        let patterns = vec!["news".to_owned(), "user:42:*".to_owned()];
        assert!(grants(&patterns, "news"));
        assert!(!grants(&patterns, "newsroom"));
        assert!(grants(&patterns, "user:42:inbox"));
        assert!(!grants(&patterns, "user:43:inbox"));
    }
}
