from dagster import DynamicPartitionsDefinition

# Partition key: "<tenant>/<sample_id>" (see core.layout.split_partition_key).
samples_partitions = DynamicPartitionsDefinition(name="samples")
