//! The Lake Formation policy for the `images` table, as one declarative
//! file (`policies/default.toml`): LF-Tag values on columns, principals
//! granted tag values, optional row filters (data-cells filters). The same
//! model renders Terraform for AWS and enforces the grants locally in
//! `imgpipe query`, so the grants are testable without AWS.

pub mod glue;
pub mod lake_formation;
pub mod query;
pub mod terraform;

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

/// The shipped policy.
pub const DEFAULT_POLICY: &str = include_str!("../default.toml");

/// The tag imgpipe's columns carry.
pub const TAG: &str = "sensitivity";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub tags: BTreeMap<String, TagDef>,
    /// Tag value → the columns carrying it.
    pub columns: BTreeMap<String, Vec<String>>,
    pub principals: BTreeMap<String, Principal>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagDef {
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    /// IAM role or user ARN (or a SAML/IAM Identity Center group).
    pub arn: String,
    /// The `sensitivity` values granted.
    pub sensitivity: Vec<String>,
    /// A SQL predicate limiting the rows (a data-cells filter on AWS).
    #[serde(default)]
    pub row_filter: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}: {source}")]
    Parse {
        file: String,
        source: toml::de::Error,
    },
    #[error("{file}: {field}: {why}")]
    Invalid {
        file: String,
        field: String,
        why: String,
    },
    #[error("reading {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("access denied: unknown principal {0:?}")]
    UnknownPrincipal(String),
}

impl Policy {
    pub fn load(path: Option<&Path>) -> Result<Self, PolicyError> {
        match path {
            None => Self::parse("policies/default.toml", DEFAULT_POLICY),
            Some(p) => {
                let file = p.display().to_string();
                let text = std::fs::read_to_string(p).map_err(|source| PolicyError::Read {
                    file: file.clone(),
                    source,
                })?;
                Self::parse(&file, &text)
            }
        }
    }

    /// Parse and check against the metadata schema; errors name the file,
    /// the line (for syntax) or the field (for meaning).
    pub fn parse(file: &str, text: &str) -> Result<Self, PolicyError> {
        let policy: Policy = toml::from_str(text).map_err(|source| PolicyError::Parse {
            file: file.to_owned(),
            source,
        })?;
        policy.validate(file)?;
        Ok(policy)
    }

    fn validate(&self, file: &str) -> Result<(), PolicyError> {
        let bad = |field: String, why: String| {
            Err(PolicyError::Invalid {
                file: file.to_owned(),
                field,
                why,
            })
        };
        let Some(tag) = self.tags.get(TAG) else {
            return bad("tags".into(), format!("the tag {TAG:?} must be defined"));
        };
        if self.tags.len() != 1 {
            return bad("tags".into(), format!("only the {TAG:?} tag is supported"));
        }
        let schema = lake::schema::arrow_schema();
        let known: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let mut tagged: BTreeMap<&str, &str> = BTreeMap::new();
        for (value, columns) in &self.columns {
            if !tag.values.contains(value) {
                return bad(
                    format!("columns.{value}"),
                    format!("{value:?} is not a value of tag {TAG:?}"),
                );
            }
            for column in columns {
                if !known.contains(&column.as_str()) {
                    return bad(
                        format!("columns.{value}"),
                        format!("{column:?} is not a column of table images"),
                    );
                }
                if let Some(other) = tagged.insert(column, value) {
                    return bad(
                        format!("columns.{value}"),
                        format!("{column:?} is also tagged {other:?}"),
                    );
                }
            }
        }
        // An untagged column would be invisible to everyone on AWS and
        // silently public nowhere: make it an error instead.
        if let Some(missing) = known.iter().find(|c| !tagged.contains_key(*c)) {
            return bad(
                "columns".into(),
                format!("column {missing:?} has no {TAG} value"),
            );
        }
        for (name, p) in &self.principals {
            if !p.arn.starts_with("arn:") {
                return bad(
                    format!("principals.{name}.arn"),
                    format!("{:?} is not an ARN", p.arn),
                );
            }
            if let Some(v) = p.sensitivity.iter().find(|v| !tag.values.contains(v)) {
                return bad(
                    format!("principals.{name}.sensitivity"),
                    format!("{v:?} is not a value of tag {TAG:?}"),
                );
            }
            if p.row_filter.as_deref().is_some_and(|f| f.trim().is_empty()) {
                return bad(format!("principals.{name}.row_filter"), "is empty".into());
            }
        }
        Ok(())
    }

    pub fn principal(&self, name: &str) -> Result<&Principal, PolicyError> {
        self.principals
            .get(name)
            .ok_or_else(|| PolicyError::UnknownPrincipal(name.to_owned()))
    }

    /// The columns `principal` may see, in table order.
    pub fn visible_columns(&self, principal: &Principal) -> Vec<String> {
        let allowed: Vec<&String> = principal
            .sensitivity
            .iter()
            .flat_map(|v| self.columns.get(v).into_iter().flatten())
            .collect();
        lake::schema::arrow_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|c| allowed.contains(&c))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_policy_is_valid_and_separates_gps() {
        let policy = Policy::load(None).unwrap();
        let analyst = policy.visible_columns(policy.principal("analyst").unwrap());
        assert!(analyst.contains(&"width".to_owned()) && !analyst.contains(&"gps_lat".to_owned()));
        let officer = policy.visible_columns(policy.principal("privacy-officer").unwrap());
        assert_eq!(officer.len(), lake::schema::arrow_schema().fields().len());
        assert!(
            policy
                .principal("kafka-analyst")
                .unwrap()
                .row_filter
                .is_some()
        );
        assert!(policy.principal("nobody").is_err());
    }

    #[test]
    fn errors_name_the_line_or_field() {
        let e = Policy::parse("p.toml", "[tags.sensitivity]\nvalues = [\"public\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p.toml") && e.contains("line"), "{e}");

        let mut text = DEFAULT_POLICY.replace("\"gps_lon\"", "\"gps_longitude\"");
        let e = Policy::parse("p.toml", &text).unwrap_err().to_string();
        assert!(
            e.contains("columns.restricted") && e.contains("gps_longitude"),
            "{e}"
        );

        text = DEFAULT_POLICY.replace(", \"gps_lon\"", "");
        let e = Policy::parse("p.toml", &text).unwrap_err().to_string();
        assert!(e.contains("gps_lon") && e.contains("no sensitivity"), "{e}");

        text = DEFAULT_POLICY.replace(
            "sensitivity = [\"public\"]\nrow_filter",
            "sensitivity = [\"secret\"]\nrow_filter",
        );
        let e = Policy::parse("p.toml", &text).unwrap_err().to_string();
        assert!(e.contains("principals.kafka-analyst.sensitivity"), "{e}");
    }
}
