from dagster import AssetSelection, define_asset_job

SAMPLE_ASSETS = ["raw_sequences", "sequence_shards", "sequence_embeddings", "vector_index"]

# raw_sequences -> vector_index for one sample partition; what the lab-drop sensor launches.
sample_pipeline = define_asset_job(
    name="sample_pipeline",
    selection=AssetSelection.assets(*SAMPLE_ASSETS),
    description="One lab drop from raw files to its rows in the tenant's vector index.",
    tags={"bioscan/accelerator": "tpu"},
)
