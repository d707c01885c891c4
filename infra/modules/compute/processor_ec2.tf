# With script_sandbox = "bwrap", processors run on EC2 instances of their
# own (an ECS capacity provider), because Fargate cannot give bubblewrap
# its namespaces (no privileged containers, no seccomp changes, no added
# capabilities but SYS_PTRACE). Spot by default: a processor interrupted
# mid-image leaves its Kafka offset uncommitted and the image is processed
# again elsewhere.

data "aws_ssm_parameter" "ecs_ami" {
  count = local.ec2_process ? 1 : 0
  name  = "/aws/service/ecs/optimized-ami/amazon-linux-2023/${var.cpu_architecture == "ARM64" ? "arm64/" : ""}recommended/image_id"
}

resource "aws_iam_role" "instance" {
  count = local.ec2_process ? 1 : 0
  name  = "${var.name}-processor-instance"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

# The ECS agent's own rights: register this instance in this cluster and
# report on its tasks, nothing else. Not AWS's managed policy
# (AmazonEC2ContainerServiceforEC2Role: ecs:* on every cluster, logs:* and
# ECR on "*"), because a privileged processor container could reach these
# credentials if IMDS blocking ever failed. Image pulls and awslogs use the
# task execution role (iam.tf), so the instance needs neither.
resource "aws_iam_role_policy" "instance_ecs" {
  count = local.ec2_process ? 1 : 0
  name  = "ecs-agent"
  role  = aws_iam_role.instance[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "JoinThisCluster"
        Effect   = "Allow"
        Action   = ["ecs:RegisterContainerInstance", "ecs:DeregisterContainerInstance", "ecs:SubmitContainerStateChange", "ecs:SubmitTaskStateChange", "ecs:SubmitAttachmentStateChanges"]
        Resource = [aws_ecs_cluster.this.arn]
      },
      {
        Sid      = "ActAsThisClustersInstance"
        Effect   = "Allow"
        Action   = ["ecs:Poll", "ecs:StartTelemetrySession", "ecs:UpdateContainerInstancesState", "ecs:PutSystemLogEvents"]
        Resource = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:container-instance/${aws_ecs_cluster.this.name}/*"]
      },
      {
        # DiscoverPollEndpoint has no resource-level permissions (AWS
        # requires "*"); it returns only an endpoint address.
        Sid      = "FindTheAgentEndpoint"
        Effect   = "Allow"
        Action   = ["ecs:DiscoverPollEndpoint"]
        Resource = "*"
      },
    ]
  })
}

resource "aws_iam_instance_profile" "processor" {
  count = local.ec2_process ? 1 : 0
  name  = "${var.name}-processor"
  role  = aws_iam_role.instance[0].name
}

resource "aws_launch_template" "processor" {
  count                  = local.ec2_process ? 1 : 0
  name_prefix            = "${var.name}-processor-"
  image_id               = data.aws_ssm_parameter.ecs_ami[0].value
  instance_type          = var.processor_instance_types[0]
  vpc_security_group_ids = [var.security_group_ids["tasks"]]
  ebs_optimized          = true
  iam_instance_profile {
    arn = aws_iam_instance_profile.processor[0].arn
  }
  # IMDSv2 only, and one hop: containers cannot reach the instance's
  # credentials.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
  monitoring {
    enabled = true
  }
  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = 40
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }
  user_data = base64encode(<<-EOT
    #!/bin/bash
    set -euo pipefail
    cat >> /etc/ecs/ecs.config <<CONFIG
    ECS_CLUSTER=${aws_ecs_cluster.this.name}
    ECS_AWSVPC_BLOCK_IMDS=true
    ECS_ENABLE_SPOT_INSTANCE_DRAINING=true
    ECS_CONTAINER_STOP_TIMEOUT=120s
    CONFIG
    # bubblewrap makes a user namespace per script run.
    echo 'user.max_user_namespaces = 15000' > /etc/sysctl.d/90-imgpipe-userns.conf
    sysctl --system
  EOT
  )
}

resource "aws_autoscaling_group" "processor" {
  count                 = local.ec2_process ? 1 : 0
  name_prefix           = "${var.name}-processor-"
  min_size              = 0
  max_size              = var.services["processor"].max
  vpc_zone_identifier   = var.private_subnet_ids
  protect_from_scale_in = true

  mixed_instances_policy {
    instances_distribution {
      on_demand_base_capacity                  = 0
      on_demand_percentage_above_base_capacity = var.processor_on_demand_percent
      spot_allocation_strategy                 = "price-capacity-optimized"
    }
    launch_template {
      launch_template_specification {
        launch_template_id = aws_launch_template.processor[0].id
        version            = "$Latest"
      }
      dynamic "override" {
        for_each = var.processor_instance_types
        content {
          instance_type = override.value
        }
      }
    }
  }

  tag {
    key                 = "AmazonECSManaged"
    value               = "true"
    propagate_at_launch = true
  }

  # The capacity provider owns the size.
  lifecycle {
    ignore_changes = [desired_capacity]
  }
}

resource "aws_ecs_capacity_provider" "processor" {
  count = local.ec2_process ? 1 : 0
  name  = "${var.name}-processor"
  auto_scaling_group_provider {
    auto_scaling_group_arn         = aws_autoscaling_group.processor[0].arn
    managed_termination_protection = "ENABLED"
    managed_draining               = "ENABLED"
    managed_scaling {
      status          = "ENABLED"
      target_capacity = 100
    }
  }
}
