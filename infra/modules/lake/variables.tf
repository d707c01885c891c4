variable "bucket" {
  description = "The lake bucket, imgpipe's alone: its lifecycle rules cover the whole bucket."
  type        = string
}
