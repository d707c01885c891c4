output "vpc_id" {
  description = "The VPC."
  value       = aws_vpc.this.id
}

output "public_subnet_ids" {
  description = "Public subnets, one per AZ (ALB, NAT)."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "Private subnets, one per AZ (tasks, brokers, Redshift)."
  value       = aws_subnet.private[*].id
}

output "security_group_ids" {
  description = "Security groups by role: alb, tasks, kafka, redshift."
  value = {
    alb      = aws_security_group.alb.id
    tasks    = aws_security_group.tasks.id
    kafka    = aws_security_group.kafka.id
    redshift = aws_security_group.redshift.id
  }
}
