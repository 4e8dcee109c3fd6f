//! Loading and validation: every value the types alone cannot check, with errors that name
//! the field and the value.

use std::path::Path;

use super::{Config, ConfigError, TlsMode, invalid};

impl Config {
    /// Reads, parses and validates a YAML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: Self = serde_yaml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value the types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listeners.is_empty() {
            return Err(invalid(
                "listeners",
                "[]",
                "at least one listener is needed",
            ));
        }
        for (i, l) in self.listeners.iter().enumerate() {
            let field = format!("listeners[{i}]");
            if l.name.is_empty() {
                return Err(invalid(format!("{field}.name"), "", "must not be empty"));
            }
            if self.listeners[..i].iter().any(|o| o.name == l.name) {
                return Err(invalid(
                    format!("{field}.name"),
                    &l.name,
                    "duplicate listener name",
                ));
            }
            let up = &l.upstream;
            if up.host.is_empty() {
                return Err(invalid(
                    format!("{field}.upstream.host"),
                    "",
                    "must not be empty",
                ));
            }
            if up.port == 0 {
                return Err(invalid(
                    format!("{field}.upstream.port"),
                    0,
                    "must be 1-65535",
                ));
            }
            if up.database.is_empty() {
                return Err(invalid(
                    format!("{field}.upstream.database"),
                    "",
                    "must not be empty",
                ));
            }
            let tls = &up.tls;
            match (tls.mode, &tls.ca_file) {
                (TlsMode::VerifyFull, None) => {
                    return Err(invalid(
                        format!("{field}.upstream.tls.ca_file"),
                        "none",
                        "verify-full needs a CA file",
                    ));
                }
                (TlsMode::VerifyFull, Some(ca)) if !ca.is_file() => {
                    return Err(invalid(
                        format!("{field}.upstream.tls.ca_file"),
                        ca.display(),
                        "no such file",
                    ));
                }
                _ => {}
            }
            up.credentials
                .resolve(&format!("{field}.upstream.credentials"))?;
        }
        if let Some(tls) = &self.client_tls {
            for (name, path) in [("cert_file", &tls.cert_file), ("key_file", &tls.key_file)] {
                if !path.is_file() {
                    return Err(invalid(
                        format!("client_tls.{name}"),
                        path.display(),
                        "no such file",
                    ));
                }
            }
        }
        super::enforce::validate(self.policies.as_deref(), self.identity.as_ref())?;
        super::audit::validate(self.audit.as_ref())?;
        let l = &self.limits;
        if !(64..=1_048_576).contains(&l.max_startup_message_bytes) {
            return Err(invalid(
                "limits.max_startup_message_bytes",
                l.max_startup_message_bytes,
                "must be between 64 and 1048576",
            ));
        }
        if !(1024..=1_073_741_824).contains(&l.max_message_bytes) {
            return Err(invalid(
                "limits.max_message_bytes",
                l.max_message_bytes,
                "must be between 1024 and 1073741824 (1 GiB, PostgreSQL's own ceiling)",
            ));
        }
        if !(1024..=16_777_216).contains(&l.max_unanswered_messages) {
            return Err(invalid(
                "limits.max_unanswered_messages",
                l.max_unanswered_messages,
                "must be between 1024 and 16777216",
            ));
        }
        if l.startup_timeout_secs == 0 {
            return Err(invalid(
                "limits.startup_timeout_secs",
                0,
                "must be at least 1",
            ));
        }
        if l.connect_timeout_secs == 0 {
            return Err(invalid(
                "limits.connect_timeout_secs",
                0,
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::*;
    use crate::protocol::codec::DEFAULT_MAX_MESSAGE;

    fn parse(yaml: &str) -> Result<Config, String> {
        let c: Config = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    /// Every key of the example is one the sidecar knows (its files are not on this machine,
    /// so it is parsed, not validated).
    #[test]
    fn the_example_in_the_repository_parses() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml");
        let c: Config = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(c.limits.max_unanswered_messages, 262_144);
    }

    const BASE: &str = "listeners:
  - name: app
    listen: 127.0.0.1:6432
    upstream:
      host: db
      database: app
      tls: {mode: disable}
      credentials: {username: app, password_env: PATH}
";

    #[test]
    fn accepts_a_minimal_file() {
        let c = parse(BASE).unwrap();
        assert_eq!(c.listeners[0].upstream.port, 5432);
        assert_eq!(c.limits.max_message_bytes, DEFAULT_MAX_MESSAGE);
        assert_eq!(c.client_auth, ClientAuth::Password);
    }

    #[test]
    fn names_the_bad_field() {
        for (yaml, needle) in [
            (
                BASE.replace("database: app", "database: app\n      colour: red"),
                "colour",
            ),
            (
                BASE.replace("mode: disable", "mode: verify-full"),
                "listeners[0].upstream.tls.ca_file",
            ),
            (
                BASE.replace("mode: disable", "mode: sometimes"),
                "sometimes",
            ),
            (
                BASE.replace("username: app,", ""),
                "listeners[0].upstream.credentials",
            ),
            (
                BASE.replace("PATH", "DBWARDEN_SURELY_UNSET"),
                "password_env",
            ),
            (
                format!("{BASE}limits: {{max_message_bytes: 10}}"),
                "limits.max_message_bytes",
            ),
            (
                format!("{BASE}limits: {{startup_timeout_secs: 0}}"),
                "limits.startup_timeout_secs",
            ),
            ("listeners: []".to_string(), "listeners"),
            (format!("{BASE}policies: [a.yaml]"), "identity"),
            (
                format!("{BASE}policies: [a.yaml]\nidentity: {{serviceAccount: api}}"),
                "identity.service_account",
            ),
            (
                format!("{BASE}policies: [a.yaml, a.yaml]\nidentity: {{serviceAccount: shop/api}}"),
                "policies[1]",
            ),
            (
                format!("{BASE}identity: {{serviceAccount: shop/api, colour: red}}"),
                "colour",
            ),
            (
                format!("{BASE}identity: {{serviceAccount: shop/api, jwks_ca_file: ''}}"),
                "identity.jwks_ca_file",
            ),
            (
                format!("{BASE}audit: {{collector_url: ftp://x, spool_dir: /tmp/s}}"),
                "audit.collector_url",
            ),
            (
                format!(
                    "{BASE}audit: {{collector_url: http://x, spool_dir: /tmp/s, spool_max_bytes: 10}}"
                ),
                "audit.spool_max_bytes",
            ),
            (
                format!(
                    "{BASE}audit: {{collector_url: http://x, spool_dir: /tmp/s, failure_policy: maybe}}"
                ),
                "maybe",
            ),
            (
                format!(
                    "{BASE}audit: {{collector_url: http://x, spool_dir: /tmp/s, instance: 'a b'}}"
                ),
                "audit.instance",
            ),
        ] {
            let err = parse(&yaml).unwrap_err();
            assert!(err.contains(needle), "{err} should name {needle}");
        }
    }

    #[test]
    fn accepts_policies_with_an_identity() {
        let c = parse(&format!(
            "{BASE}policies: [/etc/p.yaml]\nidentity: {{serviceAccount: shop/api, pod: api-0, jwks_ca_file: /ca.pem}}"
        ))
        .unwrap();
        assert_eq!(c.policies.unwrap().len(), 1);
        let identity = c.identity.unwrap();
        assert_eq!(identity.service_account_parts().unwrap(), ("shop", "api"));
        assert_eq!(
            identity.jwks_ca_file.unwrap(),
            std::path::Path::new("/ca.pem")
        );
    }

    #[test]
    fn the_readme_audit_section_parses_and_a_minimal_one_validates() {
        let readme = include_str!("../../README.md");
        let block = readme
            .split("```yaml\n")
            .filter_map(|rest| rest.split("```").next())
            .find(|block| block.starts_with("audit:"))
            .unwrap();
        let c: Config = serde_yaml::from_str(&format!("{BASE}{block}")).unwrap();
        let audit = c.audit.unwrap();
        assert_eq!(audit.failure_policy, FailureMode::Closed);
        assert_eq!(audit.statement_text, TextMode::Redacted);
        let c = parse(&format!(
            "{BASE}audit: {{collector_url: 'http://127.0.0.1:1/x', spool_dir: /tmp/s}}"
        ))
        .unwrap();
        let audit = c.audit.unwrap();
        assert_eq!(audit.spool_max_bytes, 256 << 20);
        assert_eq!(audit.fsync, FsyncMode::Interval);
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
