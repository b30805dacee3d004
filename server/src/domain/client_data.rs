//! What we require of a passkey assertion's client data beyond what webauthn-rs checks.
//!
//! webauthn-rs checks an assertion's `type`, `challenge` and `origin`, and looks at
//! `crossOrigin` only when a passkey is registered. A browser asked for an assertion inside a
//! frame whose top-level page belongs to another site says so in the client data it signs:
//! `"crossOrigin": true` and, in newer browsers, `topOrigin` (the framing page's origin). Our
//! pages forbid being framed (`frame-ancestors 'none'`), but an approval is the one thing an
//! attacker most wants to trick a person into, so the server also refuses any sign-in or
//! decision that the browser itself reports as made in someone else's frame. A browser on our
//! own page sends `"crossOrigin": false` (Chromium) or nothing at all; both pass.
//!
//! The client data is what the authenticator signed (its hash is part of the signed data), so
//! these members cannot be removed by anyone but the browser that produced them.

use serde_json::Value;

/// Why client data was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrossOrigin {
    /// `crossOrigin` is `true`.
    #[error("it was made inside a frame of another site (crossOrigin)")]
    Framed,
    /// `topOrigin` is present.
    #[error("it was made inside a frame of {0} (topOrigin)")]
    TopOrigin(String),
    /// Not a JSON object: webauthn-rs would refuse it too, but we say so first.
    #[error("its client data is not a JSON object")]
    Malformed,
}

/// Refuses client data (the raw `clientDataJSON`) that a browser marked as produced in a
/// cross-origin frame.
pub fn refuse_cross_origin(client_data_json: &[u8]) -> Result<(), CrossOrigin> {
    let Ok(Value::Object(data)) = serde_json::from_slice::<Value>(client_data_json) else {
        return Err(CrossOrigin::Malformed);
    };
    if let Some(top) = data.get("topOrigin") {
        let shown = top.as_str().map_or_else(|| top.to_string(), str::to_string);
        return Err(CrossOrigin::TopOrigin(shown));
    }
    match data.get("crossOrigin") {
        // Anything but `false` or absent: a browser sends a boolean, and a value we cannot read
        // as "not framed" is not taken as such.
        None | Some(Value::Bool(false)) => Ok(()),
        Some(_) => Err(CrossOrigin::Framed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<(), CrossOrigin> {
        refuse_cross_origin(json.as_bytes())
    }

    #[test]
    fn same_origin_client_data_passes() {
        let base = r#""type":"webauthn.get","challenge":"abc","origin":"https://cs.example""#;
        assert_eq!(check(&format!("{{{base}}}")), Ok(()));
        assert_eq!(check(&format!("{{{base},\"crossOrigin\":false}}")), Ok(()));
    }

    #[test]
    fn framed_client_data_is_refused() {
        assert_eq!(
            check(r#"{"type":"webauthn.get","crossOrigin":true}"#),
            Err(CrossOrigin::Framed)
        );
        assert_eq!(check(r#"{"crossOrigin":"true"}"#), Err(CrossOrigin::Framed));
        assert_eq!(
            check(r#"{"crossOrigin":false,"topOrigin":"https://evil.example"}"#),
            Err(CrossOrigin::TopOrigin("https://evil.example".into()))
        );
        assert_eq!(check("[]"), Err(CrossOrigin::Malformed));
        assert_eq!(check("not json"), Err(CrossOrigin::Malformed));
    }
}
