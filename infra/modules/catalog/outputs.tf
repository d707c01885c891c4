output "catalog_id" {
  description = "The Data Catalog (account) id, available once the Lake Formation admins are set."
  value       = aws_lakeformation_data_lake_settings.this.catalog_id
}

output "glue_database" {
  description = "The Glue database, once created."
  value       = aws_glue_catalog_database.this.name
}

output "metadata_location_arn" {
  description = "The registered Lake Formation location (metadata/)."
  value       = aws_lakeformation_resource.metadata.arn
}
