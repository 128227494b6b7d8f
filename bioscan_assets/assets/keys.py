"""Asset keys and owners, named once: other modules, jobs and sensors refer to these."""

from dagster import AssetKey

OWNERS = ["team:bioscan"]

RAW_KEY = AssetKey("raw_sequences")
SHARDS_KEY = AssetKey("sequence_shards")
EMBEDDINGS_KEY = AssetKey("sequence_embeddings")
INDEX_KEY = AssetKey("vector_index")
ADAPTER_KEY = AssetKey("lora_adapter")
REPORT_KEY = AssetKey("evaluation_report")
CALLS_KEY = AssetKey("taxonomy_calls")
PROFILE_KEY = AssetKey("taxonomic_profile")
COHORT_KEY = AssetKey("cohort_report")
NOVELTY_KEY = AssetKey("novelty_clusters")
