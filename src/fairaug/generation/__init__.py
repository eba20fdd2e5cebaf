"""FST-balanced synthetic sets: the plan, batched resumable sharded sampling, and filtering."""
