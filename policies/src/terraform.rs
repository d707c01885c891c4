//! The policy as Terraform JSON for the AWS provider's Lake Formation
//! resources, for `infra/` to include as is. The Glue database, table and
//! catalog id come in as variables (`var.glue_database`, `var.glue_table`,
//! `var.catalog_id`), and so do the principals' ARNs
//! (`var.principal_arns["<principal>"]`): each deployment's roles live in
//! its own account, never the example account of the policy file.

use serde_json::{Map, Value, json};

use crate::{Policy, TAG, glue::TABLE_RESOURCE};

fn name(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

pub fn render(policy: &Policy) -> Value {
    let mut tags = Map::new();
    for (key, def) in &policy.tags {
        tags.insert(
            name(key),
            json!({ "catalog_id": "${var.catalog_id}", "key": key, "values": def.values }),
        );
    }
    // Terraform cannot see through the variables that these resources
    // need the tag and the table: say so.
    let lf_tag = format!("aws_lakeformation_lf_tag.{}", name(TAG));
    // Grants, row filters and the column tags grants go by can be switched
    // off as a whole (never narrowed to some principals): only the offline
    // apply does, whose API has no data-cells filters, cannot read
    // tag-based grants back, nor remove column tags.
    let switch = "${var.enable_analyst_grants ? 1 : 0}";
    let mut column_tags = Map::new();
    for (value, columns) in &policy.columns {
        column_tags.insert(
            format!("{}_{}", name(TAG), name(value)),
            json!({
                "count": switch,
                "catalog_id": "${var.catalog_id}",
                "table_with_columns": [{
                    "database_name": "${var.glue_database}",
                    "name": "${var.glue_table}",
                    "column_names": columns,
                }],
                "lf_tag": [{ "key": TAG, "value": value }],
                "depends_on": [lf_tag.clone(), TABLE_RESOURCE.to_owned()],
            }),
        );
    }
    let mut permissions = Map::new();
    let mut filters = Map::new();
    for (principal, p) in &policy.principals {
        let id = name(principal);
        let arn = format!("${{var.principal_arns[\"{principal}\"]}}");
        match &p.row_filter {
            None => {
                permissions.insert(
                    id,
                    json!({
                        "count": switch,
                        "catalog_id": "${var.catalog_id}",
                        "principal": arn,
                        "permissions": ["SELECT", "DESCRIBE"],
                        "lf_tag_policy": [{
                            "resource_type": "TABLE",
                            "expression": [{ "key": TAG, "values": p.sensitivity }],
                        }],
                        "depends_on": [lf_tag.clone(), TABLE_RESOURCE.to_owned()],
                    }),
                );
            }
            Some(filter) => {
                // Row filters are data-cells filters: they name their
                // columns, the ones the principal's tags grant.
                let filter_name = format!("{principal}-rows");
                filters.insert(
                    id.clone(),
                    json!({
                        "count": switch,
                        "table_data": [{
                            "database_name": "${var.glue_database}",
                            "table_name": "${var.glue_table}",
                            "table_catalog_id": "${var.catalog_id}",
                            "name": filter_name,
                            "column_names": policy.visible_columns(p),
                            "row_filter": [{ "filter_expression": filter }],
                        }],
                        "depends_on": [TABLE_RESOURCE],
                    }),
                );
                permissions.insert(
                    id.clone(),
                    json!({
                        "count": switch,
                        "catalog_id": "${var.catalog_id}",
                        "principal": arn,
                        "permissions": ["SELECT", "DESCRIBE"],
                        "data_cells_filter": [{
                            "database_name": "${var.glue_database}",
                            "table_name": "${var.glue_table}",
                            "table_catalog_id": "${var.catalog_id}",
                            "name": filter_name,
                        }],
                        "depends_on": [format!("aws_lakeformation_data_cells_filter.{id}")],
                    }),
                );
            }
        }
    }
    let mut resources = Map::new();
    resources.insert("aws_lakeformation_lf_tag".into(), Value::Object(tags));
    resources.insert(
        "aws_lakeformation_resource_lf_tags".into(),
        Value::Object(column_tags),
    );
    if !filters.is_empty() {
        resources.insert(
            "aws_lakeformation_data_cells_filter".into(),
            Value::Object(filters),
        );
    }
    resources.insert(
        "aws_lakeformation_permissions".into(),
        Value::Object(permissions),
    );
    json!({
        "//": "Generated by `imgpipe policies render --format terraform` from policies/default.toml.",
        "resource": resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole rendering, reviewed as a snapshot (`cargo insta review`
    /// after an intended change).
    #[test]
    fn rendering_snapshot() {
        insta::assert_json_snapshot!(render(&Policy::load(None).unwrap()));
    }

    #[test]
    fn renders_every_resource_kind_with_the_provider_block_shapes() {
        let policy = Policy::load(None).unwrap();
        let tf = render(&policy);
        let r = &tf["resource"];
        assert_eq!(
            r["aws_lakeformation_lf_tag"]["sensitivity"]["values"],
            json!(["public", "restricted"])
        );
        let restricted = &r["aws_lakeformation_resource_lf_tags"]["sensitivity_restricted"];
        assert!(
            restricted["table_with_columns"][0]["column_names"]
                .as_array()
                .unwrap()
                .contains(&json!("gps_lat"))
        );
        assert_eq!(
            restricted["lf_tag"][0],
            json!({ "key": "sensitivity", "value": "restricted" })
        );
        let analyst = &r["aws_lakeformation_permissions"]["analyst"];
        assert_eq!(
            analyst["lf_tag_policy"][0]["expression"][0]["values"],
            json!(["public"])
        );
        let filter = &r["aws_lakeformation_data_cells_filter"]["kafka_analyst"]["table_data"][0];
        assert_eq!(
            filter["row_filter"][0]["filter_expression"],
            "source = 'kafka'"
        );
        assert!(
            !filter["column_names"]
                .as_array()
                .unwrap()
                .contains(&json!("gps_lat"))
        );
        assert_eq!(
            r["aws_lakeformation_permissions"]["kafka_analyst"]["data_cells_filter"][0]["name"],
            "kafka-analyst-rows"
        );
    }
}
