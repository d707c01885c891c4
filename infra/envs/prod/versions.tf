terraform {
  required_version = ">= 1.11"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # State: one S3 bucket per account, a key per env, S3-native locking
  # (Terraform ≥ 1.10). CI validates with -backend=false; uncomment (and
  # fill in) before the first apply — see infra/README.md, "State".
  # backend "s3" {
  #   bucket       = "<account>-terraform-state"
  #   key          = "imgpipe/<env>/terraform.tfstate"
  #   region       = "us-east-1"
  #   encrypt      = true
  #   use_lockfile = true
  # }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      app         = "imgpipe"
      environment = var.env
      managed-by  = "terraform"
    }
  }
}
