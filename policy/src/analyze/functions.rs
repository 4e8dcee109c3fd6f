//! What a function call may do: known-dangerous built-ins, and built-ins known to be read-only.
//!
//! Dangerous: reaches the server's filesystem, runs SQL from a string (dynamic SQL), opens network
//! connections, acts on other sessions, changes server or session configuration, or reads the change
//! stream. Matched on the bare name whatever the schema, because a same-named wrapper is no safer.
//!
//! Read-only: a built-in (unqualified or `pg_catalog`) with no side effect. Any other function,
//! including every user-defined one, is *unverified*: it may write, so the statement counts as a write
//! unless the policy vouches for the function. `pg_sleep` is read-only here: holding a connection is a
//! resource problem for timeouts, not a data-safety one.

use super::names::FunctionRef;

/// Built-ins that are dangerous whatever the statement around them does.
const DANGEROUS: &[&str] = &[
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_stat_file",
    "pg_logdir_ls",
    "lo_import",
    "lo_export",
    "set_config",
    "query_to_xml",
    "query_to_xml_and_xmlschema",
    "query_to_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "table_to_xml",
    "table_to_xml_and_xmlschema",
    "table_to_xmlschema",
    "schema_to_xml",
    "schema_to_xml_and_xmlschema",
    "schema_to_xmlschema",
    "database_to_xml",
    "database_to_xml_and_xmlschema",
    "database_to_xmlschema",
    "ts_stat",
    "pg_import_system_collations",
];

/// Families matched by prefix: file access, dblink, replication slots and logical decoding.
const DANGEROUS_PREFIXES: &[&str] = &[
    "pg_read_",
    "pg_ls_",
    "pg_file_",
    "dblink",
    "pg_logical_",
    "pg_replication_",
    "pg_create_logical_",
    "pg_create_physical_",
    "pg_drop_replication_",
    "pg_copy_logical_",
    "pg_copy_physical_",
];

/// Built-ins without side effects (sorted; checked by a unit test so `binary_search` stays valid).
#[rustfmt::skip] // A dense table reads better than one name per line.
const READ_ONLY: &[&str] = &[
    "abbrev", "abs", "acos", "age", "any_value", "array_agg", "array_append", "array_cat",
    "array_dims", "array_fill", "array_length", "array_lower", "array_ndims", "array_position",
    "array_positions", "array_prepend", "array_remove", "array_replace", "array_to_json",
    "array_to_string", "array_to_tsvector", "array_upper", "ascii", "asin", "atan", "atan2", "avg",
    "bit_and", "bit_length", "bit_or", "bit_xor", "bool_and", "bool_or", "broadcast", "btrim",
    "cardinality", "cbrt", "ceil", "ceiling", "char_length", "character_length", "chr",
    "clock_timestamp", "coalesce", "col_description", "concat", "concat_ws", "convert_from",
    "convert_to", "corr", "cos", "count", "covar_pop", "covar_samp", "cume_dist", "current_catalog",
    "current_database", "current_date", "current_role", "current_schema", "current_schemas",
    "current_setting", "current_time", "current_timestamp", "current_user", "currval", "date_bin",
    "date_part", "date_trunc", "daterange", "decode", "degrees", "dense_rank", "div", "encode",
    "every", "exp", "extract", "first_value", "floor", "format", "format_type", "gen_random_uuid",
    "generate_series", "generate_subscripts", "greatest", "has_column_privilege",
    "has_database_privilege", "has_function_privilege", "has_schema_privilege",
    "has_sequence_privilege", "has_table_privilege", "host", "inet_client_addr", "inet_client_port",
    "inet_server_addr", "inet_server_port", "initcap", "int4range", "int8range", "isempty",
    "isfinite", "json_agg", "json_array_elements", "json_array_elements_text", "json_array_length",
    "json_build_array", "json_build_object", "json_each", "json_each_text", "json_extract_path",
    "json_extract_path_text", "json_object", "json_object_agg", "json_object_keys",
    "json_populate_record", "json_strip_nulls", "json_typeof", "jsonb_agg", "jsonb_array_elements",
    "jsonb_array_elements_text", "jsonb_array_length", "jsonb_build_array", "jsonb_build_object",
    "jsonb_each", "jsonb_each_text", "jsonb_extract_path", "jsonb_extract_path_text",
    "jsonb_insert", "jsonb_object", "jsonb_object_agg", "jsonb_object_keys", "jsonb_path_exists",
    "jsonb_path_query", "jsonb_path_query_array", "jsonb_path_query_first", "jsonb_populate_record",
    "jsonb_pretty", "jsonb_set", "jsonb_strip_nulls", "jsonb_typeof", "justify_days",
    "justify_hours", "justify_interval", "lag", "last_value", "lead", "least", "left", "length",
    "ln", "localtime", "localtimestamp", "log", "log10", "lower", "lower_inc", "lower_inf", "lpad",
    "ltrim", "make_date", "make_interval", "make_time", "make_timestamp", "make_timestamptz",
    "masklen", "max", "md5", "min", "mod", "mode", "netmask", "network", "now", "nth_value",
    "ntile", "nullif", "num_nonnulls", "num_nulls", "numrange", "obj_description", "octet_length",
    "overlay", "percent_rank", "percentile_cont", "percentile_disc", "pg_backend_pid",
    "pg_blocking_pids", "pg_client_encoding", "pg_column_size", "pg_conf_load_time",
    "pg_current_wal_lsn", "pg_database_size", "pg_encoding_to_char", "pg_get_constraintdef",
    "pg_get_expr", "pg_get_functiondef", "pg_get_indexdef", "pg_get_ruledef",
    "pg_get_serial_sequence", "pg_get_triggerdef", "pg_get_userbyid", "pg_get_viewdef",
    "pg_has_role", "pg_indexes_size", "pg_is_in_recovery", "pg_postmaster_start_time",
    "pg_relation_size", "pg_size_pretty", "pg_sleep", "pg_sleep_for", "pg_sleep_until",
    "pg_table_is_visible", "pg_table_size", "pg_total_relation_size", "pg_typeof",
    "phraseto_tsquery", "pi", "plainto_tsquery", "position", "power", "quote_ident",
    "quote_literal", "quote_nullable", "radians", "random", "range_merge", "rank", "regexp_count",
    "regexp_instr", "regexp_like", "regexp_match", "regexp_matches", "regexp_replace",
    "regexp_split_to_array", "regexp_split_to_table", "regexp_substr", "regr_slope", "repeat",
    "replace", "reverse", "right", "round", "row", "row_number", "row_to_json", "rpad", "rtrim",
    "session_user", "setweight", "sha224", "sha256", "sha384", "sha512", "sign", "sin",
    "split_part", "sqrt", "starts_with", "statement_timestamp", "stddev", "stddev_pop",
    "stddev_samp", "string_agg", "string_to_array", "strpos", "substr", "substring", "sum", "tan",
    "timeofday", "to_char", "to_date", "to_hex", "to_json", "to_jsonb", "to_number", "to_regclass",
    "to_regtype", "to_timestamp", "to_tsquery", "to_tsvector", "transaction_timestamp", "translate",
    "trim", "trunc", "ts_headline", "ts_rank", "ts_rank_cd", "tsrange", "tstzrange", "unnest",
    "upper", "upper_inc", "upper_inf", "user", "var_pop", "var_samp", "variance", "version",
    "websearch_to_tsquery", "width_bucket", "xmlagg",
];

/// True for a call the policy should treat as dangerous (see the module doc).
pub fn is_dangerous(function: &FunctionRef) -> bool {
    let name = function.name.as_str();
    DANGEROUS.contains(&name) || DANGEROUS_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// True for a built-in known to have no side effect; false for everything else.
pub fn is_read_only(function: &FunctionRef) -> bool {
    function.is_catalog()
        && !is_dangerous(function)
        && READ_ONLY.binary_search(&function.name.as_str()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_list_is_sorted_and_unique() {
        assert!(
            READ_ONLY.windows(2).all(|w| w[0] < w[1]),
            "READ_ONLY must stay sorted"
        );
    }

    #[test]
    fn dangerous_matches_any_schema_and_families() {
        assert!(is_dangerous(&FunctionRef::new(
            None,
            "pg_terminate_backend"
        )));
        assert!(is_dangerous(&FunctionRef::new(
            Some("pg_catalog"),
            "pg_read_file"
        )));
        assert!(is_dangerous(&FunctionRef::new(
            Some("public"),
            "dblink_exec"
        )));
        assert!(!is_dangerous(&FunctionRef::new(None, "lower")));
    }

    #[test]
    fn read_only_needs_catalog_resolution() {
        assert!(is_read_only(&FunctionRef::new(None, "count")));
        assert!(is_read_only(&FunctionRef::new(Some("pg_catalog"), "lower")));
        assert!(!is_read_only(&FunctionRef::new(Some("app"), "lower")));
        assert!(!is_read_only(&FunctionRef::new(None, "nextval")));
        assert!(!is_read_only(&FunctionRef::new(None, "my_func")));
    }
}
