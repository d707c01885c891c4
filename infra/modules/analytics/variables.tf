variable "catalog_id" {
  description = "AWS account id of the Glue Data Catalog."
  type        = string
}

variable "glue_database" {
  description = "Glue database holding the images table."
  type        = string
}

variable "glue_table" {
  description = "The Glue table over metadata/."
  type        = string
  default     = "images"
}

variable "bucket" {
  description = "The lake bucket."
  type        = string
}

variable "lake_prefix" {
  description = "Key prefix of the lake inside the bucket (empty, or ending in /)."
  type        = string
  default     = ""
}
