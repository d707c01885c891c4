# One cluster, one image, one task definition per mode. Long-running modes
# are services; the audit is a scheduled task (audit.tf).

locals {
  image       = "${aws_ecr_repository.imgpipe.repository_url}:${var.image_tag}"
  ec2_process = var.script_sandbox == "bwrap"

  # A container that drains within 120 s (ECS's and Fargate's maximum
  # stopTimeout): imgpipe finishes uploads, in-flight images and metadata
  # flushes on SIGTERM in less.
  containers = {
    for mode, m in local.modes : mode => {
      name        = mode
      image       = local.image
      essential   = true
      command     = m.command
      user        = "10001:10001"
      stopTimeout = 120
      # Set only where needed (Fargate rejects the parameter); see below.
      privileged             = mode == "processor" && local.ec2_process ? true : null
      readonlyRootFilesystem = true
      environment            = [for k in sort(keys(m.env)) : { name = k, value = m.env[k] }]
      secrets                = [for k in sort(keys(m.secrets)) : { name = k, valueFrom = m.secrets[k] }]
      portMappings           = m.port == null ? [] : [{ containerPort = m.port, protocol = "tcp" }]
      # Scratch space for scripts (/tmp/imgpipe-scratch): the root
      # filesystem is read-only.
      mountPoints     = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
      linuxParameters = { initProcessEnabled = true }
      healthCheck = m.port == null ? null : {
        command     = ["CMD", "curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:${m.port}/healthz"]
        interval    = 15
        timeout     = 5
        retries     = 3
        startPeriod = 60
      }
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = var.log_groups[mode]
          awslogs-region        = local.region
          awslogs-stream-prefix = mode
        }
      }
    }
  }
}

resource "aws_ecs_cluster" "this" {
  name = var.name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = concat(["FARGATE", "FARGATE_SPOT"], local.ec2_process ? [aws_ecs_capacity_provider.processor[0].name] : [])
  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

resource "aws_ecs_task_definition" "mode" {
  #checkov:skip=CKV_AWS_334:One container is privileged, on purpose: the processor on EC2 with script_sandbox = bwrap, so bubblewrap can make its namespaces (explained below and in infra/README.md).
  for_each                 = local.modes
  family                   = "${var.name}-${each.key}"
  requires_compatibilities = each.key == "processor" && local.ec2_process ? ["EC2"] : ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(each.key == "audit" ? var.audit.cpu : var.services[each.key].cpu)
  memory                   = tostring(each.key == "audit" ? var.audit.memory : var.services[each.key].memory)
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task[each.key].arn
  # The processor on EC2 runs privileged because bubblewrap needs to make
  # user, PID and mount namespaces and mount a fresh /proc, which Docker's
  # seccomp profile and masked /proc paths forbid otherwise. imgpipe itself
  # still runs as uid 10001 with no capabilities, the hosts run nothing
  # else, tasks cannot reach the instance metadata (ECS_AWSVPC_BLOCK_IMDS),
  # and the script inside bwrap has no network and no view of imgpipe's
  # process or credentials. See infra/README.md, "The script sandbox on AWS".
  container_definitions = jsonencode([local.containers[each.key]])

  volume {
    name = "tmp"
  }

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }
}

locals {
  fargate_on_demand = [{ capacity_provider = "FARGATE", weight = 1, base = 1 }]
  strategy = {
    api    = local.fargate_on_demand
    bridge = local.fargate_on_demand
    # Processors resume from Kafka after an interruption: Spot is safe.
    processor = local.ec2_process ? [
      { capacity_provider = aws_ecs_capacity_provider.processor[0].name, weight = 1, base = 0 }
      ] : [
      { capacity_provider = "FARGATE", weight = 1, base = 1 },
      { capacity_provider = "FARGATE_SPOT", weight = var.processor_spot_weight, base = 0 },
    ]
    sweeper = local.fargate_on_demand
  }
}

resource "aws_ecs_service" "mode" {
  for_each               = local.strategy
  name                   = each.key
  cluster                = aws_ecs_cluster.this.id
  task_definition        = aws_ecs_task_definition.mode[each.key].arn
  desired_count          = var.services[each.key].desired
  enable_execute_command = false
  propagate_tags         = "SERVICE"
  # Rolling deploys: new tasks first, old ones drained; a deploy whose tasks
  # never get healthy rolls back by itself.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = each.key == "api" ? 60 : null

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  dynamic "capacity_provider_strategy" {
    for_each = each.value
    content {
      capacity_provider = capacity_provider_strategy.value.capacity_provider
      weight            = capacity_provider_strategy.value.weight
      base              = capacity_provider_strategy.value.base
    }
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [var.security_group_ids["tasks"]]
    assign_public_ip = false
  }

  dynamic "load_balancer" {
    for_each = each.key == "api" ? [1] : []
    content {
      target_group_arn = aws_lb_target_group.api.arn
      container_name   = "api"
      container_port   = local.api_port
    }
  }

  # Autoscaling owns the count after the first apply.
  lifecycle {
    ignore_changes = [desired_count]
  }

  depends_on = [aws_lb_listener.https, aws_ecs_cluster_capacity_providers.this]
}
