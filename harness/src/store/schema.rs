//! The JSON Schema of `summary.json` (`harness/summary.schema.json`, draft
//! 2020-12) and a validator for it.
//!
//! The schema is written by hand, not derived from the Rust types, so that it
//! is a second description that can disagree: when a field of
//! [`Summary`](crate::model::summary::Summary) is added, renamed or changes type
//! without the schema (and so the version tag) following, the test that
//! validates real output fails. Objects forbid unknown properties for the
//! same reason. Numbers must be numbers: serde_json writes a NaN or an
//! infinity as `null`, which the schema rejects, so an analysis that divides
//! by zero is caught here rather than by a reader.

use std::sync::OnceLock;

use serde_json::Value;

/// The schema, as stored in the repository.
pub const SUMMARY_SCHEMA: &str = include_str!("../../summary.schema.json");

fn validator() -> Result<&'static jsonschema::Validator, String> {
    static VALIDATOR: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| {
            let schema: Value = serde_json::from_str(SUMMARY_SCHEMA)
                .map_err(|e| format!("summary.schema.json is not JSON: {e}"))?;
            jsonschema::draft202012::new(&schema)
                .map_err(|e| format!("summary.schema.json is not a valid schema: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Checks a parsed `summary.json` against [`SUMMARY_SCHEMA`]. On failure,
/// one line per problem: where in the document (a JSON pointer) and what.
pub fn validate_summary(value: &Value) -> Result<(), Vec<String>> {
    let validator = validator().map_err(|e| vec![e])?;
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| {
            let at = e.instance_path.to_string();
            format!("{}: {e}", if at.is_empty() { "/" } else { &at })
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_compiles() {
        assert!(validator().is_ok(), "{:?}", validator().err());
    }

    #[test]
    fn a_wrong_document_is_rejected_with_its_location() {
        let errors =
            validate_summary(&serde_json::json!({ "schema": "something else" })).unwrap_err();
        assert!(
            errors.iter().any(|e| e.starts_with("/schema:")),
            "{errors:?}"
        );
        assert!(errors.iter().any(|e| e.contains("cells")), "{errors:?}");
    }
}
