from dagster import DynamicPartitionsDefinition

# Partition key: "<tenant>/<sample_id>" (see core.layout.split_partition_key).
samples_partitions = DynamicPartitionsDefinition(name="samples")

# Partition key: a tenant name. Added with the tenant's first sample (lab-drop sensor, demo,
# taxonomic_profile); per-tenant views such as cohort_report are partitioned by it.
tenants_partitions = DynamicPartitionsDefinition(name="tenants")
