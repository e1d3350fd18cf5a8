//! Every cache key name the tools read or write, in one place: DESIGN.md's layout, where
//! the session entry `v1:s:{<hash>}` holds the user snapshot (the braces are the Redis
//! Cluster hash tag).

/// The cache entry of the session whose storage hash (`SessionId::storage_hash`) is `hash`.
pub fn session(hash: &str) -> String {
    format!("v1:s:{{{hash}}}")
}

/// The storage hash of the session a token names (`None` for a token without a valid sid).
pub fn session_hash(token: &str) -> Option<String> {
    Some(shared::SessionId::parse(&raw_sid(token)?)?.storage_hash())
}

/// The raw session id inside a token's claims (for log-hygiene checks only).
pub fn raw_sid(token: &str) -> Option<String> {
    use base64::Engine;
    let claims = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("sid")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    #[test]
    fn session_hash_is_the_storage_hash_of_the_tokens_sid() {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let sid = b64(&[7u8; 32]);
        let claims = format!(r#"{{"sid":"{sid}"}}"#);
        let token = format!("{}.{}.sig", b64(b"{}"), b64(claims.as_bytes()));
        let expected = shared::SessionId::parse(&sid)
            .expect("a valid sid")
            .storage_hash();
        assert_eq!(super::raw_sid(&token).as_deref(), Some(sid.as_str()));
        assert_eq!(super::session_hash(&token), Some(expected.clone()));
        assert_eq!(super::session(&expected), format!("v1:s:{{{expected}}}"));
        assert_eq!(super::session_hash("not-a-token"), None);
    }
}
