//! `spec.masking`: which result values are masked before they reach the client.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{SecretKeyRef, Subjects};

/// Masking of result values, by column and by what the value looks like.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new(
    "!((has(self.columns) && self.columns.exists(c, c.strategy == 'hash')) || (has(self.detectors) && self.detectors.exists(d, d.strategy == 'hash'))) || has(self.hashKeySecretRef)"
).message("strategy hash needs hashKeySecretRef (the Secret key that keys the hash)").field_path(".hashKeySecretRef"))]
pub struct Masking {
    /// Masks for columns, by pattern. The first entry whose pattern matches a result column wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub columns: Vec<ColumnMask>,
    /// Masks for values that look sensitive in any column not matched by `columns`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub detectors: Vec<DetectorMask>,
    /// Subjects who see values unmasked (their reads are still audited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exempt_subjects: Option<Subjects>,
    /// Key for the `hash` strategy (HMAC-SHA-256), so equal values hash equal without being
    /// guessable. Required when any mask uses `hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_key_secret_ref: Option<SecretKeyRef>,
    /// What happens when a value that must be masked cannot be (e.g. a binary-format column):
    /// `deny` fails the statement, `null` sends NULL instead.
    #[serde(default)]
    pub on_unmaskable: OnUnmaskable,
}

/// A mask for the columns matching some patterns.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("!has(self.partial) || self.strategy == 'partial'")
    .message("partial settings are only used with strategy: partial").field_path(".partial"))]
pub struct ColumnMask {
    /// Column patterns: `table.column`, `schema.table.column`, `*.ssn`.
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 194)), extend("x-kubernetes-list-type" = "set"))]
    pub columns: Vec<String>,
    /// How the values are masked.
    pub strategy: Strategy,
    /// Parameters of the `partial` strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<PartialMask>,
}

/// A mask for values a detector recognizes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("!has(self.partial) || self.strategy == 'partial'")
    .message("partial settings are only used with strategy: partial").field_path(".partial"))]
pub struct DetectorMask {
    /// What kind of value to recognize.
    pub kind: Detector,
    /// How recognized values are masked.
    pub strategy: Strategy,
    /// Parameters of the `partial` strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<PartialMask>,
}

/// How a value is masked.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Strategy {
    /// Replace the whole value with `****`.
    Redact,
    /// Keep the first `keepFirst` and last `keepLast` characters, `*` in between.
    Partial,
    /// Replace with a keyed hash (HMAC-SHA-256, hex), stable across queries, for joins and counts.
    Hash,
    /// Replace with SQL NULL.
    Null,
    /// Keep an email address's shape: first letter and domain stay (`j***@example.com`).
    Email,
}

/// Parameters of the `partial` strategy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartialMask {
    /// Characters kept at the start.
    #[serde(default)]
    #[schemars(range(min = 0, max = 64))]
    pub keep_first: i32,
    /// Characters kept at the end.
    #[serde(default = "default_keep_last")]
    #[schemars(range(min = 0, max = 64))]
    pub keep_last: i32,
}

fn default_keep_last() -> i32 {
    4
}

/// Kinds of sensitive values recognized in any column.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Detector {
    /// Email addresses.
    Email,
    /// Phone numbers in international (E.164-like) or common national formats.
    Phone,
    /// Payment card numbers (13 to 19 digits passing the Luhn check).
    CardNumber,
    /// International bank account numbers (checksum verified).
    Iban,
    /// US social security numbers (`123-45-6789`).
    Ssn,
    /// IPv4 and IPv6 addresses.
    IpAddress,
    /// JSON Web Tokens.
    Jwt,
    /// API keys and secrets with a known prefix (e.g. `sk_live_`, `ghp_`, `AKIA`).
    ApiKey,
}

/// What happens to a value that must be masked but cannot be.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnUnmaskable {
    /// Fail the statement (fail closed).
    #[default]
    Deny,
    /// Send NULL in place of the value.
    Null,
}
