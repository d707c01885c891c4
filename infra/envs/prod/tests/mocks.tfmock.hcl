# Shared by every test file: realistic values for what the mock provider
# would otherwise invent (account, region, AZs, ARNs the policies embed).

mock_data "aws_caller_identity" {
  defaults = {
    account_id = "111122223333"
    arn        = "arn:aws:iam::111122223333:role/terraform-deploy"
  }
}

mock_data "aws_partition" {
  defaults = { partition = "aws" }
}

mock_data "aws_region" {
  defaults = { name = "us-east-1" }
}

mock_data "aws_availability_zones" {
  defaults = { names = ["us-east-1a", "us-east-1b", "us-east-1c"] }
}

mock_data "aws_elb_service_account" {
  defaults = { arn = "arn:aws:iam::127311923021:root" }
}

mock_data "aws_ssm_parameter" {
  defaults = { value = "ami-0123456789abcdef0" }
}

# ARN-shaped defaults: the provider validates ARNs even under a mock.
mock_resource "aws_iam_role" {
  defaults = { arn = "arn:aws:iam::111122223333:role/mock-role" }
}
mock_resource "aws_iam_instance_profile" {
  defaults = { arn = "arn:aws:iam::111122223333:instance-profile/mock" }
}
mock_resource "aws_kms_key" {
  defaults = { arn = "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-0000-0000-000000000000" }
}
mock_resource "aws_s3_bucket" {
  defaults = { arn = "arn:aws:s3:::mock-bucket" }
}
mock_resource "aws_sns_topic" {
  defaults = { arn = "arn:aws:sns:us-east-1:111122223333:mock" }
}
mock_resource "aws_cloudwatch_log_group" {
  defaults = { arn = "arn:aws:logs:us-east-1:111122223333:log-group:mock" }
}
mock_resource "aws_secretsmanager_secret" {
  defaults = { arn = "arn:aws:secretsmanager:us-east-1:111122223333:secret:mock-AbCdEf" }
}
mock_resource "aws_ssm_parameter" {
  defaults = { arn = "arn:aws:ssm:us-east-1:111122223333:parameter/mock" }
}
mock_resource "aws_ecr_repository" {
  defaults = {
    arn            = "arn:aws:ecr:us-east-1:111122223333:repository/mock"
    repository_url = "111122223333.dkr.ecr.us-east-1.amazonaws.com/mock"
  }
}
mock_resource "aws_ecs_cluster" {
  defaults = { arn = "arn:aws:ecs:us-east-1:111122223333:cluster/mock" }
}
mock_resource "aws_ecs_task_definition" {
  defaults = {
    arn                  = "arn:aws:ecs:us-east-1:111122223333:task-definition/mock:1"
    arn_without_revision = "arn:aws:ecs:us-east-1:111122223333:task-definition/mock"
  }
}
mock_resource "aws_ecs_capacity_provider" {
  defaults = { arn = "arn:aws:ecs:us-east-1:111122223333:capacity-provider/mock" }
}
mock_resource "aws_autoscaling_group" {
  defaults = { arn = "arn:aws:autoscaling:us-east-1:111122223333:autoScalingGroup:00000000-0000-0000-0000-000000000000:autoScalingGroupName/mock" }
}
mock_resource "aws_appautoscaling_policy" {
  defaults = { arn = "arn:aws:autoscaling:us-east-1:111122223333:scalingPolicy:00000000-0000-0000-0000-000000000000:resource/ecs/service/mock/mock:policyName/mock" }
}
mock_resource "aws_lb" {
  defaults = {
    arn        = "arn:aws:elasticloadbalancing:us-east-1:111122223333:loadbalancer/app/mock/0123456789abcdef"
    arn_suffix = "app/mock/0123456789abcdef"
  }
}
mock_resource "aws_lb_target_group" {
  defaults = {
    arn        = "arn:aws:elasticloadbalancing:us-east-1:111122223333:targetgroup/mock/0123456789abcdef"
    arn_suffix = "targetgroup/mock/0123456789abcdef"
  }
}
mock_resource "aws_wafv2_web_acl" {
  defaults = { arn = "arn:aws:wafv2:us-east-1:111122223333:regional/webacl/mock/00000000-0000-0000-0000-000000000000" }
}
mock_resource "aws_msk_cluster" {
  defaults = { arn = "arn:aws:kafka:us-east-1:111122223333:cluster/mock/00000000-0000-0000-0000-000000000000-1" }
}
mock_resource "aws_msk_configuration" {
  defaults = { arn = "arn:aws:kafka:us-east-1:111122223333:configuration/mock/00000000-0000-0000-0000-000000000000-1" }
}
mock_resource "aws_quicksight_data_source" {
  defaults = { arn = "arn:aws:quicksight:us-east-1:111122223333:datasource/mock" }
}
mock_resource "aws_redshiftserverless_namespace" {
  defaults = {
    arn                       = "arn:aws:redshift-serverless:us-east-1:111122223333:namespace/mock"
    admin_password_secret_arn = "arn:aws:secretsmanager:us-east-1:111122223333:secret:redshift-mock-AbCdEf"
  }
}
mock_resource "aws_athena_workgroup" {
  defaults = { arn = "arn:aws:athena:us-east-1:111122223333:workgroup/mock" }
}
mock_resource "aws_scheduler_schedule" {
  defaults = { arn = "arn:aws:scheduler:us-east-1:111122223333:schedule/default/mock" }
}
