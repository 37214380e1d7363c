variable "step_kinds" {
  description = "The platform's step kinds (one IRSA role each)."
  type        = list(string)
}

variable "bucket_arns" {
  description = "ARN of each platform bucket by its key in lake_zones.json (lake, scores, ...)."
  type        = map(string)
}

variable "kms_key_arn" {
  description = "The platform KMS key the buckets are encrypted with."
  type        = string
}
