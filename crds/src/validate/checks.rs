//! Field-level checks shared by the validators.

use serde_json::Value;

/// `text` as a problem report may show it: whatever stands between the scheme and the last `@`
/// before the query is replaced, so credentials (even a password with a `/` in it) do not end
/// up in a status or an Event.
pub(crate) fn shown_url(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    let end = text[start..]
        .find(['?', '#'])
        .map_or(text.len(), |i| start + i);
    match text[start..end].rfind('@') {
        Some(at) => format!("{}…{}", &text[..start], &text[start + at..]),
        None => text.to_owned(),
    }
}

/// Checks an absolute `http(s)://host[:port][/path]` URL; `https_only` refuses `http://`.
pub(crate) fn url(text: &str, https_only: bool) -> Result<(), String> {
    let rest = match (text.strip_prefix("https://"), text.strip_prefix("http://")) {
        (Some(rest), _) => rest,
        (None, Some(_)) if https_only => return Err("must use https://".into()),
        (None, Some(rest)) => rest,
        (None, None) => {
            let want = if https_only {
                "https://"
            } else {
                "http:// or https://"
            };
            return Err(format!("is not a URL starting with {want}"));
        }
    };
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains spaces or control characters".into());
    }
    // Any `@` before the query counts: a password may hold a `/` that ends the authority early.
    if shown_url(text) != text {
        return Err("must not carry credentials (user@host); use a Secret reference".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        // An IPv6 literal `[::1]` has colons of its own.
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (authority, None),
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    if let Some(port) = port
        && !matches!(port.parse::<u32>(), Ok(1..=65535))
    {
        return Err(format!("has port {port:?}, not a number from 1 to 65535"));
    }
    Ok(())
}

/// Checks a host name or IP address as `spec.database.host` takes it.
pub(crate) fn host(text: &str) -> Result<(), String> {
    if text.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    if text.contains("://") {
        return Err(
            "is a URL; give the host name only (the port goes in spec.database.port)".into(),
        );
    }
    if text.contains(':') {
        return Err("has a port; put it in spec.database.port".into());
    }
    let ok = text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err("is not a valid host name or IP address".into())
    }
}

/// A DNS-1123 label: lower-case letters, digits and `-`, at most 63, alphanumeric at both ends.
pub(crate) fn dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// A DNS-1123 subdomain, as object names are.
pub(crate) fn dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(dns_label)
}

/// `name` or `namespace/name` of a ServiceAccount.
pub(crate) fn service_account(text: &str) -> Result<(), String> {
    let (namespace, name) = match text.split_once('/') {
        Some((namespace, name)) => (Some(namespace), name),
        None => (None, text),
    };
    if text.starts_with("system:serviceaccount:") {
        return Err("write namespace/name, not system:serviceaccount:namespace:name".into());
    }
    if namespace.is_some_and(|ns| !dns_label(ns)) || !dns_subdomain(name) {
        return Err("is not a ServiceAccount name or namespace/name".into());
    }
    Ok(())
}

/// A function name, optionally schema-qualified: `pg_read_file`, `pg_catalog.pg_read_file`.
pub(crate) fn function_name(text: &str) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() <= 2
        && parts.iter().all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
                && part.len() <= 63
        })
}

/// Checks inline JWKS text: a JSON object with a non-empty `keys` array of public asymmetric keys.
pub(crate) fn jwks(text: &str) -> Result<(), String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("is not JSON: {e}"))?;
    let keys = value
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("is not a JSON Web Key Set: it needs a \"keys\" array")?;
    if keys.is_empty() {
        return Err("has an empty \"keys\" array".into());
    }
    for (i, key) in keys.iter().enumerate() {
        let member = |name: &str| {
            key.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let required: &[&str] = match member("kty") {
            Some("RSA") => &["n", "e"],
            Some("EC") => &["crv", "x", "y"],
            Some("OKP") => &["crv", "x"],
            Some("oct") => {
                return Err(format!(
                    "has a symmetric key (keys[{i}], kty oct); a policy is readable by many, so only public keys belong in it"
                ));
            }
            Some(other) => {
                return Err(format!(
                    "has keys[{i}] with unsupported kty {other:?} (use RSA, EC or OKP)"
                ));
            }
            None => return Err(format!("has keys[{i}] without \"kty\"")),
        };
        if let Some(missing) = required.iter().find(|m| member(m).is_none()) {
            return Err(format!("has keys[{i}] without {missing:?}"));
        }
        if key.get("d").is_some() {
            return Err(format!(
                "has a private key (keys[{i}] has \"d\"); put only the public key in a policy"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn urls() {
        assert!(url("https://issuer.example.com", true).is_ok());
        assert!(url("https://issuer.example.com:8443/realms/x", true).is_ok());
        assert!(url("http://audit.svc:8080/v1/events", false).is_ok());
        assert_eq!(url("http://issuer", true).unwrap_err(), "must use https://");
        assert!(url("https://", true).unwrap_err().contains("no host"));
        assert!(url("https://a:99999", true).unwrap_err().contains("port"));
        assert!(
            url("https://u:p@host", true)
                .unwrap_err()
                .contains("credentials")
        );
        assert_eq!(shown_url("https://u:p@host/x"), "https://…@host/x");
        assert_eq!(shown_url("https://u:a/b@host/x"), "https://…@host/x");
        assert!(
            url("https://u:a/b@host", true)
                .unwrap_err()
                .contains("credentials")
        );
        assert_eq!(shown_url("http://host:1/a"), "http://host:1/a");
        assert!(
            url("issuer.example.com", true)
                .unwrap_err()
                .contains("https://")
        );
    }

    #[test]
    fn hosts() {
        assert!(host("orders-db.payments.svc").is_ok());
        assert!(host("10.0.0.5").is_ok());
        assert!(host("::1").is_ok());
        assert!(host("db:5432").unwrap_err().contains("port"));
        assert!(host("postgres://db").unwrap_err().contains("URL"));
        assert!(host("bad_host").is_err());
    }

    #[test]
    fn jwks_needs_public_asymmetric_keys() {
        assert!(jwks(r#"{"keys":[{"kty":"RSA","n":"abc","e":"AQAB"}]}"#).is_ok());
        assert!(jwks(r#"{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b"}]}"#).is_ok());
        assert!(jwks("{").unwrap_err().starts_with("is not JSON"));
        assert!(jwks(r#"{"keys":[]}"#).unwrap_err().contains("empty"));
        assert!(
            jwks(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#)
                .unwrap_err()
                .contains("symmetric")
        );
        assert!(
            jwks(r#"{"keys":[{"kty":"RSA","n":"a"}]}"#)
                .unwrap_err()
                .contains("\"e\"")
        );
        assert!(
            jwks(r#"{"keys":[{"kty":"RSA","n":"a","e":"b","d":"c"}]}"#)
                .unwrap_err()
                .contains("private")
        );
    }

    #[test]
    fn names() {
        assert!(service_account("reporting").is_ok());
        assert!(service_account("analytics/reporting").is_ok());
        assert!(service_account("system:serviceaccount:a:b").is_err());
        assert!(service_account("Analytics/x").is_err());
        assert!(function_name("pg_catalog.pg_read_file"));
        assert!(!function_name("pg_read_file()"));
        assert!(!function_name("a.b.c"));
    }
}
