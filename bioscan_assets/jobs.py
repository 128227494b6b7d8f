from dagster import AssetSelection, define_asset_job

SAMPLE_ASSETS = ["raw_sequences", "sequence_shards", "sequence_embeddings", "vector_index"]

# raw_sequences -> vector_index for one sample partition; what the lab-drop sensor launches.
sample_pipeline = define_asset_job(
    name="sample_pipeline",
    selection=AssetSelection.assets(*SAMPLE_ASSETS),
    description="One lab drop from raw files to its rows in the tenant's vector index.",
    tags={"bioscan/accelerator": "tpu"},
)

# The per-sample answer: calls and profile, after the evaluation has ranked the classifiers.
sample_taxonomy = define_asset_job(
    name="sample_taxonomy",
    selection=AssetSelection.assets("taxonomy_calls", "taxonomic_profile"),
    description="Taxonomy calls and the taxonomic profile of one sample partition.",
)

# A tenant's view across its samples; partitioned by `tenants`.
cohort_reports = define_asset_job(
    name="cohort_reports",
    selection=AssetSelection.assets("novelty_clusters", "cohort_report"),
    description="Novelty clusters and the cohort report of one tenant partition.",
)
