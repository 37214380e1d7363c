output "policies" {
  description = "Each step kind's IAM policy document (JSON)."
  value       = { for kind, policy in local.policies : kind => jsonencode(policy) }
}

output "writes" {
  description = "kind => bucket => the key prefixes it may write."
  value       = local.writes
}
