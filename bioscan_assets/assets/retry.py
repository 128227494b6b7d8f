"""The one retry policy of every step that reads or writes storage.

gcsfs already retries each request (about 30 s of backoff) before it gives up; this policy
re-runs the whole step after an outage longer than that: 5, 15 and 35 s (each +/- 5 s so that
steps failed by the same outage do not come back together). Every storage write is atomic and
idempotent (content-addressed blobs, deterministic part names, manifests written last), so a
re-run step never leaves a second copy. Bad input raises `Failure(allow_retries=False)` and
fails at once.
"""

from dagster import Backoff, Jitter, RetryPolicy

STORAGE_RETRY = RetryPolicy(
    max_retries=3, delay=5.0, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
)
